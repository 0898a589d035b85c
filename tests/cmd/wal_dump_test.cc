// `convergence wal-dump` run on logs built here: --verify exit codes, --stats totals
// and --json lines.

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <filesystem>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/record.h"
#include "engine/schema.h"
#include "support/json_value.h"
#include "support/process.h"
#include "support/wal_fixtures.h"
#include "util/coding.h"
#include "wal/block.h"
#include "wal/checkpoint.h"
#include "wal/files.h"
#include "wal/records.h"
#include "wal/writer.h"

using namespace conv;
using testing::JsonValue;

namespace {

std::string Claim(std::string_view id, std::string_view source, uint64_t ts,
                  std::initializer_list<std::pair<std::string_view, engine::Value>> fields) {
  engine::Schema player = engine::PlayerSchema();
  engine::RecordBuilder b(player);
  for (const auto& [name, value] : fields)
    REQUIRE(b.Set(name, value).ok());
  std::string rec = b.Encode();
  engine::RecordView view;
  REQUIRE(engine::ParseRecord(player, rec, &view).ok());
  std::string out;
  wal::PutClaim(out, player.id, id, source, view.mask, true, ts, nullptr, view.values);
  return out;
}

std::string Retract(std::string_view id, std::string_view source) {
  std::string out;
  wal::PutRetract(out, engine::kPlayerSchemaId, id, source);
  return out;
}

std::string Source(std::string_view source, uint64_t seq) {
  std::string out;
  wal::PutSource(out, source, seq);
  return out;
}

struct Window {
  uint64_t window;
  uint64_t ops;
  std::vector<std::string> records;
};

// The known log: segments holding windows 1-2 and 3-4 (each window synced on its
// own), 3 entities, 3 sources.
//   1 (4 ops): claim p-1 alpha, claim p-2 beta, source alpha 3, source beta 1
//   2 (2 ops): claim p-1 beta, retract p-2 beta, source beta 3
//   3 (1 op):  claim p-3 gamma, source gamma 1
//   4 (0 ops): nothing
void WriteKnownLog(const std::string& dir) {
  std::vector<Window> windows = {
      {1,
       4,
       {Claim("p-1", "alpha", 100, {{"name", std::string("ann")}, {"health", int64_t{90}}}),
        Claim("p-2", "beta", 101, {{"name", std::string("bob")}}), Source("alpha", 3),
        Source("beta", 1)}},
      {2, 2, {Claim("p-1", "beta", 102, {{"x", 1.5}}), Retract("p-2", "beta"), Source("beta", 3)}},
      {3, 1, {Claim("p-3", "gamma", 103, {{"online", true}}), Source("gamma", 1)}},
      {4, 0, {}},
  };
  engine::SchemaSet schemas;
  uint64_t schema_count = 0;
  std::string schema_records = engine::EncodeSchemaRecords(schemas, &schema_count);
  wal::WriterOptions o;
  o.fsync = false;
  for (size_t from : {size_t{0}, size_t{2}}) {
    wal::SegmentWriter w(dir, o);
    w.SetSchemaRecords(schema_records, schema_count);
    for (size_t i = from; i < from + 2; ++i) {
      std::vector<std::string_view> fragments(windows[i].records.begin(), windows[i].records.end());
      auto r =
          w.AppendWindow(windows[i].window, windows[i].ops, windows[i].records.size(), fragments);
      REQUIRE_MESSAGE(r.ok(), r.message);
      REQUIRE(w.Sync().ok());  // each window its own group commit
    }
  }
}

testing::ProcessResult WalDump(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {CONV_BINARY, "wal-dump"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = testing::RunProcess(argv, std::chrono::seconds(60));
  REQUIRE_FALSE(r.timed_out);
  return r;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

std::string SegmentPath(const std::string& dir, uint64_t w) {
  return dir + "/" + wal::SegmentName(w);
}

}  // namespace

TEST_CASE("wal-dump: --verify exits 0 on a clean log, 1 on a torn tail, 2 on corruption") {
  testing::TempDir dir("conv-waldump");
  WriteKnownLog(dir.path());
  {
    std::mt19937_64 rng(8);
    auto records = testing::RandomRecords(rng, 10);
    auto w = wal::CheckpointWriter::Begin(dir.path(), 2, "", 0);
    REQUIRE(w.ok());
    REQUIRE((*w)->Add(records.bytes, records.count).ok());
    REQUIRE((*w)->Finish().ok());
  }
  const std::string first = SegmentPath(dir.path(), 1);
  const std::string last = SegmentPath(dir.path(), 3);
  const std::string pristine_first = testing::ReadAll(first);
  const std::string pristine_last = testing::ReadAll(last);
  auto restore = [&] {
    testing::WriteAll(first, pristine_first);
    testing::WriteAll(last, pristine_last);
  };
  auto last_blocks = testing::BlockOffsets(pristine_last);
  REQUIRE(last_blocks.size() == 2);

  {
    auto r = WalDump({dir.path(), "--verify"});
    CHECK_MESSAGE(r.exit_code == 0, r.out, r.err);
    CHECK(r.out.find("verify: clean") != std::string::npos);
    CHECK(r.out.find(wal::CheckpointName(2) + ": ok") != std::string::npos);
  }
  {
    auto r = WalDump({first, "--verify"});  // one file
    CHECK_MESSAGE(r.exit_code == 0, r.out, r.err);
  }
  SUBCASE("the last segment cut in its last block: a torn tail") {
    for (uint64_t cut : {last_blocks[1] + 1, last_blocks[1] + 9, pristine_last.size() - 1}) {
      CAPTURE(cut);
      restore();
      testing::WriteAll(last, pristine_last.substr(0, cut));
      auto r = WalDump({dir.path(), "--verify"});
      CHECK_MESSAGE(r.exit_code == 1, r.out, r.err);
      CHECK(r.out.find(fmt::format("torn tail at offset {}", last_blocks[1])) != std::string::npos);
      CHECK(r.out.find("verify: torn tail") != std::string::npos);
    }
  }
  SUBCASE("a last segment created but never written: a torn tail") {
    restore();
    testing::WriteAll(SegmentPath(dir.path(), 5), std::string(4096, '\0'));
    auto r = WalDump({dir.path(), "--verify"});
    CHECK_MESSAGE(r.exit_code == 1, r.out, r.err);
  }
  SUBCASE("a flipped bit in a block that is not the last: corruption") {
    for (uint64_t bit = last_blocks[0] * 8; bit < last_blocks[1] * 8; bit += 37) {
      CAPTURE(bit);
      restore();
      std::string data = pristine_last;
      data[bit / 8] = static_cast<char>(data[bit / 8] ^ (1 << (bit % 8)));
      testing::WriteAll(last, data);
      auto r = WalDump({dir.path(), "--verify"});
      CHECK_MESSAGE(r.exit_code == 2, r.out, r.err);
      CHECK(r.out.find(fmt::format("corrupt block at offset {}", last_blocks[0])) !=
            std::string::npos);
      CHECK(r.out.find("verify: CORRUPT") != std::string::npos);
    }
  }
  SUBCASE("an older segment cut short: corruption, not a torn tail") {
    restore();
    testing::WriteAll(first, pristine_first.substr(0, pristine_first.size() - 3));
    auto r = WalDump({dir.path(), "--verify"});
    CHECK_MESSAGE(r.exit_code == 2, r.out, r.err);
    CHECK(r.out.find(wal::SegmentName(1) + ": CORRUPT") != std::string::npos);
  }
  SUBCASE("a reserved header field that is not zero: corruption naming the file") {
    for (const std::string& path : {first, dir.File(wal::CheckpointName(2))}) {
      CAPTURE(path);
      restore();
      std::string pristine = testing::ReadAll(path);
      std::string data = pristine;
      data[12] = 7;
      testing::WriteAll(path, data);
      auto r = WalDump({dir.path(), "--verify"});
      testing::WriteAll(path, pristine);
      CHECK_MESSAGE(r.exit_code == 2, r.out, r.err);
      std::string name = path.substr(path.rfind('/') + 1);
      CHECK(r.out.find(name + ": CORRUPT") != std::string::npos);
      CHECK(r.out.find("reserved") != std::string::npos);
    }
  }
  SUBCASE("a damaged checkpoint: corruption") {
    restore();
    std::string ckpt = dir.File(wal::CheckpointName(2));
    std::string data = testing::ReadAll(ckpt);
    data[40] = static_cast<char>(data[40] ^ 0x10);
    testing::WriteAll(ckpt, data);
    auto r = WalDump({dir.path(), "--verify"});
    CHECK_MESSAGE(r.exit_code == 2, r.out, r.err);
  }
}

TEST_CASE("wal-dump: --stats counts windows, records, entities and sources of a known log") {
  testing::TempDir dir("conv-waldump");
  WriteKnownLog(dir.path());
  {
    auto r = WalDump({dir.path(), "--stats"});
    REQUIRE_MESSAGE(r.exit_code == 0, r.out, r.err);
    CHECK(r.out.find("windows          4 (1 to 4)") != std::string::npos);
    CHECK(r.out.find(
              "records          11 (claims 4, retracts 1, source marks 4, leases 0, schemas 2)") !=
          std::string::npos);
    CHECK(r.out.find("entities         3\n") != std::string::npos);
    CHECK(r.out.find("sources          3\n") != std::string::npos);
    CHECK(r.out.find("ops represented  7\n") != std::string::npos);
    CHECK(r.out.find("coalescing ratio 1.40") != std::string::npos);
  }
  auto r = WalDump({dir.path(), "--stats", "--json"});
  REQUIRE_MESSAGE(r.exit_code == 0, r.out, r.err);
  auto lines = Lines(r.out);
  REQUIRE(lines.size() == 1);
  auto v = testing::ParseJson(lines[0]);
  REQUIRE_MESSAGE(v.has_value(), lines[0]);
  auto num = [&](const std::string& key) {
    const JsonValue* f = v->Get(key);
    REQUIRE_MESSAGE(f != nullptr, key);
    REQUIRE(f->is(JsonValue::Kind::kNumber));
    return f->number;
  };
  CHECK(num("files") == 2);
  CHECK(num("windows") == 4);
  CHECK(num("first_window") == 1);
  CHECK(num("last_window") == 4);
  CHECK(num("records") == 11);
  CHECK(num("claims") == 4);
  CHECK(num("retracts") == 1);
  CHECK(num("entities") == 3);
  CHECK(num("sources") == 3);
  CHECK(num("ops") == 7);
  CHECK(num("coalescing_ratio") == doctest::Approx(1.4));
}

TEST_CASE("wal-dump: --json prints one JSON object per record with its kind, window and id") {
  testing::TempDir dir("conv-waldump");
  WriteKnownLog(dir.path());
  auto r = WalDump({dir.path(), "--json"});
  REQUIRE_MESSAGE(r.exit_code == 0, r.out, r.err);
  auto lines = Lines(r.out);
  REQUIRE(lines.size() == 11);
  std::vector<std::string> seen;  // kind@window[:id]
  for (const auto& line : lines) {
    CAPTURE(line);
    auto v = testing::ParseJson(line);
    REQUIRE(v.has_value());
    REQUIRE(v->is(JsonValue::Kind::kObject));
    const JsonValue* kind = v->Get("kind");
    const JsonValue* window = v->Get("window");
    REQUIRE(kind != nullptr);
    REQUIRE(window != nullptr);
    REQUIRE(kind->is(JsonValue::Kind::kString));
    REQUIRE(window->is(JsonValue::Kind::kNumber));
    REQUIRE(v->Get("file") != nullptr);
    REQUIRE(v->Get("offset") != nullptr);
    std::string entry = fmt::format("{}@{}", kind->string, window->number);
    if (kind->string == "claim" || kind->string == "retract") {
      const JsonValue* id = v->Get("id");
      const JsonValue* source = v->Get("source");
      REQUIRE(id != nullptr);
      REQUIRE(source != nullptr);
      CHECK(v->Get("schema")->string == "player");
      entry += ":" + id->string + "/" + source->string;
    }
    if (kind->string == "claim") {
      const JsonValue* record = v->Get("record");
      REQUIRE(record != nullptr);
      CHECK(record->is(JsonValue::Kind::kObject));
      if (v->Get("id")->string == "p-1" && v->Get("source")->string == "alpha") {
        CHECK(record->Get("name")->string == "ann");
        CHECK(record->Get("health")->number == 90);
        CHECK(v->Get("ts")->number == 100);
      }
    }
    if (kind->string == "source") {
      entry += fmt::format(":{}={}", v->Get("source")->string, v->Get("seq")->number);
    }
    seen.push_back(entry);
  }
  std::vector<std::string> want = {
      "schema@1",        "claim@1:p-1/alpha", "claim@1:p-2/beta",   "source@1:alpha=3",
      "source@1:beta=1", "claim@2:p-1/beta",  "retract@2:p-2/beta", "source@2:beta=3",
      "schema@3",        "claim@3:p-3/gamma", "source@3:gamma=1",
  };
  CHECK(seen == want);
}

TEST_CASE("wal-dump: a window split over several blocks counts and prints as one window") {
  std::mt19937_64 rng(77);
  testing::TempDir dir("conv-waldump");
  auto schemas = testing::TestSchemaRecords();
  auto windows = testing::RandomWindows(rng, 1, 4, 3, 8);
  windows[3].records = testing::RandomRecords(rng, 300, 60);  // many 4 KiB blocks
  uint64_t records = schemas.count, ops = 0;
  for (const auto& w : windows) {
    records += w.records.count;
    ops += w.ops;
  }
  wal::WriterOptions o;
  o.fsync = false;
  o.max_block_payload = 4096;
  testing::WriteWindows(dir.path(), windows, schemas, o);
  const std::string seg = SegmentPath(dir.path(), 1);
  const std::string pristine = testing::ReadAll(seg);
  auto blocks = testing::BlockOffsets(pristine);
  REQUIRE(blocks.size() > 6);

  {
    auto r = WalDump({dir.path(), "--stats", "--json"});
    REQUIRE_MESSAGE(r.exit_code == 0, r.out, r.err);
    auto v = testing::ParseJson(Lines(r.out).at(0));
    REQUIRE(v.has_value());
    CHECK(v->Get("windows")->number == 4);
    CHECK(v->Get("last_window")->number == 4);
    CHECK(v->Get("records")->number == static_cast<double>(records));
    CHECK(v->Get("ops")->number == static_cast<double>(ops));
  }
  {
    auto r = WalDump({dir.path()});
    REQUIRE_MESSAGE(r.exit_code == 0, r.out, r.err);
    CHECK(r.out.find(fmt::format("@{} window 4 (part 1, continued):", blocks[3])) !=
          std::string::npos);
    CHECK(r.out.find(fmt::format("@{} window 4: {} ops, {} records in {} blocks", blocks.back(),
                                 windows[3].ops, windows[3].records.count, blocks.size() - 3)) !=
          std::string::npos);
  }
  {
    auto r = WalDump({dir.path(), "--verify"});
    CHECK_MESSAGE(r.exit_code == 0, r.out, r.err);
  }
  // The last segment cut at a block boundary inside window 4: a torn tail at its start.
  testing::WriteAll(seg, pristine.substr(0, blocks[5]));
  {
    auto r = WalDump({dir.path(), "--verify"});
    CHECK_MESSAGE(r.exit_code == 1, r.out, r.err);
    CHECK(r.out.find(fmt::format("window 4 at offset {} is unfinished", blocks[3])) !=
          std::string::npos);
  }
  // The same in a segment that is not the last: corruption.
  testing::WriteWindows(dir.path(), testing::RandomWindows(rng, 5, 1, 2), schemas, o);
  {
    auto r = WalDump({dir.path(), "--verify"});
    CHECK_MESSAGE(r.exit_code == 2, r.out, r.err);
    CHECK(r.out.find(wal::SegmentName(1) + ": CORRUPT") != std::string::npos);
  }
  // A block of another window inside window 4: corruption.
  std::string other;
  util::PutVarint(other, 9);
  util::PutVarint(other, 0);
  util::PutVarint(other, 0);
  std::string data = pristine.substr(0, blocks[4]);
  wal::AppendBlock(data, wal::BlockType::kWindowPart, other);
  data += pristine.substr(blocks[4]);
  testing::WriteAll(seg, data);
  std::filesystem::remove(SegmentPath(dir.path(), 5));
  {
    auto r = WalDump({dir.path(), "--verify"});
    CHECK_MESSAGE(r.exit_code == 2, r.out, r.err);
    CHECK(r.out.find("window 4 is unfinished") != std::string::npos);
  }
}

TEST_CASE(
    "wal-dump: ids and sources that are not UTF-8 print as base64, non-finite f64 as strings") {
  testing::TempDir dir("conv-waldump");
  // The bytes ff fe and the characters U+00FF U+00FE (c3 bf c3 be) must not print alike.
  const std::string raw_id = "\xff\xfe";
  const std::string text_id = "\xc3\xbf\xc3\xbe";
  const std::string raw_source = "g-\xff";
  std::vector<std::string> records = {
      Claim(raw_id, raw_source, 100, {{"x", std::numeric_limits<double>::quiet_NaN()}}),
      Claim(text_id, "alpha", 101, {{"x", std::numeric_limits<double>::infinity()}}),
      Claim("p-1", "alpha", 102, {{"x", -std::numeric_limits<double>::infinity()}}),
      Retract(raw_id, "alpha"),
      Source(raw_source, 2),
      Source("alpha", 3)};
  {
    engine::SchemaSet schemas;
    uint64_t schema_count = 0;
    std::string schema_records = engine::EncodeSchemaRecords(schemas, &schema_count);
    wal::WriterOptions o;
    o.fsync = false;
    wal::SegmentWriter w(dir.path(), o);
    w.SetSchemaRecords(schema_records, schema_count);
    std::vector<std::string_view> fragments(records.begin(), records.end());
    auto r = w.AppendWindow(1, 4, records.size(), fragments);
    REQUIRE_MESSAGE(r.ok(), r.message);
    REQUIRE(w.Sync().ok());
  }

  auto r = WalDump({dir.path(), "--json"});
  REQUIRE_MESSAGE(r.exit_code == 0, r.out, r.err);
  std::vector<std::string> tails;  // each record line from its schema_id on
  for (const auto& line : Lines(r.out)) {
    CAPTURE(line);
    REQUIRE(testing::ParseJson(line).has_value());
    size_t at = line.find(",\"schema_id\":");
    if (line.find("\"kind\":\"source\"") != std::string::npos) at = line.find(",\"source\":");
    if (line.find("\"kind\":\"schema\"") != std::string::npos) continue;
    REQUIRE(at != std::string::npos);
    tails.push_back(line.substr(at));
  }
  std::vector<std::string> want = {
      R"(,"schema_id":1,"schema":"player","id":{"base64":"//4="},"source":{"base64":"Zy3/"},)"
      R"("ts":100,"mask":4,"record":{"x":"NaN"}})",
      ",\"schema_id\":1,\"schema\":\"player\",\"id\":\"\xc3\xbf\xc3\xbe\",\"source\":\"alpha\","
      "\"ts\":101,\"mask\":4,\"record\":{\"x\":\"Infinity\"}}",
      R"(,"schema_id":1,"schema":"player","id":"p-1","source":"alpha",)"
      R"("ts":102,"mask":4,"record":{"x":"-Infinity"}})",
      R"(,"schema_id":1,"schema":"player","id":{"base64":"//4="},"source":"alpha"})",
      R"(,"source":{"base64":"Zy3/"},"seq":2})",
      R"(,"source":"alpha","seq":3})",
  };
  CHECK(tails == want);

  // The readable form names them the same way.
  r = WalDump({dir.path()});
  REQUIRE_MESSAGE(r.exit_code == 0, r.out, r.err);
  CHECK(
      r.out.find(R"(claim player {"base64":"//4="} source {"base64":"Zy3/"} ts 100 {"x":"NaN"})") !=
      std::string::npos);
  CHECK(r.out.find("claim player \"\xc3\xbf\xc3\xbe\" source \"alpha\" ts 101") !=
        std::string::npos);
  CHECK(r.out.find(R"(source {"base64":"Zy3/"} seq 2)") != std::string::npos);
}
