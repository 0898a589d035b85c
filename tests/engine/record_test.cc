#include "engine/record.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "engine/schema.h"
#include "util/coding.h"

using namespace conv;
using engine::FieldType;
using engine::ParseRecord;
using engine::RecordBuilder;
using engine::RecordView;

namespace {

// player: name(0) team(1) string, x(2) y(3) z(4) f64, health(5) score(6) level(7) i64,
// online(8) bool.
const engine::Schema& Player() {
  static const engine::Schema schema = engine::PlayerSchema();
  return schema;
}

// One field of each type.
const engine::Schema& Things() {
  static const engine::Schema schema = [] {
    engine::Schema s;
    s.id = 2;
    s.name = "things";
    s.fields = {{"flag", FieldType::kBool},
                {"count", FieldType::kI64},
                {"ratio", FieldType::kF64},
                {"label", FieldType::kString},
                {"blob", FieldType::kBytes}};
    return s;
  }();
  return schema;
}

// Sixty-four bool fields: every mask bit is a field.
const engine::Schema& Wide() {
  static const engine::Schema schema = [] {
    engine::Schema s;
    s.id = 3;
    s.name = "wide";
    for (int i = 0; i < 64; ++i)
      s.fields.push_back({"b" + std::to_string(i), FieldType::kBool});
    return s;
  }();
  return schema;
}

bool Contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string Varint(uint64_t v) {
  std::string s;
  util::PutVarint(s, v);
  return s;
}

std::string Str(std::string_view v) {
  std::string s;
  util::PutStr(s, v);
  return s;
}

// A heap buffer of exactly the input's size, so AddressSanitizer reports any read past
// its end.
std::vector<char> Exact(std::string_view s) {
  return std::vector<char>(s.begin(), s.end());
}

// ParseRecord's message for `bytes` against `schema`; fails the test if it accepts.
std::string ParseError(const engine::Schema& schema, std::string_view bytes) {
  std::vector<char> buf = Exact(bytes);
  RecordView view;
  util::Status s = ParseRecord(schema, std::string_view(buf.data(), buf.size()), &view);
  CHECK_FALSE(s.ok());
  return s.message();
}

std::string Json(const engine::Schema& schema, const std::string& record) {
  RecordView view;
  util::Status s = ParseRecord(schema, record, &view);
  REQUIRE(s.ok());
  std::string out;
  engine::AppendRecordJson(out, schema, view.mask, view.values);
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------
// ParseRecord errors

TEST_CASE("record: a bool other than 0 or 1 is rejected, naming the field and its offset") {
  // mask 1<<8 is the two-byte varint 80 02, so online is at offset 2.
  std::string m = ParseError(Player(), Varint(1 << 8) + "\x02");
  CAPTURE(m);
  CHECK(Contains(m, "'online'"));
  CHECK(Contains(m, "bool"));
  CHECK(Contains(m, "offset 2"));
  CHECK(Contains(m, "got 2"));

  // After a name: mask (2 bytes), name "ab" (3 bytes), online at offset 5.
  m = ParseError(Player(), Varint(1 << 0 | 1 << 8) + Str("ab") + "\xff");
  CAPTURE(m);
  CHECK(Contains(m, "'online'"));
  CHECK(Contains(m, "offset 5"));
  CHECK(Contains(m, "got 255"));
}

TEST_CASE("record: an f64 cut short is rejected, naming the field and its offset") {
  for (size_t n = 0; n < 8; ++n) {
    CAPTURE(n);
    std::string m = ParseError(Player(), Varint(1 << 2) + std::string(n, '\x11'));
    CAPTURE(m);
    CHECK(Contains(m, "'x'"));
    CHECK(Contains(m, "f64"));
    CHECK(Contains(m, "offset 1"));
    CHECK(Contains(m, "truncated"));
  }
}

TEST_CASE("record: an i64 whose varint is cut short or overlong is rejected with its offset") {
  std::string m = ParseError(Player(), Varint(1 << 5) + "\x80");
  CAPTURE(m);
  CHECK(Contains(m, "'health'"));
  CHECK(Contains(m, "i64"));
  CHECK(Contains(m, "offset 1"));

  m = ParseError(Player(), Varint(1 << 5 | 1 << 6) + "\x02" + std::string(10, '\xff') + "\x01");
  CAPTURE(m);
  CHECK(Contains(m, "'score'"));
  CHECK(Contains(m, "offset 2"));
}

TEST_CASE("record: a string that is not valid UTF-8 is rejected, naming the field and offset") {
  // mask (1 byte), name "ann" (4 bytes), team at offset 5.
  for (std::string_view bad : {"\xff", "\xc0\xaf", "\xed\xa0\x80", "ok\xc3"}) {
    std::string m = ParseError(Player(), Varint(0b11) + Str("ann") + Str(bad));
    CAPTURE(m);
    CHECK(Contains(m, "'team'"));
    CHECK(Contains(m, "string"));
    CHECK(Contains(m, "offset 5"));
    CHECK(Contains(m, "UTF-8"));
  }
}

TEST_CASE("record: a bytes field may hold anything, valid UTF-8 or not") {
  std::string rec = Varint(1 << 4) + Str(std::string("\xff\x00\xc0", 3));
  RecordView view;
  CHECK(ParseRecord(Things(), rec, &view).ok());
}

TEST_CASE("record: a string whose length runs past the end is rejected with its offset") {
  std::string m = ParseError(Player(), Varint(1) + "\x05" + "ab");
  CAPTURE(m);
  CHECK(Contains(m, "'name'"));
  CHECK(Contains(m, "offset 1"));
  CHECK(Contains(m, "past the end"));
}

TEST_CASE("record: a mask bit beyond the schema's fields is rejected, naming the field") {
  std::string m = ParseError(Player(), Varint(1 << 9));
  CAPTURE(m);
  CHECK(Contains(m, "field 9"));
  CHECK(Contains(m, "'player'"));
  CHECK(Contains(m, "9 fields"));
  CHECK(Contains(m, "offset 0"));

  // The highest stray bit is the one named.
  m = ParseError(Player(), Varint(uint64_t{1} << 63 | 1 << 10 | 1));
  CAPTURE(m);
  CHECK(Contains(m, "field 63"));
}

TEST_CASE("record: a missing or malformed mask is rejected at offset 0") {
  for (std::string bytes : {std::string(), std::string("\x80"), std::string(10, '\xff') + "\x01"}) {
    std::string m = ParseError(Player(), bytes);
    CAPTURE(m);
    CHECK(Contains(m, "mask"));
    CHECK(Contains(m, "offset 0"));
  }
}

TEST_CASE("record: bytes left after the last field are rejected, with their count and offset") {
  std::string rec = Varint(1 << 8) + "\x01";
  RecordView view;
  REQUIRE(ParseRecord(Player(), rec, &view).ok());
  std::string m = ParseError(Player(), rec + std::string("\x00\x01", 2));
  CAPTURE(m);
  CHECK(Contains(m, "2 unexpected bytes"));
  CHECK(Contains(m, "offset 3"));

  m = ParseError(Player(), Varint(0) + "z");
  CAPTURE(m);
  CHECK(Contains(m, "1 unexpected bytes"));
  CHECK(Contains(m, "offset 1"));
}

TEST_CASE("record: ParseRecordPrefix stops at the end of the record and reports its length") {
  std::string rec = Varint(1 << 0 | 1 << 5) + Str("ann") + Varint(util::ZigzagEncode(-7));
  std::string bytes = rec + "trailing";
  RecordView view;
  size_t consumed = 0;
  REQUIRE(engine::ParseRecordPrefix(Player(), bytes, &view, &consumed).ok());
  CHECK(consumed == rec.size());
  CHECK(view.mask == (1 << 0 | 1 << 5));
  CHECK(view.values == std::string_view(rec).substr(1));
}

TEST_CASE("record: a schema of 64 fields accepts every mask bit") {
  RecordBuilder b(Wide());
  REQUIRE(b.Set(0, true).ok());
  REQUIRE(b.Set(63, false).ok());
  CHECK_FALSE(b.Set(64, true).ok());
  std::string rec = b.Encode();
  RecordView view;
  REQUIRE(ParseRecord(Wide(), rec, &view).ok());
  CHECK(view.mask == (uint64_t{1} << 63 | 1));
  CHECK(Json(Wide(), rec) == R"({"b0":true,"b63":false})");
}

TEST_CASE(
    "record: every truncation and bit flip of a record is rejected or parsed, never over-read") {
  RecordBuilder b(Things());
  REQUIRE(b.Set("flag", true).ok());
  REQUIRE(b.Set("count", std::numeric_limits<int64_t>::min()).ok());
  REQUIRE(b.Set("ratio", 0.5).ok());
  REQUIRE(b.Set("label", std::string("caf\xc3\xa9")).ok());
  REQUIRE(b.Set("blob", engine::Bytes{std::string("\x00\xff", 2)}).ok());
  const std::string rec = b.Encode();
  for (size_t n = 0; n < rec.size(); ++n) {
    CAPTURE(n);
    ParseError(Things(), std::string_view(rec).substr(0, n));
  }
  size_t accepted = 0, rejected = 0;
  std::string mutated = rec;
  for (size_t i = 0; i < rec.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      mutated[i] = static_cast<char>(rec[i] ^ (1 << bit));
      std::vector<char> buf = Exact(mutated);
      std::string_view bytes(buf.data(), buf.size());
      RecordView view;
      if (ParseRecord(Things(), bytes, &view).ok()) {
        ++accepted;
        // What ParseRecord accepts, the readers of a record can walk.
        std::string_view slices[engine::kMaxFields];
        engine::SliceFields(Things(), view.mask, view.values, slices);
        std::string json;
        engine::AppendRecordJson(json, Things(), view.mask, view.values);
        CHECK(json.front() == '{');
      } else {
        ++rejected;
      }
      mutated[i] = rec[i];
    }
  }
  MESSAGE(accepted, " flips parsed, ", rejected, " rejected");
  CHECK(rejected > 0);
}

// ---------------------------------------------------------------------------------
// RecordBuilder, values and JSON

TEST_CASE("record: RecordBuilder values read back through ParseRecord and SliceFields") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  struct Case {
    engine::Value flag, count, ratio, label, blob;
  };
  const Case cases[] = {
      {true, int64_t{0}, 0.0, std::string(), engine::Bytes{}},
      {false, std::numeric_limits<int64_t>::min(), -0.0, std::string("caf\xc3\xa9"),
       engine::Bytes{std::string("\0\xff", 2)}},
      {true, std::numeric_limits<int64_t>::max(), nan, std::string(300, 'x'),
       engine::Bytes{std::string(200, '\x80')}},
  };
  for (const Case& c : cases) {
    RecordBuilder b(Things());
    // Set out of field order: Encode sorts.
    REQUIRE(b.Set("blob", c.blob).ok());
    REQUIRE(b.Set("label", c.label).ok());
    REQUIRE(b.Set(2, c.ratio).ok());
    REQUIRE(b.Set("count", c.count).ok());
    REQUIRE(b.Set(0, c.flag).ok());
    std::string rec = b.Encode();
    RecordView view;
    REQUIRE(ParseRecord(Things(), rec, &view).ok());
    CHECK(view.mask == 0b11111);
    std::string_view slices[engine::kMaxFields];
    engine::SliceFields(Things(), view.mask, view.values, slices);
    const engine::Value* want[] = {&c.flag, &c.count, &c.ratio, &c.label, &c.blob};
    for (size_t i = 0; i < 5; ++i) {
      CAPTURE(i);
      engine::Value got = engine::DecodeValue(Things().fields[i].type, slices[i]);
      if (i == 2) {
        // Compare doubles by bits: NaN and -0.0 must survive.
        double g = std::get<double>(got), w = std::get<double>(*want[i]);
        CHECK(std::memcmp(&g, &w, 8) == 0);
      } else {
        CHECK(got == *want[i]);
      }
    }
  }
}

