// Checkpoints: written whole or not at all, the newest valid one starts recovery,
// and retiring deletes what it covers.

#include "wal/checkpoint.h"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <random>

#include "support/op_model.h"
#include "support/process.h"
#include "support/wal_fixtures.h"
#include "wal/files.h"
#include "wal/format.h"
#include "wal/replay.h"

using namespace conv;
using testing::RecordingVisitor;
namespace fs = std::filesystem;

namespace {

// Writes a checkpoint at `window` holding the schema records and `records`, in
// blocks of at most `per_block` records.
void WriteCheckpoint(const std::string& dir, uint64_t window,
                     const testing::EncodedRecords& schemas,
                     const std::vector<testing::EncodedRecords>& blocks) {
  auto w = wal::CheckpointWriter::Begin(dir, window, schemas.bytes, schemas.count);
  REQUIRE_MESSAGE(w.ok(), (w.ok() ? "" : w.message()));
  for (const auto& b : blocks) {
    auto st = (*w)->Add(b.bytes, b.count);
    REQUIRE_MESSAGE(st.ok(), st.message());
  }
  auto st = (*w)->Finish();
  REQUIRE_MESSAGE(st.ok(), st.message());
}

std::vector<std::string> CheckpointEvents(const testing::EncodedRecords& schemas,
                                          const std::vector<testing::EncodedRecords>& blocks) {
  std::vector<std::string> out = schemas.events;
  for (const auto& b : blocks)
    out.insert(out.end(), b.events.begin(), b.events.end());
  return out;
}

std::vector<testing::TestWindow> Slice(const std::vector<testing::TestWindow>& w, size_t from,
                                       size_t to) {
  return {w.begin() + static_cast<ptrdiff_t>(from), w.begin() + static_cast<ptrdiff_t>(to)};
}

}  // namespace

TEST_CASE("wal: recovery starts from the newest checkpoint and replays only later windows") {
  uint64_t seed = testing::TestSeed("CONV_WAL_SEED", 808);
  MESSAGE("seed ", seed, " (CONV_WAL_SEED)");
  std::mt19937_64 rng(seed);
  testing::TempDir dir("conv-wal");
  auto schemas = testing::TestSchemaRecords();
  auto windows = testing::RandomWindows(rng, 1, 40, 6, 30);
  wal::WriterOptions o;
  o.fsync = false;
  o.segment_bytes = 2048;
  testing::WriteWindows(dir.path(), windows, schemas, o);
  auto heads = testing::SegmentHeads(dir.path());
  REQUIRE(heads.size() > 3);

  std::vector<testing::EncodedRecords> old_state = {testing::RandomRecords(rng, 5)};
  std::vector<testing::EncodedRecords> state;
  for (int i = 0; i < 4; ++i)
    state.push_back(testing::RandomRecords(rng, 1 + rng() % 30));
  WriteCheckpoint(dir.path(), 11, schemas, old_state);
  WriteCheckpoint(dir.path(), 27, schemas, state);

  RecordingVisitor v;
  wal::RecoveryReport report;
  auto st = wal::Recover(dir.path(), v, false, &report);
  REQUIRE_MESSAGE(st.ok(), st.message());
  auto want = CheckpointEvents(schemas, state);
  auto rest = testing::ExpectedEvents(Slice(windows, 27, 40), schemas, heads);
  want.insert(want.end(), rest.begin(), rest.end());
  CHECK(v.events == want);
  CHECK(report.used_checkpoint);
  CHECK(report.checkpoint_window == 27);
  uint64_t records = schemas.count;
  for (const auto& b : state)
    records += b.count;
  CHECK(report.checkpoint_records == records);
  CHECK(report.last_window == 40);
  CHECK(report.blocks == 13);
}

