// Windows and checkpoint chunks larger than a block may hold: split over several
// blocks on write, read back whole, and a window whose later part is torn off
// vanishes whole.

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cstring>
#include <filesystem>
#include <random>

#include "support/op_model.h"
#include "support/process.h"
#include "support/wal_fixtures.h"
#include "util/coding.h"
#include "wal/block.h"
#include "wal/checkpoint.h"
#include "wal/files.h"
#include "wal/format.h"
#include "wal/replay.h"
#include "wal/writer.h"

using namespace conv;
using testing::RecordingVisitor;
namespace fs = std::filesystem;

namespace {

constexpr uint32_t kLimit = 4096;

// Every block of `file` (its offset, type and payload size), read with no limit
// but the format's.
struct BlockInfo {
  uint64_t offset;
  wal::BlockType type;
  size_t payload;
};
std::vector<BlockInfo> Blocks(std::string_view file, std::string_view magic) {
  wal::BlockReader reader(file, magic);
  REQUIRE_MESSAGE(reader.header_ok(), reader.error());
  std::vector<BlockInfo> out;
  wal::Block b;
  wal::ReadStatus st;
  while ((st = reader.Next(&b)) == wal::ReadStatus::kBlock)
    out.push_back({b.offset, b.type, b.payload.size()});
  REQUIRE_MESSAGE(st == wal::ReadStatus::kEnd, reader.error());
  return out;
}

std::string FreshDir(const testing::TempDir& root) {
  std::string d = root.File("d");
  fs::remove_all(d);
  fs::create_directory(d);
  return d;
}

std::vector<testing::TestWindow> Prefix(const std::vector<testing::TestWindow>& w, size_t n) {
  return {w.begin(), w.begin() + static_cast<ptrdiff_t>(n)};
}

wal::WriterOptions SmallBlocks() {
  wal::WriterOptions o;
  o.fsync = false;
  o.max_block_payload = kLimit;
  return o;
}

wal::ReadOptions SmallReads() {
  wal::ReadOptions r;
  r.max_block_payload = kLimit;
  return r;
}

}  // namespace

TEST_CASE("wal: a window far past the block limit is split under it and recovered whole") {
  uint64_t seed = testing::TestSeed("CONV_WAL_SEED", 7070);
  MESSAGE("seed ", seed, " (CONV_WAL_SEED)");
  std::mt19937_64 rng(seed);
  testing::TempDir root("conv-wal");
  std::string d = FreshDir(root);
  auto schemas = testing::TestSchemaRecords();
  auto windows = testing::RandomWindows(rng, 1, 6, 8, 40);
  // ~1 MiB each: the first window of the segment (it carries the schemas) and one
  // in the middle.
  windows[0].records = testing::RandomRecords(rng, 15000, 150);
  windows[3].records = testing::RandomRecords(rng, 15000, 150);
  REQUIRE(windows[0].records.bytes.size() > (1u << 20));
  REQUIRE(windows[3].records.bytes.size() > (1u << 20));
  wal::WriterOptions o = SmallBlocks();
  o.segment_bytes = 64 << 10;  // smaller than a split window: it gets a segment of its own
  testing::WriteWindows(d, windows, schemas, o);

  auto heads = testing::SegmentHeads(d);
  uint64_t windows_seen = 0, parts = 0;
  for (uint64_t head : heads) {
    std::string file = testing::ReadAll(d + "/" + wal::SegmentName(head));
    for (const auto& b : Blocks(file, wal::kSegmentMagic)) {
      CHECK(b.payload <= kLimit);
      if (b.type == wal::BlockType::kWindow) ++windows_seen;
      if (b.type == wal::BlockType::kWindowPart) ++parts;
    }
  }
  CHECK(windows_seen == 6);
  CHECK(parts >= 2 * ((1u << 20) / kLimit));

  RecordingVisitor v;
  wal::RecoveryReport report;
  auto st = wal::Recover(d, v, false, &report, SmallReads());
  REQUIRE_MESSAGE(st.ok(), st.message());
  auto want = testing::ExpectedEvents(windows, schemas, heads);
  CHECK(v.events.size() == want.size());
  CHECK(v.events == want);
  CHECK(report.last_window == 6);
  CHECK(report.records == [&] {
    uint64_t n = 0;
    for (const auto& w : windows)
      n += w.records.count;
    return n + schemas.count * heads.size();
  }());
  CHECK(report.torn_file.empty());

  // The schemas in force are read from the first block of the newest segment, a
  // part when that segment starts with a split window.
  auto defs = wal::ReadLatestSchemas(d);
  REQUIRE(defs.ok());
  CHECK(defs->size() == 2);
}

