// Recovery of the log: torn tails are cut and kept aside, corruption anywhere else
// stops recovery with the file and offset (or, with salvage, keeps the prefix).

#include "wal/replay.h"

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <sys/stat.h>

#include <filesystem>
#include <random>

#include "support/op_model.h"
#include "support/process.h"
#include "support/wal_fixtures.h"
#include "wal/block.h"
#include "wal/checkpoint.h"
#include "wal/files.h"
#include "wal/format.h"

using namespace conv;
using testing::RecordingVisitor;
namespace fs = std::filesystem;

namespace {

// An empty directory `root`/d, recreated on every call.
std::string FreshDir(const testing::TempDir& root) {
  std::string d = root.File("d");
  fs::remove_all(d);
  fs::create_directory(d);
  return d;
}

bool Exists(const std::string& path) {
  return fs::exists(path);
}

uint64_t FileSize(const std::string& path) {
  return static_cast<uint64_t>(fs::file_size(path));
}

std::vector<testing::TestWindow> Prefix(const std::vector<testing::TestWindow>& w, size_t n) {
  return {w.begin(), w.begin() + static_cast<ptrdiff_t>(n)};
}

// A log of `n` windows in one segment; returns the segment's bytes.
std::string OneSegment(const testing::TempDir& root, std::mt19937_64& rng, size_t n,
                       size_t max_records, size_t value_bytes,
                       std::vector<testing::TestWindow>* windows) {
  std::string d = FreshDir(root);
  *windows = testing::RandomWindows(rng, 1, n, max_records, value_bytes);
  wal::WriterOptions o;
  o.fsync = false;
  testing::WriteWindows(d, *windows, testing::TestSchemaRecords(), o);
  return testing::ReadAll(d + "/" + wal::SegmentName(1));
}

}  // namespace

TEST_CASE("wal: a torn tail at every byte of the last block recovers exactly the blocks before") {
  uint64_t seed = testing::TestSeed("CONV_WAL_SEED", 4242);
  MESSAGE("seed ", seed, " (CONV_WAL_SEED)");
  std::mt19937_64 rng(seed);
  testing::TempDir root("conv-wal");
  std::vector<testing::TestWindow> windows;
  std::string image = OneSegment(root, rng, 4, 4, 24, &windows);
  auto schemas = testing::TestSchemaRecords();
  auto offsets = testing::BlockOffsets(image);
  REQUIRE(offsets.size() == 4);
  uint64_t last = offsets.back();
  auto want = testing::ExpectedEvents(Prefix(windows, 3), schemas, {1});
  auto want_all = testing::ExpectedEvents(windows, schemas, {1});
  const std::string name = wal::SegmentName(1);

  for (int mode = 0; mode < 3; ++mode) {  // truncated; length kept, rest zeros; rest garbage
    for (uint64_t cut = last; cut <= image.size(); ++cut) {
      CAPTURE(mode);
      CAPTURE(cut);
      std::string data = image;
      if (mode == 0) {
        data.resize(cut);
      } else {
        for (uint64_t i = cut; i < data.size(); ++i) {
          data[i] = mode == 1 ? '\0' : static_cast<char>(rng() | 0x80);
        }
      }
      // Zeroing bytes that were zeros already (a record may end in one) changes nothing.
      if (data == image && cut != image.size()) continue;
      std::string d = FreshDir(root);
      std::string path = d + "/" + name;
      testing::WriteAll(path, data);

      RecordingVisitor v;
      wal::RecoveryReport report;
      auto st = wal::Recover(d, v, false, &report);
      REQUIRE_MESSAGE(st.ok(), st.message());
      if (cut == image.size()) {  // nothing cut or overwritten
        CHECK(v.events == want_all);
        CHECK(report.torn_file.empty());
        continue;
      }
      CHECK(v.events == want);
      CHECK(report.last_window == 3);
      // The bytes of the torn block up to its last non-zero byte.
      uint64_t end = data.size();
      while (end > last && data[end - 1] == '\0')
        --end;
      if (end == last) {
        // Nothing of the last block reached the file: a clean end.
        CHECK(report.torn_file.empty());
      } else {
        CHECK(report.torn_file == path);
        CHECK(report.torn_offset == last);
        CHECK(report.torn_bytes == end - last);
        REQUIRE_FALSE(report.torn_saved_as.empty());
        CHECK(report.torn_saved_as.find(fmt::format("torn-{}-{}", name, last)) !=
              std::string::npos);
        CHECK(testing::ReadAll(report.torn_saved_as) == data.substr(last, end - last));
        CHECK(FileSize(path) == last);
      }
      // A second recovery finds a clean log.
      RecordingVisitor again;
      wal::RecoveryReport report2;
      REQUIRE(wal::Recover(d, again, false, &report2).ok());
      CHECK(again.events == want);
      CHECK(report2.torn_file.empty());
    }
  }
}

