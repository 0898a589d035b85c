// The segment writer: what it appends is what recovery reads back.

#include "wal/writer.h"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <random>

#include "support/op_model.h"
#include "support/process.h"
#include "support/wal_fixtures.h"
#include "wal/files.h"
#include "wal/format.h"
#include "wal/replay.h"

using namespace conv;
using testing::RecordingVisitor;

namespace {

uint64_t FileSize(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return static_cast<uint64_t>(st.st_size);
}

}  // namespace

TEST_CASE("wal: windows appended by the segment writer are recovered exactly, in order") {
  uint64_t seed = testing::TestSeed("CONV_WAL_SEED", 9001);
  MESSAGE("seed ", seed, " (CONV_WAL_SEED)");
  std::mt19937_64 rng(seed);
  testing::TempDir dir("conv-wal");
  auto schemas = testing::TestSchemaRecords();
  auto windows = testing::RandomWindows(rng, 1, 120, 12, 40);
  wal::WriterOptions o;
  o.fsync = false;
  o.segment_bytes = 3072;  // a few windows per segment: many rotations
  testing::WriteWindows(dir.path(), windows, schemas, o);

  auto heads = testing::SegmentHeads(dir.path());
  CHECK(heads.size() > 10);
  CHECK(*heads.begin() == 1);

  RecordingVisitor v;
  wal::RecoveryReport report;
  auto st = wal::Recover(dir.path(), v, false, &report);
  REQUIRE_MESSAGE(st.ok(), st.message());
  auto want = testing::ExpectedEvents(windows, schemas, heads);
  CHECK(v.events.size() == want.size());
  CHECK(v.events == want);
  CHECK(report.last_window == 120);
  CHECK(report.blocks == 120);
  CHECK(report.segments == heads.size());
  CHECK(report.torn_file.empty());
  CHECK(report.warnings.empty());
  CHECK_FALSE(report.used_checkpoint);

  // Every segment is closed at the end of its last block: no preallocated space left.
  auto listing = wal::ListDir(dir.path());
  REQUIRE(listing.ok());
  for (const auto& s : listing->segments) {
    auto data = testing::ReadAll(s.path);
    auto offsets = testing::BlockOffsets(data);
    REQUIRE_FALSE(offsets.empty());
    CHECK(data.size() <= 4096);
  }
}

TEST_CASE("wal: the writer carries on in a new segment after a restart") {
  std::mt19937_64 rng(12);
  testing::TempDir dir("conv-wal");
  auto schemas = testing::TestSchemaRecords();
  auto windows = testing::RandomWindows(rng, 1, 30, 5);
  wal::WriterOptions o;
  o.fsync = false;
  std::vector<testing::TestWindow> first(windows.begin(), windows.begin() + 10);
  std::vector<testing::TestWindow> second(windows.begin() + 10, windows.end());
  testing::WriteWindows(dir.path(), first, schemas, o);
  testing::WriteWindows(dir.path(), second, schemas, o);
  auto heads = testing::SegmentHeads(dir.path());
  CHECK(heads == std::set<uint64_t>{1, 11});

  RecordingVisitor v;
  wal::RecoveryReport report;
  REQUIRE(wal::Recover(dir.path(), v, false, &report).ok());
  CHECK(v.events == testing::ExpectedEvents(windows, schemas, heads));
  CHECK(report.last_window == 30);
}

TEST_CASE("wal: a window larger than a segment gets a segment of its own") {
  std::mt19937_64 rng(13);
  testing::TempDir dir("conv-wal");
  auto schemas = testing::TestSchemaRecords();
  auto windows = testing::RandomWindows(rng, 1, 6, 3, 8);
  windows[3].records = testing::RandomRecords(rng, 200, 64);  // far past 1 KiB
  wal::WriterOptions o;
  o.fsync = false;
  o.segment_bytes = 1024;
  testing::WriteWindows(dir.path(), windows, schemas, o);
  auto heads = testing::SegmentHeads(dir.path());
  CHECK(heads.contains(4));
  CHECK(heads.contains(5));

  RecordingVisitor v;
  wal::RecoveryReport report;
  REQUIRE(wal::Recover(dir.path(), v, false, &report).ok());
  CHECK(v.events == testing::ExpectedEvents(windows, schemas, heads));
}

TEST_CASE("wal: an open segment is preallocated and private, and closing gives back the rest") {
  std::mt19937_64 rng(14);
  testing::TempDir dir("conv-wal");
  auto schemas = testing::TestSchemaRecords();
  auto windows = testing::RandomWindows(rng, 1, 3, 3);
  wal::WriterOptions o;
  o.fsync = true;
  o.segment_bytes = 256 << 10;
  wal::SegmentWriter w(dir.path(), o);
  w.SetSchemaRecords(schemas.bytes, schemas.count);
  for (const auto& win : windows) {
    std::vector<std::string_view> f = {win.records.bytes};
    REQUIRE(w.AppendWindow(win.window, win.ops, win.records.count, f).ok());
  }
  REQUIRE(w.Sync().ok());
  CHECK(w.current_first_window() == 1);
  CHECK(w.stats().blocks == 3);
  CHECK(w.stats().segments == 1);
  CHECK(w.stats().fsyncs == 1);
  REQUIRE(w.Sync().ok());  // nothing new: no second fdatasync
  CHECK(w.stats().fsyncs == 1);

  std::string path = dir.File(wal::SegmentName(1));
  CHECK(FileSize(path) == (256u << 10));
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);

  // A crash now leaves the segment as it is: recovery reads the same windows.
  {
    testing::TempDir copy("conv-wal");
    testing::WriteAll(copy.File(wal::SegmentName(1)), testing::ReadAll(path));
    RecordingVisitor v;
    wal::RecoveryReport report;
    REQUIRE(wal::Recover(copy.path(), v, false, &report).ok());
    CHECK(v.events == testing::ExpectedEvents(windows, schemas, {1}));
    CHECK(report.last_window == 3);
    CHECK(report.torn_file.empty());
  }
  w.Close();
  CHECK(w.current_first_window() == 0);
  CHECK(FileSize(path) == wal::kFileHeaderSize + w.stats().bytes);
}