TEST_CASE("wal: a damaged newest checkpoint is ignored in favour of the one before") {
  uint64_t seed = testing::TestSeed("CONV_WAL_SEED", 909);
  MESSAGE("seed ", seed, " (CONV_WAL_SEED)");
  std::mt19937_64 rng(seed);
  testing::TempDir root("conv-wal");
  auto schemas = testing::TestSchemaRecords();
  auto windows = testing::RandomWindows(rng, 1, 12, 4);
  std::vector<testing::EncodedRecords> older = {testing::RandomRecords(rng, 6)};
  std::vector<testing::EncodedRecords> newer = {testing::RandomRecords(rng, 4),
                                                testing::RandomRecords(rng, 3)};
  // Build once, then damage copies of the newer checkpoint in every way below.
  std::string pristine;
  {
    testing::TempDir scratch("conv-wal");
    WriteCheckpoint(scratch.path(), 9, schemas, newer);
    pristine = testing::ReadAll(scratch.File(wal::CheckpointName(9)));
  }
  std::vector<std::pair<std::string, std::string>> damages;  // what, bytes
  for (size_t cut = 0; cut < pristine.size(); ++cut) {
    damages.emplace_back(fmt::format("cut at {}", cut), pristine.substr(0, cut));
  }
  for (size_t byte = 0; byte < pristine.size(); byte += 3) {
    std::string d = pristine;
    d[byte] = static_cast<char>(d[byte] ^ (1 << (byte % 8)));
    if (byte >= 12 && byte < 16) continue;  // the reserved header field is not checked
    damages.emplace_back(fmt::format("bit {} flipped", byte * 8 + byte % 8), d);
  }
  MESSAGE(damages.size(), " damaged checkpoints");

  std::string base = root.File("base");
  fs::create_directory(base);
  wal::WriterOptions o;
  o.fsync = false;
  testing::WriteWindows(base, windows, schemas, o);
  WriteCheckpoint(base, 5, schemas, older);

  for (const auto& [what, bytes] : damages) {
    CAPTURE(what);
    std::string d = root.File("d");
    fs::remove_all(d);
    fs::copy(base, d);
    testing::WriteAll(d + "/" + wal::CheckpointName(9), bytes);

    RecordingVisitor v;
    wal::RecoveryReport report;
    auto st = wal::Recover(d, v, false, &report);
    REQUIRE_MESSAGE(st.ok(), st.message());
    CHECK(report.checkpoint_window == 5);
    REQUIRE(report.warnings.size() == 1);
    CHECK(report.warnings[0].find("ignoring damaged checkpoint") != std::string::npos);
    CHECK(report.warnings[0].find(wal::CheckpointName(9)) != std::string::npos);
    auto want = CheckpointEvents(schemas, older);
    auto rest = testing::ExpectedEvents(Slice(windows, 5, 12), schemas, {1});
    want.insert(want.end(), rest.begin(), rest.end());
    CHECK(v.events == want);
  }
}

TEST_CASE("wal: a checkpoint has its final name only once it is complete") {
  testing::TempDir dir("conv-wal");
  auto schemas = testing::TestSchemaRecords();
  std::mt19937_64 rng(3);
  {
    auto w = wal::CheckpointWriter::Begin(dir.path(), 7, schemas.bytes, schemas.count);
    REQUIRE(w.ok());
    REQUIRE((*w)->Add(testing::RandomRecords(rng, 10).bytes, 10).ok());
    auto listing = wal::ListDir(dir.path());
    REQUIRE(listing.ok());
    CHECK(listing->checkpoints.empty());
    CHECK((*w)->path() == dir.File(wal::CheckpointName(7)));
    // Abandoned (the server stopped mid-checkpoint): nothing is left behind.
  }
  CHECK(fs::is_empty(dir.path()));

  RecordingVisitor v;
  wal::RecoveryReport report;
  REQUIRE(wal::Recover(dir.path(), v, false, &report).ok());
  CHECK_FALSE(report.used_checkpoint);
  CHECK(v.events.empty());
}