TEST_CASE("wal: a flipped bit in any block but the last stops recovery and names file and offset") {
  uint64_t seed = testing::TestSeed("CONV_WAL_SEED", 515);
  MESSAGE("seed ", seed, " (CONV_WAL_SEED)");
  std::mt19937_64 rng(seed);
  testing::TempDir root("conv-wal");
  std::vector<testing::TestWindow> windows;
  std::string image = OneSegment(root, rng, 4, 2, 3, &windows);
  auto schemas = testing::TestSchemaRecords();
  auto offsets = testing::BlockOffsets(image);
  REQUIRE(offsets.size() == 4);
  const std::string name = wal::SegmentName(1);
  MESSAGE("flipping each of ", (offsets[3] - offsets[0]) * 8, " bits; salvaging ",
          offsets[3] - offsets[0], " of them");

  for (uint64_t byte = offsets[0]; byte < offsets[3]; ++byte) {
    size_t k = 0;  // the damaged block
    while (offsets[k + 1] <= byte)
      ++k;
    for (int bit = 0; bit < 8; ++bit) {
      CAPTURE(byte);
      CAPTURE(bit);
      std::string data = image;
      data[byte] = static_cast<char>(data[byte] ^ (1 << bit));
      std::string d = FreshDir(root);
      std::string path = d + "/" + name;
      testing::WriteAll(path, data);

      RecordingVisitor v;
      wal::RecoveryReport report;
      auto st = wal::Recover(d, v, false, &report);
      REQUIRE_FALSE(st.ok());
      CHECK(st.message().find(path) != std::string::npos);
      CHECK(st.message().find(fmt::format("offset {}", offsets[k])) != std::string::npos);
      CHECK(st.message().find("--salvage") != std::string::npos);
      CHECK(testing::ReadAll(path) == data);  // nothing was cut

      // Salvage (which fsyncs what it moves aside) for one bit of every byte.
      if (bit != static_cast<int>(byte % 8)) continue;
      RecordingVisitor s;
      wal::RecoveryReport salvaged;
      auto ok = wal::Recover(d, s, true, &salvaged);
      REQUIRE_MESSAGE(ok.ok(), ok.message());
      CHECK(s.events == testing::ExpectedEvents(Prefix(windows, k), schemas, {1}));
      CHECK(salvaged.last_window == k);
      REQUIRE_FALSE(salvaged.warnings.empty());
      CHECK(salvaged.warnings[0].find(path) != std::string::npos);
      std::string side = fmt::format("{}/salvaged-{}-{}.bin", d, name, offsets[k]);
      REQUIRE(Exists(side));
      CHECK(testing::ReadAll(side) == data.substr(offsets[k]));
      if (k == 0) {
        CHECK_FALSE(Exists(path));  // nothing left in it
      } else {
        CHECK(FileSize(path) == offsets[k]);
      }
    }
  }
}