TEST_CASE("wal: a checkpoint chunk far past the block limit is split under it and read whole") {
  uint64_t seed = testing::TestSeed("CONV_WAL_SEED", 7071);
  MESSAGE("seed ", seed, " (CONV_WAL_SEED)");
  std::mt19937_64 rng(seed);
  testing::TempDir root("conv-wal");
  std::string d = FreshDir(root);
  auto schemas = testing::TestSchemaRecords();
  auto small = testing::RandomRecords(rng, 20, 16);
  auto big = testing::RandomRecords(rng, 15000, 150);
  REQUIRE(big.bytes.size() > (1u << 20));
  wal::CheckpointOptions co;
  co.max_block_payload = kLimit;
  {
    auto w = wal::CheckpointWriter::Begin(d, 9, schemas.bytes, schemas.count, co);
    REQUIRE(w.ok());
    REQUIRE((*w)->Add(small.bytes, small.count).ok());
    auto st = (*w)->Add(big.bytes, big.count);
    REQUIRE_MESSAGE(st.ok(), st.message());
    REQUIRE((*w)->Add(small.bytes, small.count).ok());
    REQUIRE((*w)->Finish().ok());
  }
  std::string file = testing::ReadAll(d + "/" + wal::CheckpointName(9));
  auto blocks = Blocks(file, wal::kCheckpointMagic);
  CHECK(blocks.size() > (1u << 20) / kLimit);
  for (const auto& b : blocks)
    CHECK(b.payload <= kLimit);

  RecordingVisitor v;
  wal::RecoveryReport report;
  auto st = wal::Recover(d, v, false, &report, SmallReads());
  REQUIRE_MESSAGE(st.ok(), st.message());
  CHECK(report.used_checkpoint);
  CHECK(report.warnings.empty());
  CHECK(report.checkpoint_records == schemas.count + 2 * small.count + big.count);
  std::vector<std::string> want = schemas.events;
  for (const auto* r : {&small, &big, &small})
    want.insert(want.end(), r->events.begin(), r->events.end());
  CHECK(v.events == want);
}