TEST_CASE("wal: retiring deletes older checkpoints and the segments a checkpoint covers") {
  std::mt19937_64 rng(4);
  testing::TempDir dir("conv-wal");
  auto schemas = testing::TestSchemaRecords();
  auto windows = testing::RandomWindows(rng, 1, 12, 3);
  wal::WriterOptions o;
  o.fsync = false;
  // Segments holding windows 1-3, 4-6, 7-9 and 10-12.
  for (size_t from = 0; from < 12; from += 3) {
    testing::WriteWindows(dir.path(), Slice(windows, from, from + 3), schemas, o);
  }
  REQUIRE(testing::SegmentHeads(dir.path()) == std::set<uint64_t>{1, 4, 7, 10});
  std::vector<testing::EncodedRecords> state = {testing::RandomRecords(rng, 8)};
  WriteCheckpoint(dir.path(), 3, schemas, state);
  WriteCheckpoint(dir.path(), 7, schemas, state);

  uint64_t deleted = 0;
  REQUIRE(wal::RetireBefore(dir.path(), 7, &deleted).ok());
  CHECK(deleted == 2);  // 1-3 and 4-6; 7-9 still holds windows 8 and 9
  CHECK(testing::SegmentHeads(dir.path()) == std::set<uint64_t>{7, 10});
  auto listing = wal::ListDir(dir.path());
  REQUIRE(listing.ok());
  REQUIRE(listing->checkpoints.size() == 1);
  CHECK(listing->checkpoints[0].window == 7);

  RecordingVisitor v;
  wal::RecoveryReport report;
  REQUIRE(wal::Recover(dir.path(), v, false, &report).ok());
  auto want = CheckpointEvents(schemas, state);
  auto rest = testing::ExpectedEvents(Slice(windows, 7, 12), schemas, {7, 10});
  want.insert(want.end(), rest.begin(), rest.end());
  CHECK(v.events == want);

  // A checkpoint past every window never deletes the newest segment.
  WriteCheckpoint(dir.path(), 12, schemas, state);
  REQUIRE(wal::RetireBefore(dir.path(), 12, &deleted).ok());
  CHECK(deleted == 1);
  CHECK(testing::SegmentHeads(dir.path()) == std::set<uint64_t>{10});
  RecordingVisitor after;
  REQUIRE(wal::Recover(dir.path(), after, false, &report).ok());
  CHECK(after.events == CheckpointEvents(schemas, state));
  CHECK(report.last_window == 12);
}

TEST_CASE("wal: segments missing after the newest checkpoint stop recovery") {
  std::mt19937_64 rng(5);
  testing::TempDir dir("conv-wal");
  auto schemas = testing::TestSchemaRecords();
  auto windows = testing::RandomWindows(rng, 1, 12, 3);
  wal::WriterOptions o;
  o.fsync = false;
  testing::WriteWindows(dir.path(), Slice(windows, 8, 12), schemas, o);  // from window 9
  WriteCheckpoint(dir.path(), 5, schemas, {testing::RandomRecords(rng, 2)});
  RecordingVisitor v;
  wal::RecoveryReport report;
  auto st = wal::Recover(dir.path(), v, false, &report);
  REQUIRE_FALSE(st.ok());
  CHECK(st.message().find("segments are missing") != std::string::npos);
  CHECK(st.message().find("window 9") != std::string::npos);
}

TEST_CASE("wal: the schemas in force come from the newest segment, else the newest checkpoint") {
  std::mt19937_64 rng(6);
  testing::TempDir dir("conv-wal");
  {
    auto none = wal::ReadLatestSchemas(dir.path());
    REQUIRE(none.ok());
    CHECK(none->empty());
  }
  auto old_schemas = testing::TestSchemaRecords();
  WriteCheckpoint(dir.path(), 2, old_schemas, {});
  {
    auto from_ckpt = wal::ReadLatestSchemas(dir.path());
    REQUIRE(from_ckpt.ok());
    REQUIRE(from_ckpt->size() == 2);
    CHECK((*from_ckpt)[0].id == 1);
    CHECK((*from_ckpt)[0].name == "player");
    CHECK((*from_ckpt)[1].name == "item");
    REQUIRE((*from_ckpt)[1].fields.size() == 2);
    CHECK((*from_ckpt)[1].fields[1] == std::pair<std::string, uint8_t>{"blob", 4});
  }
  // A later segment written with one more field in "item".
  testing::EncodedRecords newer;
  std::string_view player_names[] = {"name"};
  uint8_t player_types[] = {3};
  std::string_view item_names[] = {"label", "blob", "count"};
  uint8_t item_types[] = {3, 4, 1};
  wal::PutSchema(newer.bytes, 1, "player", 1, player_names, player_types);
  wal::PutSchema(newer.bytes, 2, "item", 3, item_names, item_types);
  newer.count = 2;
  wal::WriterOptions o;
  o.fsync = false;
  testing::WriteWindows(dir.path(), testing::RandomWindows(rng, 3, 2, 2), newer, o);
  auto latest = wal::ReadLatestSchemas(dir.path());
  REQUIRE(latest.ok());
  REQUIRE(latest->size() == 2);
  CHECK((*latest)[1].fields.size() == 3);
  CHECK((*latest)[1].fields[2].first == "count");
}