TEST_CASE("record: a second Set of a field replaces the first") {
  RecordBuilder b(Player());
  REQUIRE(b.Set("health", int64_t{1}).ok());
  REQUIRE(b.Set("health", int64_t{2}).ok());
  RecordBuilder want(Player());
  REQUIRE(want.Set("health", int64_t{2}).ok());
  CHECK(b.Encode() == want.Encode());
  CHECK(b.Encode() == Varint(1 << 5) + Varint(util::ZigzagEncode(2)));
}

TEST_CASE("record: RecordBuilder refuses unknown fields and values of the wrong type") {
  RecordBuilder b(Player());
  util::Status s = b.Set("nope", int64_t{1});
  REQUIRE_FALSE(s.ok());
  CHECK(Contains(s.message(), "'nope'"));
  CHECK(Contains(s.message(), "'player'"));

  s = b.Set(9, true);
  REQUIRE_FALSE(s.ok());
  CHECK(Contains(s.message(), "9"));
  CHECK(Contains(s.message(), "'player'"));

  s = b.Set("health", std::string("ninety"));
  REQUIRE_FALSE(s.ok());
  CHECK(Contains(s.message(), "'health'"));
  CHECK(Contains(s.message(), "i64"));

  s = b.Set("x", int64_t{1});  // an integer is not an f64
  REQUIRE_FALSE(s.ok());
  CHECK(Contains(s.message(), "f64"));

  // Refused values leave nothing behind.
  CHECK(b.Encode() == std::string(1, '\0'));
}