TEST_CASE("wal: a split window torn at any of its block boundaries vanishes whole") {
  uint64_t seed = testing::TestSeed("CONV_WAL_SEED", 7072);
  MESSAGE("seed ", seed, " (CONV_WAL_SEED)");
  std::mt19937_64 rng(seed);
  testing::TempDir root("conv-wal");
  auto schemas = testing::TestSchemaRecords();
  auto windows = testing::RandomWindows(rng, 1, 4, 6, 20);
  windows[3].records = testing::RandomRecords(rng, 400, 60);  // ~10 blocks of 4 KiB
  std::string d = FreshDir(root);
  testing::WriteWindows(d, windows, schemas, SmallBlocks());
  const std::string name = wal::SegmentName(1);
  REQUIRE(testing::SegmentHeads(d) == std::set<uint64_t>{1});
  std::string image = testing::ReadAll(d + "/" + name);
  auto blocks = Blocks(image, wal::kSegmentMagic);
  // Windows 1-3 one block each, then window 4's parts and its WINDOW block.
  REQUIRE(blocks.size() > 6);
  for (size_t i = 0; i < 3; ++i)
    CHECK(blocks[i].type == wal::BlockType::kWindow);
  for (size_t i = 3; i + 1 < blocks.size(); ++i)
    CHECK(blocks[i].type == wal::BlockType::kWindowPart);
  CHECK(blocks.back().type == wal::BlockType::kWindow);
  const uint64_t start = blocks[3].offset;
  auto want = testing::ExpectedEvents(Prefix(windows, 3), schemas, {1});
  MESSAGE("window 4 in ", blocks.size() - 3, " blocks from offset ", start);

  // Every boundary inside window 4, and the end of its last block less one byte.
  std::vector<uint64_t> cuts;
  for (size_t i = 4; i < blocks.size(); ++i)
    cuts.push_back(blocks[i].offset);
  cuts.push_back(image.size() - 1);
  for (int mode = 0; mode < 3; ++mode) {  // truncated; zeros after; a torn block after
    for (uint64_t cut : cuts) {
      CAPTURE(mode);
      CAPTURE(cut);
      std::string data = image.substr(0, cut);
      if (mode == 1) data.append(64 << 10, '\0');  // preallocated space
      if (mode == 2 && cut + 20 < image.size()) {
        data.append(image.substr(cut, 20));  // half of the next block's first bytes
        data.append(4096, '\0');
      }
      d = FreshDir(root);
      std::string path = d + "/" + name;
      testing::WriteAll(path, data);

      RecordingVisitor v;
      wal::RecoveryReport report;
      auto st = wal::Recover(d, v, false, &report, SmallReads());
      REQUIRE_MESSAGE(st.ok(), st.message());
      CHECK(v.events == want);
      CHECK(report.last_window == 3);
      CHECK(report.torn_file == path);
      CHECK(report.torn_offset == start);
      uint64_t end = data.size();
      while (end > start && data[end - 1] == '\0')
        --end;
      CHECK(report.torn_bytes == end - start);
      REQUIRE_FALSE(report.torn_saved_as.empty());
      CHECK(testing::ReadAll(report.torn_saved_as) == data.substr(start, end - start));
      CHECK(fs::file_size(path) == start);

      // A restart finds a clean log, and the next window goes on after window 3.
      RecordingVisitor again;
      wal::RecoveryReport report2;
      REQUIRE(wal::Recover(d, again, false, &report2, SmallReads()).ok());
      CHECK(again.events == want);
      CHECK(report2.torn_file.empty());
    }
  }

  SUBCASE("a cut exactly before the split window is a clean end") {
    d = FreshDir(root);
    testing::WriteAll(d + "/" + name, image.substr(0, start));
    RecordingVisitor v;
    wal::RecoveryReport report;
    REQUIRE(wal::Recover(d, v, false, &report, SmallReads()).ok());
    CHECK(v.events == want);
    CHECK(report.torn_file.empty());
  }
  SUBCASE("an unfinished split window in an older segment is corruption") {
    d = FreshDir(root);
    testing::WriteAll(d + "/" + name, image.substr(0, blocks.back().offset));
    testing::WriteWindows(d, testing::RandomWindows(rng, 5, 1, 3), schemas, SmallBlocks());
    RecordingVisitor v;
    wal::RecoveryReport report;
    auto st = wal::Recover(d, v, false, &report, SmallReads());
    REQUIRE_FALSE(st.ok());
    CHECK(st.message().find(d + "/" + name) != std::string::npos);
    CHECK(st.message().find(fmt::format("window 4 at offset {} is unfinished", start)) !=
          std::string::npos);
    // Salvage keeps windows 1-3 and moves the whole of window 4 aside.
    RecordingVisitor s;
    wal::RecoveryReport salvaged;
    REQUIRE(wal::Recover(d, s, true, &salvaged, SmallReads()).ok());
    CHECK(s.events == want);
    CHECK(salvaged.last_window == 3);
    CHECK(fs::file_size(d + "/" + name) == start);
  }
  SUBCASE("a part of another window inside a split window is corruption") {
    d = FreshDir(root);
    std::string data = image.substr(0, blocks[4].offset);
    std::string payload;
    util::PutVarint(payload, 5);
    util::PutVarint(payload, 0);
    util::PutVarint(payload, 0);
    wal::AppendBlock(data, wal::BlockType::kWindowPart, payload);
    data.append(image.substr(blocks[4].offset));
    testing::WriteAll(d + "/" + name, data);
    RecordingVisitor v;
    wal::RecoveryReport report;
    auto st = wal::Recover(d, v, false, &report, SmallReads());
    REQUIRE_FALSE(st.ok());
    CHECK(st.message().find(fmt::format("offset {}", blocks[4].offset)) != std::string::npos);
    CHECK(st.message().find("window 4 is unfinished") != std::string::npos);
  }
}

