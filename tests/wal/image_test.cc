// Windows and checkpoints held in memory (what the replicated log carries,
// docs/replication.md): SegmentWriter::last_blocks() replays whole through
// ReplayWindowImage, a checkpoint file's bytes through ReplayCheckpointImage, and
// damage is refused before anything is delivered.

#include <doctest/doctest.h>

#include <filesystem>
#include <random>

#include "support/op_model.h"
#include "support/process.h"
#include "support/wal_fixtures.h"
#include "wal/block.h"
#include "wal/checkpoint.h"
#include "wal/files.h"
#include "wal/replay.h"
#include "wal/writer.h"

using namespace conv;
using testing::RecordingVisitor;

TEST_CASE("wal: a window's blocks replay from memory exactly as written, split or not") {
  uint64_t seed = testing::TestSeed("CONV_WAL_SEED", 5150);
  MESSAGE("seed ", seed, " (CONV_WAL_SEED)");
  std::mt19937_64 rng(seed);
  testing::TempDir root("conv-wal");
  auto schemas = testing::TestSchemaRecords();
  auto windows = testing::RandomWindows(rng, 1, 40, 80, 96);
  wal::WriterOptions o;
  o.fsync = false;
  o.max_block_payload = 2048;  // most windows are split into WINDOW_PART blocks
  o.segment_bytes = 64 << 10;  // several segments: some windows carry the schemas
  wal::SegmentWriter writer(root.path(), o);
  writer.SetSchemaRecords(schemas.bytes, schemas.count);
  size_t split = 0;
  for (const auto& w : windows) {
    std::vector<std::string_view> views = {w.records.bytes};
    REQUIRE(writer.AppendWindow(w.window, w.ops, w.records.count, views).ok());
    bool head = writer.current_first_window() == w.window;
    std::string blocks(writer.last_blocks());
    if (blocks.size() > 2100) ++split;
    RecordingVisitor v;
    uint64_t records = 0;
    auto st = wal::ReplayWindowImage(blocks, w.window, v, &records);
    REQUIRE_MESSAGE(st.ok(), st.message());
    auto want = testing::ExpectedEvents({w}, schemas,
                                        head ? std::set<uint64_t>{w.window} : std::set<uint64_t>{});
    CHECK_MESSAGE(v.events == want, "window ", w.window, "\n", testing::Head(v.events));
    CHECK(records == w.records.count + (head ? schemas.count : 0));
  }
  CHECK(split > 10);
}

TEST_CASE("wal: a damaged, foreign or cut window image is refused and delivers nothing") {
  uint64_t seed = testing::TestSeed("CONV_WAL_SEED", 5151);
  MESSAGE("seed ", seed, " (CONV_WAL_SEED)");
  std::mt19937_64 rng(seed);
  testing::TempDir root("conv-wal");
  auto w = testing::RandomWindows(rng, 7, 1, 80, 96).front();
  while (w.records.count < 20)
    w = testing::RandomWindows(rng, 7, 1, 80, 96).front();
  wal::WriterOptions o;
  o.fsync = false;
  o.max_block_payload = 1024;
  wal::SegmentWriter writer(root.path(), o);
  std::vector<std::string_view> views = {w.records.bytes};
  REQUIRE(writer.AppendWindow(w.window, w.ops, w.records.count, views).ok());
  const std::string blocks(writer.last_blocks());
  std::string file;
  wal::AppendFileHeader(file, wal::kSegmentMagic, 7);
  file += blocks;
  auto offsets = testing::BlockOffsets(file);
  REQUIRE(offsets.size() >= 2);

  auto refused = [&](std::string_view image, uint64_t window) {
    RecordingVisitor v;
    uint64_t records = 0;
    auto st = wal::ReplayWindowImage(image, window, v, &records);
    CHECK(v.events.empty());
    return st.ok() ? std::string("accepted") : st.message();
  };
  std::string damaged = blocks;
  damaged[damaged.size() / 2] ^= 0x5a;
  CHECK(refused(damaged, 7).rfind("window 7: ", 0) == 0);
  CHECK(refused(blocks, 8).find("window 8: unexpected block (type 4) at offset 0") !=
        std::string::npos);
  // Only the WINDOW_PART blocks: the WINDOW block cut off.
  std::string parts = blocks.substr(0, offsets.back() - wal::kFileHeaderSize);
  CHECK(refused(parts, 7) == "window 7: its WINDOW block is missing");
  // The window twice: a block after its WINDOW block.
  CHECK(refused(blocks + blocks, 7)
            .find("window 7: unexpected block (type 4) at offset " +
                  std::to_string(blocks.size())) != std::string::npos);
}