TEST_CASE("record: an empty builder encodes a record with no fields") {
  RecordBuilder b(Player());
  std::string rec = b.Encode();
  CHECK(rec == std::string(1, '\0'));
  RecordView view;
  REQUIRE(ParseRecord(Player(), rec, &view).ok());
  CHECK(view.mask == 0);
  CHECK(view.values.empty());
  CHECK(Json(Player(), rec) == "{}");
}

TEST_CASE("record: EncodeValue refuses a value of another type") {
  std::string out;
  CHECK_FALSE(engine::EncodeValue(FieldType::kBool, int64_t{1}, out));
  CHECK_FALSE(engine::EncodeValue(FieldType::kI64, true, out));
  CHECK_FALSE(engine::EncodeValue(FieldType::kF64, int64_t{1}, out));
  CHECK_FALSE(engine::EncodeValue(FieldType::kString, engine::Bytes{"x"}, out));
  CHECK_FALSE(engine::EncodeValue(FieldType::kBytes, std::string("x"), out));
  CHECK(out.empty());
  CHECK(engine::EncodeValue(FieldType::kBytes, engine::Bytes{"x"}, out));
  CHECK(out == "\x01x");
}

TEST_CASE("record: AppendRecordJson writes the present fields in field order") {
  RecordBuilder b(Player());
  REQUIRE(b.Set("online", true).ok());
  REQUIRE(b.Set("health", int64_t{-3}).ok());
  REQUIRE(b.Set("x", 1.5).ok());
  REQUIRE(b.Set("name", std::string("a\"b\\c\n")).ok());
  CHECK(Json(Player(), b.Encode()) == R"({"name":"a\"b\\c\n","x":1.5,"health":-3,"online":true})");
}