TEST_CASE("wal: a torn tail in an older segment is corruption, not a clean end") {
  std::mt19937_64 rng(31);
  testing::TempDir root("conv-wal");
  std::string d = FreshDir(root);
  auto schemas = testing::TestSchemaRecords();
  auto windows = testing::RandomWindows(rng, 1, 6, 3);
  wal::WriterOptions o;
  o.fsync = false;
  testing::WriteWindows(d, Prefix(windows, 3), schemas, o);
  testing::WriteWindows(d, {windows.begin() + 3, windows.end()}, schemas, o);
  std::string first = d + "/" + wal::SegmentName(1);
  std::string second = d + "/" + wal::SegmentName(4);
  std::string image = testing::ReadAll(first);
  auto offsets = testing::BlockOffsets(image);
  testing::WriteAll(first, image.substr(0, offsets[2] + 5));

  RecordingVisitor v;
  wal::RecoveryReport report;
  auto st = wal::Recover(d, v, false, &report);
  REQUIRE_FALSE(st.ok());
  CHECK(st.message().find(first) != std::string::npos);
  CHECK(st.message().find(fmt::format("offset {}", offsets[2])) != std::string::npos);

  RecordingVisitor s;
  wal::RecoveryReport salvaged;
  REQUIRE(wal::Recover(d, s, true, &salvaged).ok());
  CHECK(s.events == testing::ExpectedEvents(Prefix(windows, 2), schemas, {1}));
  CHECK(FileSize(first) == offsets[2]);
  CHECK_FALSE(Exists(second));
  CHECK(Exists(second + ".salvaged"));
  CHECK(salvaged.warnings.size() == 2);
}

TEST_CASE("wal: windows missing between segments stop recovery") {
  std::mt19937_64 rng(32);
  testing::TempDir root("conv-wal");
  std::string d = FreshDir(root);
  auto schemas = testing::TestSchemaRecords();
  auto windows = testing::RandomWindows(rng, 1, 8, 3);
  wal::WriterOptions o;
  o.fsync = false;
  testing::WriteWindows(d, Prefix(windows, 3), schemas, o);
  testing::WriteWindows(d, {windows.begin() + 5, windows.end()}, schemas, o);  // 4, 5 lost
  RecordingVisitor v;
  wal::RecoveryReport report;
  auto st = wal::Recover(d, v, false, &report);
  REQUIRE_FALSE(st.ok());
  CHECK(st.message().find("window 6") != std::string::npos);
  CHECK(st.message().find("follows window 3") != std::string::npos);
  CHECK(st.message().find(wal::SegmentName(6)) != std::string::npos);
}

TEST_CASE("wal: a last segment created just before a crash does not block the next writer") {
  std::mt19937_64 rng(33);
  testing::TempDir root("conv-wal");
  std::string d = FreshDir(root);
  auto schemas = testing::TestSchemaRecords();
  auto windows = testing::RandomWindows(rng, 1, 5, 3);
  wal::WriterOptions o;
  o.fsync = false;
  testing::WriteWindows(d, Prefix(windows, 3), schemas, o);

  SUBCASE("with its header and preallocated zeros") {
    std::string header;
    wal::AppendFileHeader(header, wal::kSegmentMagic, 4);
    header.resize(64 << 10, '\0');
    testing::WriteAll(d + "/" + wal::SegmentName(4), header);
  }
  SUBCASE("preallocated, its header not written yet") {
    testing::WriteAll(d + "/" + wal::SegmentName(4), std::string(64 << 10, '\0'));
  }
  SUBCASE("with half a header") {
    std::string header;
    wal::AppendFileHeader(header, wal::kSegmentMagic, 4);
    testing::WriteAll(d + "/" + wal::SegmentName(4), header.substr(0, 10));
  }

  RecordingVisitor v;
  wal::RecoveryReport report;
  auto st = wal::Recover(d, v, false, &report);
  REQUIRE_MESSAGE(st.ok(), st.message());
  CHECK(report.last_window == 3);
  CHECK(v.events == testing::ExpectedEvents(Prefix(windows, 3), schemas, {1}));

  // The server goes on with window 4, in a segment of that name.
  testing::WriteWindows(d, {windows.begin() + 3, windows.end()}, schemas, o);
  RecordingVisitor after;
  REQUIRE(wal::Recover(d, after, false, &report).ok());
  CHECK(after.events == testing::ExpectedEvents(windows, schemas, {1, 4}));
}