TEST_CASE("wal: a record larger than a block can hold is refused, not written") {
  std::mt19937_64 rng(7073);
  testing::TempDir root("conv-wal");
  std::string d = FreshDir(root);
  auto schemas = testing::TestSchemaRecords();
  std::string huge;
  std::string values(2 * kLimit, 'v');
  wal::PutClaim(huge, 1, "big", "src", 0x1, true, 5, nullptr, values);

  wal::SegmentWriter w(d, SmallBlocks());
  w.SetSchemaRecords(schemas.bytes, schemas.count);
  std::vector<std::string_view> fragments = {huge};
  auto o = w.AppendWindow(1, 1, 1, fragments);
  REQUIRE_FALSE(o.ok());
  CHECK(o.errc == wal::WriteErrc::kIo);
  CHECK(o.message.find("window 1") != std::string::npos);
  CHECK(o.message.find("larger than a block") != std::string::npos);
  CHECK(w.stats().blocks == 0);

  // Bytes that are not records cannot be split either.
  std::string junk(3 * kLimit, '\x7f');
  std::vector<std::string_view> bad = {junk};
  auto o2 = w.AppendWindow(1, 1, 1, bad);
  REQUIRE_FALSE(o2.ok());
  CHECK(o2.errc == wal::WriteErrc::kIo);
  CHECK(o2.message.find("malformed") != std::string::npos);

  wal::CheckpointOptions co;
  co.max_block_payload = kLimit;
  auto c = wal::CheckpointWriter::Begin(d, 1, schemas.bytes, schemas.count, co);
  REQUIRE(c.ok());
  auto st = (*c)->Add(huge, 1);
  REQUIRE_FALSE(st.ok());
  CHECK(st.message().find("larger than a block") != std::string::npos);
  auto st2 = (*c)->Add(junk, 1);
  REQUIRE_FALSE(st2.ok());
  CHECK(st2.message().find("malformed") != std::string::npos);
}

TEST_CASE("wal: a window block whose head does not decode is corruption naming its offset") {
  testing::TempDir root("conv-wal");
  std::string d = FreshDir(root);
  std::mt19937_64 rng(7074);
  testing::WriteWindows(d, testing::RandomWindows(rng, 1, 2, 3), testing::TestSchemaRecords(),
                        SmallBlocks());
  std::string path = d + "/" + wal::SegmentName(1);
  std::string data = testing::ReadAll(path);
  uint64_t at = data.size();
  wal::AppendBlock(data, wal::BlockType::kWindow, "\xff", false);  // a varint cut short
  testing::WriteAll(path, data);
  RecordingVisitor v;
  wal::RecoveryReport report;
  auto st = wal::Recover(d, v, false, &report, SmallReads());
  REQUIRE_FALSE(st.ok());
  CHECK(st.message().find(fmt::format("malformed window block at offset {}", at)) !=
        std::string::npos);
}