TEST_CASE("record: AppendRecordJson writes bytes as base64 and a NaN as the string NaN") {
  RecordBuilder b(Things());
  REQUIRE(b.Set("flag", false).ok());
  REQUIRE(b.Set("count", std::numeric_limits<int64_t>::min()).ok());
  REQUIRE(b.Set("ratio", std::numeric_limits<double>::quiet_NaN()).ok());
  REQUIRE(b.Set("label", std::string("caf\xc3\xa9")).ok());
  REQUIRE(b.Set("blob", engine::Bytes{std::string("\x00\xff", 2)}).ok());
  CHECK(Json(Things(), b.Encode()) ==
        "{\"flag\":false,\"count\":-9223372036854775808,\"ratio\":\"NaN\","
        "\"label\":\"caf\xc3\xa9\",\"blob\":\"AP8=\"}");
}

TEST_CASE("record: random records built field by field parse and print") {
  const uint32_t seed = 31337;
  MESSAGE("seed = ", seed);
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 500; ++round) {
    CAPTURE(round);
    RecordBuilder b(Things());
    uint64_t want_mask = 0;
    for (size_t i = 0; i < Things().fields.size(); ++i) {
      if (rng() % 2) continue;
      want_mask |= uint64_t{1} << i;
      engine::Value v;
      switch (Things().fields[i].type) {
        case FieldType::kBool:
          v = rng() % 2 == 0;
          break;
        case FieldType::kI64:
          v = static_cast<int64_t>(rng());
          break;
        case FieldType::kF64: {
          uint64_t bits = rng();
          double d;
          std::memcpy(&d, &bits, 8);
          v = d;
          break;
        }
        case FieldType::kString:
          v = std::string(rng() % 20, static_cast<char>('a' + rng() % 26));
          break;
        case FieldType::kBytes: {
          std::string s(rng() % 20, '\0');
          for (char& c : s)
            c = static_cast<char>(rng());
          v = engine::Bytes{s};
          break;
        }
      }
      REQUIRE(b.Set(i, v).ok());
    }
    std::string rec = b.Encode();
    std::vector<char> buf = Exact(rec);
    RecordView view;
    REQUIRE(ParseRecord(Things(), std::string_view(buf.data(), buf.size()), &view).ok());
    CHECK(view.mask == want_mask);
    std::string json;
    engine::AppendRecordJson(json, Things(), view.mask, view.values);
    CHECK(json.front() == '{');
    CHECK(json.back() == '}');
  }
}