TEST_CASE("wal: recovery gives back the preallocated space a crash left in the last segment") {
  std::mt19937_64 rng(34);
  testing::TempDir root("conv-wal");
  std::string d = FreshDir(root);
  auto schemas = testing::TestSchemaRecords();
  auto windows = testing::RandomWindows(rng, 1, 3, 3);
  wal::WriterOptions o;
  o.fsync = false;
  testing::WriteWindows(d, windows, schemas, o);
  std::string path = d + "/" + wal::SegmentName(1);
  std::string image = testing::ReadAll(path);
  testing::WriteAll(path, image + std::string(1 << 20, '\0'));  // as a killed writer leaves it

  RecordingVisitor v;
  wal::RecoveryReport report;
  REQUIRE(wal::Recover(d, v, false, &report).ok());
  CHECK(v.events == testing::ExpectedEvents(windows, schemas, {1}));
  CHECK(report.torn_file.empty());
  CHECK(FileSize(path) == image.size());
}

TEST_CASE("wal: recovery of an empty or missing data dir") {
  testing::TempDir root("conv-wal");
  RecordingVisitor v;
  wal::RecoveryReport report;
  REQUIRE(wal::Recover(root.path(), v, false, &report).ok());
  CHECK(v.events.empty());
  CHECK(report.last_window == 0);
  auto st = wal::Recover(root.File("nope"), v, false, &report);
  REQUIRE_FALSE(st.ok());
  CHECK(st.message().find("nope") != std::string::npos);
}

TEST_CASE("wal: a segment or checkpoint whose reserved header field is not zero is refused") {
  std::mt19937_64 rng(35);
  testing::TempDir root("conv-wal");
  std::string d = FreshDir(root);
  auto schemas = testing::TestSchemaRecords();
  auto windows = testing::RandomWindows(rng, 1, 3, 3);
  wal::WriterOptions o;
  o.fsync = false;
  testing::WriteWindows(d, windows, schemas, o);
  std::string path = d + "/" + wal::SegmentName(1);
  std::string image = testing::ReadAll(path);

  {
    wal::BlockReader r(image, wal::kSegmentMagic);
    CHECK(r.header_ok());
  }
  for (size_t byte = 12; byte < 16; ++byte) {  // the reserved u32
    CAPTURE(byte);
    std::string data = image;
    data[byte] = 1;
    wal::BlockReader r(data, wal::kSegmentMagic);
    CHECK_FALSE(r.header_ok());
    CHECK(r.error().find("reserved") != std::string::npos);

    testing::WriteAll(path, data);
    RecordingVisitor v;
    wal::RecoveryReport report;
    auto st = wal::Recover(d, v, false, &report);
    REQUIRE_FALSE(st.ok());
    CHECK(st.message().find(path) != std::string::npos);
    CHECK(st.message().find("reserved") != std::string::npos);
    CHECK(testing::ReadAll(path) == data);  // nothing was cut
  }
  testing::WriteAll(path, image);

  // A checkpoint so marked is not used; the warning names it.
  {
    auto w = wal::CheckpointWriter::Begin(d, 3, schemas.bytes, schemas.count);
    REQUIRE(w.ok());
    REQUIRE((*w)->Finish().ok());
  }
  std::string ckpt = d + "/" + wal::CheckpointName(3);
  std::string ck = testing::ReadAll(ckpt);
  ck[14] = 0x40;
  testing::WriteAll(ckpt, ck);
  RecordingVisitor v;
  wal::RecoveryReport report;
  auto st = wal::Recover(d, v, false, &report);
  REQUIRE_MESSAGE(st.ok(), st.message());
  CHECK_FALSE(report.used_checkpoint);
  REQUIRE(report.warnings.size() == 1);
  CHECK(report.warnings[0].find(ckpt) != std::string::npos);
  CHECK(report.warnings[0].find("reserved") != std::string::npos);
  CHECK(v.events == testing::ExpectedEvents(windows, schemas, {1}));
}