TEST_CASE("wal: replaying a checkpoint first tells how many entities of each schema it holds") {
  // Entities are runs of claims naming one id, also across blocks.
  struct Counting : RecordingVisitor {
    void OnCheckpointEntities(uint32_t schema, uint64_t entities) override {
      events.push_back(fmt::format("entities {} {}", schema, entities));
    }
  };
  testing::TempDir dir("conv-wal");
  auto schemas = testing::TestSchemaRecords();
  auto claim = [](testing::EncodedRecords& b, uint32_t schema, std::string_view id,
                  std::string_view source) {
    wal::PutClaim(b.bytes, schema, id, source, 1, true, 7, nullptr, "v");
    ++b.count;
  };
  std::vector<testing::EncodedRecords> blocks(2);
  claim(blocks[0], 1, "a", "s1");
  claim(blocks[0], 1, "a", "s2");
  claim(blocks[0], 1, "b", "s1");
  claim(blocks[1], 1, "b", "s2");                  // b's claims span two blocks: one entity
  claim(blocks[1], 2, "b", "s1");                  // the same id in another schema
  wal::PutRetract(blocks[1].bytes, 1, "c", "s1");  // not an entity of the checkpoint
  ++blocks[1].count;
  claim(blocks[1], 1, "d", "s1");
  WriteCheckpoint(dir.path(), 5, schemas, blocks);

  Counting v;
  wal::RecoveryReport report;
  auto st = wal::Recover(dir.path(), v, false, &report);
  REQUIRE_MESSAGE(st.ok(), st.message());
  REQUIRE(v.events.size() >= 2);
  CHECK(v.events[0] == "entities 1 3");
  CHECK(v.events[1] == "entities 2 1");
  CHECK(std::count_if(v.events.begin(), v.events.end(),
                      [](const std::string& e) { return e.starts_with("entities"); }) == 2);
}

TEST_CASE("wal: a checkpoint checked on several threads counts the entities one thread does") {
  // Random entities of two schemas with one to three claims each, a few retractions
  // between them, cut into blocks at random records (so that runs of one entity's
  // claims span blocks, and the threads' shares of blocks); recovered with 1 to 7
  // checking threads, each count must be the true one.
  uint64_t seed = testing::TestSeed("CONV_WAL_SEED", 1717);
  MESSAGE("seed ", seed, " (CONV_WAL_SEED)");
  std::mt19937_64 rng(seed);
  struct Counting : RecordingVisitor {
    void OnCheckpointEntities(uint32_t schema, uint64_t entities) override {
      events.push_back(fmt::format("entities {} {}", schema, entities));
    }
  };
  auto schemas = testing::TestSchemaRecords();
  for (int round = 0; round < 20; ++round) {
    CAPTURE(round);
    testing::TempDir dir("conv-wal");
    std::vector<testing::EncodedRecords> blocks(1);
    uint64_t want[3] = {0, 0, 0};
    const int entities = 1 + static_cast<int>(rng() % 60);
    for (int e = 0; e < entities; ++e) {
      uint32_t schema = 1 + static_cast<uint32_t>(rng() % 2);
      std::string id = fmt::format("e{}", e % 7 == 6 ? e - 3 : e);  // an id again, apart
      ++want[schema];
      for (uint64_t c = 0, claims = 1 + rng() % 3; c < claims; ++c) {
        if (rng() % 3 == 0) blocks.emplace_back();
        wal::PutClaim(blocks.back().bytes, schema, id, fmt::format("s{}", c), 1, true, 7, nullptr,
                      "v");
        ++blocks.back().count;
      }
      if (rng() % 5 == 0) {
        wal::PutRetract(blocks.back().bytes, schema, "gone", "s0");
        ++blocks.back().count;
      }
    }
    WriteCheckpoint(dir.path(), 5, schemas, blocks);
    for (unsigned threads : {1u, 2u, 3u, 7u}) {
      CAPTURE(threads);
      Counting v;
      wal::RecoveryReport report;
      wal::ReadOptions o;
      o.check_threads = threads;
      auto st = wal::Recover(dir.path(), v, false, &report, o);
      REQUIRE_MESSAGE(st.ok(), st.message());
      std::vector<std::string> counts;
      for (const auto& ev : v.events) {
        if (ev.starts_with("entities")) counts.push_back(ev);
      }
      std::vector<std::string> expect;
      for (uint32_t schema = 1; schema <= 2; ++schema) {
        if (want[schema] != 0)
          expect.push_back(fmt::format("entities {} {}", schema, want[schema]));
      }
      CHECK(counts == expect);
    }
  }
}