TEST_CASE("wal: a checkpoint file's bytes replay from memory, and a damaged one is refused") {
  uint64_t seed = testing::TestSeed("CONV_WAL_SEED", 5152);
  MESSAGE("seed ", seed, " (CONV_WAL_SEED)");
  std::mt19937_64 rng(seed);
  testing::TempDir root("conv-wal");
  auto schemas = testing::TestSchemaRecords();
  auto records = testing::RandomRecords(rng, 300, 64);
  auto cp = wal::CheckpointWriter::Begin(root.path(), 42, schemas.bytes, schemas.count,
                                         {.max_block_payload = 4096});
  REQUIRE(cp.ok());
  REQUIRE((*cp)->Add(records.bytes, records.count).ok());
  REQUIRE((*cp)->Finish().ok());
  std::string image = testing::ReadAll((*cp)->path());

  RecordingVisitor v;
  uint64_t window = 0, n = 0;
  auto st = wal::ReplayCheckpointImage(image, "ckpt", v, &window, &n);
  REQUIRE_MESSAGE(st.ok(), st.message());
  CHECK(window == 42);
  CHECK(n == schemas.count + records.count);
  std::vector<std::string> want = schemas.events;
  want.insert(want.end(), records.events.begin(), records.events.end());
  CHECK(v.events == want);

  image[image.size() / 2] ^= 0x5a;
  RecordingVisitor none;
  st = wal::ReplayCheckpointImage(image, "ckpt", none, &window, &n);
  CHECK_FALSE(st.ok());
  CHECK(st.message().rfind("checkpoint 'ckpt': ", 0) == 0);
  CHECK(none.events.empty());
}

TEST_CASE("wal: ForEachWindowImage gives every window after a point, as framed in its segment") {
  uint64_t seed = testing::TestSeed("CONV_WAL_SEED", 5153);
  MESSAGE("seed ", seed, " (CONV_WAL_SEED)");
  std::mt19937_64 rng(seed);
  testing::TempDir root("conv-wal");
  auto schemas = testing::TestSchemaRecords();
  auto windows = testing::RandomWindows(rng, 1, 60, 40, 96);
  wal::WriterOptions o;
  o.fsync = false;
  o.max_block_payload = 2048;
  o.segment_bytes = 32 << 10;
  testing::WriteWindows(root.path(), windows, schemas, o);
  auto heads = testing::SegmentHeads(root.path());
  REQUIRE(heads.size() >= 3);

  for (uint64_t after : {uint64_t{0}, uint64_t{17}, uint64_t{59}, uint64_t{60}}) {
    CAPTURE(after);
    std::vector<uint64_t> seen;
    RecordingVisitor v;
    auto st = wal::ForEachWindowImage(root.path(), after, [&](uint64_t w, std::string_view blocks) {
      seen.push_back(w);
      uint64_t records = 0;
      return wal::ReplayWindowImage(blocks, w, v, &records);
    });
    REQUIRE_MESSAGE(st.ok(), st.message());
    std::vector<testing::TestWindow> want_windows(windows.begin() + static_cast<ptrdiff_t>(after),
                                                  windows.end());
    std::vector<uint64_t> want_seen;
    for (const auto& w : want_windows)
      want_seen.push_back(w.window);
    CHECK(seen == want_seen);
    CHECK(v.events == testing::ExpectedEvents(want_windows, schemas, heads));
  }

  // The callback's error ends the walk and is returned.
  uint64_t calls = 0;
  auto st = wal::ForEachWindowImage(root.path(), 0, [&](uint64_t w, std::string_view) {
    ++calls;
    return w == 5 ? util::Status::Error("stop at 5") : util::Status::Ok();
  });
  CHECK(st.message() == "stop at 5");
  CHECK(calls == 5);

  // A damaged block (with valid blocks after it) fails the walk, naming the segment.
  auto listing = wal::ListDir(root.path());
  REQUIRE(listing.ok());
  const std::string first = listing->segments.front().path;
  std::string bytes = testing::ReadAll(first);
  auto offsets = testing::BlockOffsets(bytes);
  REQUIRE(offsets.size() > 2);
  bytes[offsets[1] + wal::kBlockHeaderSize + 1] ^= 0x5a;
  testing::WriteAll(first, bytes);
  calls = 0;
  st = wal::ForEachWindowImage(root.path(), 0, [&](uint64_t, std::string_view) {
    ++calls;
    return util::Status::Ok();
  });
  CHECK_FALSE(st.ok());
  CHECK_MESSAGE(st.message().rfind("segment '" + first + "': ", 0) == 0, st.message());
}