namespace {

struct SyncLog {
  std::vector<std::string> paths;
  SyncLog() {
    wal::SetSyncObserver(
        [](const std::string& p, void* arg) { static_cast<SyncLog*>(arg)->paths.push_back(p); },
        this);
  }
  ~SyncLog() { wal::SetSyncObserver(nullptr, nullptr); }
  // Index of the first fsync of `path`, or -1.
  int Index(const std::string& path) const {
    for (size_t i = 0; i < paths.size(); ++i) {
      if (paths[i] == path) return static_cast<int>(i);
    }
    return -1;
  }
};

}  // namespace

TEST_CASE(
    "wal: cutting a torn tail or salvaging makes the side file, its name and the cut durable") {
  std::mt19937_64 rng(36);
  testing::TempDir root("conv-wal");
  std::vector<testing::TestWindow> windows;
  std::string image = OneSegment(root, rng, 4, 3, 8, &windows);
  auto offsets = testing::BlockOffsets(image);
  const std::string name = wal::SegmentName(1);

  SUBCASE("torn tail") {
    std::string d = FreshDir(root);
    std::string path = d + "/" + name;
    testing::WriteAll(path, image.substr(0, image.size() - 3));
    SyncLog syncs;
    RecordingVisitor v;
    wal::RecoveryReport report;
    REQUIRE(wal::Recover(d, v, false, &report).ok());
    REQUIRE_FALSE(report.torn_saved_as.empty());
    MESSAGE("fsyncs: ", testing::Head(syncs.paths, 20));
    int side = syncs.Index(report.torn_saved_as);
    int dir = syncs.Index(d);
    int seg = syncs.Index(path);
    CHECK(side >= 0);
    CHECK(dir > side);  // the side file is durable under its name before anything is cut
    CHECK(seg > dir);   // and the cut itself is durable
    CHECK(FileSize(path) == offsets[3]);
  }
  SUBCASE("salvage") {
    std::string d = FreshDir(root);
    std::string path = d + "/" + name;
    std::string data = image;
    data[offsets[1] + 10] ^= 0x01;
    testing::WriteAll(path, data);
    SyncLog syncs;
    RecordingVisitor v;
    wal::RecoveryReport report;
    REQUIRE(wal::Recover(d, v, true, &report).ok());
    std::string side = fmt::format("{}/salvaged-{}-{}.bin", d, name, offsets[1]);
    MESSAGE("fsyncs: ", testing::Head(syncs.paths, 20));
    int s = syncs.Index(side);
    int dir = syncs.Index(d);
    int seg = syncs.Index(path);
    CHECK(s >= 0);
    CHECK(dir > s);
    CHECK(seg > dir);
    CHECK(FileSize(path) == offsets[1]);
  }
}

TEST_CASE("wal: cutting a file that cannot be opened fails naming it") {
  testing::TempDir root("conv-wal");
  auto st = wal::TruncateFile(root.File("missing.log"), 0);
  REQUIRE_FALSE(st.ok());
  CHECK(st.message().find(root.File("missing.log")) != std::string::npos);
  auto dir = wal::TruncateFile(root.path(), 0);  // a directory cannot be opened for writing
  REQUIRE_FALSE(dir.ok());
  CHECK(dir.message().find(root.path()) != std::string::npos);
}