TEST_CASE("record: overlong varints and non-canonical NaNs are re-encoded as the server writes") {
  const engine::Schema& t = Things();
  // count = 0 as 80 00, ratio = a NaN with a payload and the sign bit, label "ab" with
  // its length as 82 00, blob empty as 80 80 00.
  std::string values;
  values += std::string("\x80\x00", 2);
  util::PutFixed64(values, 0xfff8000000000123ull);
  values += std::string("\x82\x00", 2) + "ab";
  values += std::string("\x80\x80\x00", 3);
  std::string rec;
  util::PutVarint(rec, 0b11110);
  rec += values;
  RecordView view;
  REQUIRE(ParseRecord(t, rec, &view).ok());
  CHECK_FALSE(view.canonical);
  std::string scratch;
  engine::CanonicalizeValues(t, &view, &scratch);
  CHECK(view.canonical);
  std::string want;
  util::PutVarint(want, 0);
  util::PutFixed64(want, engine::kCanonicalNaN);
  util::PutStr(want, "ab");
  util::PutStr(want, "");
  CHECK(std::string(view.values) == want);

  // Each kind alone marks the record, and the canonical encoding does not.
  std::string canonical_rec;
  util::PutVarint(canonical_rec, 0b11110);
  canonical_rec += want;
  REQUIRE(ParseRecord(t, canonical_rec, &view).ok());
  CHECK(view.canonical);
  for (uint64_t nan : {0x7ff0000000000001ull, 0xfff8000000000000ull, 0x7fffffffffffffffull}) {
    std::string r;
    util::PutVarint(r, 0b100);
    util::PutFixed64(r, nan);
    REQUIRE(ParseRecord(t, r, &view).ok());
    CHECK_FALSE(view.canonical);
  }
  std::string inf;
  util::PutVarint(inf, 0b100);
  util::PutFixed64(inf, 0x7ff0000000000000ull);
  REQUIRE(ParseRecord(t, inf, &view).ok());
  CHECK(view.canonical);
}
