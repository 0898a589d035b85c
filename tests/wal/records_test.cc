// WAL record encoding: round trips, cut input and malformed fields.

#include "wal/records.h"

#include <doctest/doctest.h>

#include <random>
#include <string>

#include "support/op_model.h"
#include "support/wal_fixtures.h"
#include "util/coding.h"

using namespace conv;
using testing::RecordingVisitor;

TEST_CASE("wal: every record kind decodes back to the fields it was encoded with") {
  uint64_t seed = testing::TestSeed("CONV_WAL_SEED", 3);
  MESSAGE("seed ", seed, " (CONV_WAL_SEED)");
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 50; ++round) {
    auto records = testing::RandomRecords(rng, 1 + rng() % 20, 1 + rng() % 64);
    auto schemas = testing::TestSchemaRecords();
    std::string all = schemas.bytes + records.bytes;
    util::Reader r(all);
    RecordingVisitor v;
    REQUIRE(wal::DecodeRecords(r, schemas.count + records.count, v));
    CHECK(r.done());
    std::vector<std::string> want = schemas.events;
    want.insert(want.end(), records.events.begin(), records.events.end());
    CHECK(v.events == want);
  }
}

TEST_CASE("wal: a claim with all 64 fields keeps every per-field timestamp") {
  uint64_t ts[64];
  for (int i = 0; i < 64; ++i)
    ts[i] = 1000 + static_cast<uint64_t>(i) * 7;
  std::string out;
  wal::PutClaim(out, 3, "id", "src", ~uint64_t{0}, false, 1441, ts, "values");
  struct Check : wal::RecordVisitor {
    void OnClaim(const wal::ClaimRecord& r) override {
      ++claims;
      CHECK(r.mask == ~uint64_t{0});
      CHECK_FALSE(r.uniform);
      for (int i = 0; i < 64; ++i)
        CHECK(r.ts[i] == 1000 + static_cast<uint64_t>(i) * 7);
      CHECK(r.values == "values");
    }
    void OnRetract(const wal::RetractRecord&) override {}
    void OnSource(const wal::SourceRecord&) override {}
    void OnLease(const wal::LeaseRecord&) override {}
    void OnSchema(const wal::SchemaRecord&) override {}
    int claims = 0;
  } v;
  util::Reader r(out);
  REQUIRE(wal::DecodeRecords(r, 1, v));
  CHECK(v.claims == 1);
}

TEST_CASE("wal: records cut short at any byte fail to decode and deliver only whole records") {
  std::mt19937_64 rng(11);
  auto records = testing::RandomRecords(rng, 12, 24);
  // Where each record ends.
  std::vector<size_t> ends;
  {
    util::Reader r(records.bytes);
    RecordingVisitor v;
    for (size_t i = 0; i < records.count; ++i) {
      REQUIRE(wal::DecodeRecords(r, 1, v));
      ends.push_back(r.offset());
    }
  }
  for (size_t cut = 0; cut < records.bytes.size(); ++cut) {
    CAPTURE(cut);
    std::string part = records.bytes.substr(0, cut);  // its own allocation: ASan sees overreads
    util::Reader r(part);
    RecordingVisitor v;
    CHECK_FALSE(wal::DecodeRecords(r, records.count, v));
    size_t whole = 0;
    while (whole < ends.size() && ends[whole] <= cut)
      ++whole;
    CHECK(v.events.size() == whole);
  }
}

TEST_CASE("wal: malformed records are refused") {
  RecordingVisitor v;
  auto refused = [&](const std::string& bytes) {
    util::Reader r(bytes);
    return !wal::DecodeRecords(r, 1, v);
  };
  {
    std::string b;
    util::PutU8(b, 9);  // no such kind
    CHECK(refused(b));
  }
  {
    std::string b;
    wal::PutClaim(b, 1, "id", "s", 1, true, 5, nullptr, "v");
    // kind, schema, id (2), source (2), mask: the uniform flag follows.
    size_t uniform_at = 1 + 1 + 3 + 2 + 1;
    REQUIRE(b[uniform_at] == 1);
    b[uniform_at] = 2;
    CHECK(refused(b));
  }
  {
    std::string b;
    util::PutU8(b, static_cast<uint8_t>(wal::RecordKind::kSchema));
    util::PutVarint(b, 1);
    util::PutStr(b, "s");
    util::PutVarint(b, 65);  // more fields than a schema may have
    CHECK(refused(b));
  }
  {
    std::string_view names[] = {"a"};
    uint8_t types[] = {5};  // no such type
    std::string b;
    wal::PutSchema(b, 1, "s", 1, names, types);
    CHECK(refused(b));
  }
  {
    std::string b;
    util::PutU8(b, static_cast<uint8_t>(wal::RecordKind::kRetract));
    util::PutVarint(b, uint64_t{1} << 32);  // a schema id past 32 bits
    util::PutStr(b, "id");
    util::PutStr(b, "s");
    CHECK(refused(b));
  }
  CHECK(v.events.empty());
}

TEST_CASE("wal: a claim record is the format's bytes, field by field, appended to what is there") {
  uint64_t seed = testing::TestSeed("CONV_WAL_SEED", 5);
  MESSAGE("seed ", seed, " (CONV_WAL_SEED)");
  std::mt19937_64 rng(seed);
  auto text = [&rng](size_t max) {
    std::string s(rng() % (max + 1), '\0');
    for (char& c : s)
      c = static_cast<char>(rng() & 0xff);
    return s;
  };
  // Values of every varint length, 1 to 10 bytes.
  auto wide = [&rng] { return rng() >> (rng() % 64); };
  for (int round = 0; round < 500; ++round) {
    uint32_t schema = static_cast<uint32_t>(wide());
    std::string id = text(300);
    std::string source = text(200);
    uint64_t mask = wide();
    bool uniform = rng() % 2 == 0;
    uint64_t ts_max = wide();
    uint64_t ts[64];
    for (uint64_t& t : ts)
      t = wide();
    std::string values = text(1000);
    std::string before = text(50);
    // The layout: kind, schema, id, source, mask, uniform,
    // ts_max, the per-field timestamps when not uniform, values.
    std::string want = before;
    util::PutU8(want, static_cast<uint8_t>(wal::RecordKind::kClaim));
    util::PutVarint(want, schema);
    util::PutStr(want, id);
    util::PutStr(want, source);
    util::PutVarint(want, mask);
    util::PutU8(want, uniform ? 1 : 0);
    util::PutVarint(want, ts_max);
    if (!uniform) {
      for (int i = 0; i < __builtin_popcountll(mask); ++i)
        util::PutVarint(want, ts[i]);
    }
    util::PutStr(want, values);
    std::string got = before;
    wal::PutClaim(got, schema, id, source, mask, uniform, ts_max, ts, values);
    CAPTURE(round);
    REQUIRE(got == want);
  }
}