TEST_CASE("wal: damage in the last group commit with its later blocks intact is a torn tail") {
  uint64_t seed = testing::TestSeed("CONV_WAL_SEED", 37);
  MESSAGE("seed ", seed, " (CONV_WAL_SEED)");
  std::mt19937_64 rng(seed);
  testing::TempDir root("conv-wal");
  auto schemas = testing::TestSchemaRecords();
  auto windows = testing::RandomWindows(rng, 1, 5, 30, 60);
  const std::string name = wal::SegmentName(1);
  // Windows 1-3 each in its own group commit; 4 and 5 together in the last one
  // (`together`), or each alone.
  auto write = [&](const std::string& d, bool together) {
    wal::WriterOptions o;
    o.fsync = false;
    wal::SegmentWriter w(d, o);
    w.SetSchemaRecords(schemas.bytes, schemas.count);
    for (const auto& win : windows) {
      std::vector<std::string_view> f = {win.records.bytes};
      REQUIRE(w.AppendWindow(win.window, win.ops, win.records.count, f).ok());
      if (win.window != 4 || !together) REQUIRE(w.Sync().ok());
    }
    w.Close();
    return testing::ReadAll(d + "/" + name);
  };
  auto want = testing::ExpectedEvents(Prefix(windows, 3), schemas, {1});

  for (bool together : {true, false}) {
    // The page holding window 4's block header lost (zeros), or garbage there.
    for (int damage = 0; damage < 2; ++damage) {
      CAPTURE(together);
      CAPTURE(damage);
      std::string d = FreshDir(root);
      std::string image = write(d, together);
      auto offsets = testing::BlockOffsets(image);
      REQUIRE(offsets.size() == 5);
      const uint64_t w4 = offsets[3];
      std::string data = image;
      for (uint64_t i = w4; i < std::min<uint64_t>(w4 + 64, offsets[4]); ++i)
        data[i] = damage == 0 ? '\0' : static_cast<char>(rng());
      std::string path = d + "/" + name;
      testing::WriteAll(path, data);

      RecordingVisitor v;
      wal::RecoveryReport report;
      auto st = wal::Recover(d, v, false, &report);
      if (!together) {
        // Window 4 was synced before window 5 was written: it may have been
        // acknowledged, so its damage is corruption.
        REQUIRE_FALSE(st.ok());
        CHECK(st.message().find(fmt::format("offset {}", w4)) != std::string::npos);
        CHECK(testing::ReadAll(path) == data);
        continue;
      }
      REQUIRE_MESSAGE(st.ok(), st.message());
      CHECK(v.events == want);
      CHECK(report.last_window == 3);
      CHECK(report.torn_file == path);
      CHECK(report.torn_offset == w4);
      CHECK(report.torn_bytes == image.size() - w4);
      CHECK(testing::ReadAll(report.torn_saved_as) == data.substr(w4));
      CHECK(FileSize(path) == w4);
    }
  }

  // The writer marks every block after the first of a group commit, and only those.
  std::string d = FreshDir(root);
  std::string image = write(d, true);
  wal::BlockReader reader(image, wal::kSegmentMagic);
  std::vector<bool> continues;
  wal::Block b;
  while (reader.Next(&b) == wal::ReadStatus::kBlock)
    continues.push_back(b.continues_group);
  CHECK(continues == std::vector<bool>{false, false, false, false, true});
}

TEST_CASE("wal: a window whose records go bad part way is not delivered at all, even to salvage") {
  // Found by tests/fuzz (recovery): a one-block window was delivered up to its
  // malformed record, and salvage then dropped the window that had been applied.
  testing::TempDir root("conv-wal");
  std::string good_records, bad_records;
  wal::PutSource(good_records, "w", 1);
  wal::PutSource(bad_records, "w", 2);
  bad_records.push_back('\x09');  // no record kind 9
  std::string image;
  wal::AppendFileHeader(image, wal::kSegmentMagic, 1);
  std::string payload;
  wal::AppendWindowHead(payload, 1, 1, 1);
  wal::AppendBlock(image, wal::BlockType::kWindow, payload + good_records);
  const size_t second = image.size();
  payload.clear();
  wal::AppendWindowHead(payload, 2, 2, 2);
  wal::AppendBlock(image, wal::BlockType::kWindow, payload + bad_records);

  std::string d = FreshDir(root);
  testing::WriteAll(d + "/" + wal::SegmentName(1), image);
  RecordingVisitor strict;
  wal::RecoveryReport report;
  auto st = wal::Recover(d, strict, false, &report);
  REQUIRE_FALSE(st.ok());
  CHECK(st.message().find(fmt::format("malformed records in window 2 at offset {}", second)) !=
        std::string::npos);

  RecordingVisitor salvaged;
  REQUIRE(wal::Recover(d, salvaged, true, &report).ok());
  CHECK(report.last_window == 1);
  RecordingVisitor expected;
  std::string d2 = FreshDir(root);
  testing::WriteAll(d2 + "/" + wal::SegmentName(1), image.substr(0, second));
  REQUIRE(wal::Recover(d2, expected, false, &report).ok());
  CHECK(salvaged.events == expected.events);
  CHECK(strict.events == expected.events);
}
