// Claim blocks (claim.h): the uniform and per-field timestamp layouts, FieldTs,
// values slicing, and the per-entity claim list (entity.h).

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "engine/claim.h"
#include "engine/entity.h"
#include "engine/record.h"
#include "engine/schema.h"
#include "engine/test_records.h"

using namespace conv;
using testing::EncodeFields;
using testing::Fields;
using testing::Show;

namespace {

struct FreeClaimDeleter {
  void operator()(engine::Claim* c) const { engine::FreeClaim(c); }
};
using ClaimPtr = std::unique_ptr<engine::Claim, FreeClaimDeleter>;

ClaimPtr Uniform(const engine::Schema& schema, uint32_t source, uint64_t ts, const Fields& fields) {
  auto [mask, values] = EncodeFields(schema, fields);
  return ClaimPtr(engine::NewUniformClaim(source, mask, ts, values));
}

ClaimPtr Patch(const engine::Schema& schema, const engine::Claim* old, uint32_t source, uint64_t ts,
               const Fields& fields) {
  auto [mask, values] = EncodeFields(schema, fields);
  return ClaimPtr(engine::PatchClaim(schema, old, source, mask, values, ts));
}

// "name@10 x@20": every field of the claim with FieldTs, in field order.
std::string Timestamps(const engine::Schema& schema, const engine::Claim& c) {
  std::string out;
  for (uint64_t m = c.mask; m != 0; m &= m - 1) {
    int i = __builtin_ctzll(m);
    if (!out.empty()) out += ' ';
    out += fmt::format("{}@{}", schema.fields[i].name, c.FieldTs(i));
  }
  return out;
}

std::string ShowClaim(const engine::Schema& schema, const engine::Claim& c) {
  return Show(schema, c.mask, c.values());
}

// The heap bytes of a claim block, spelled out field by field.
size_t ExpectedBytes(size_t ts_count, size_t values_len) {
  return sizeof(engine::Claim) + ts_count * sizeof(uint64_t) + values_len;
}

}  // namespace

TEST_CASE("claim: a uniform claim keeps one timestamp for all its fields") {
  const engine::Schema player = engine::PlayerSchema();
  Fields fields = {{"name", std::string("ann")}, {"x", 1.5}, {"health", int64_t{90}}};
  auto [mask, values] = EncodeFields(player, fields);
  ClaimPtr c(engine::NewUniformClaim(7, mask, 42, values));
  CHECK(c->next == nullptr);
  CHECK(c->source == 7);
  CHECK(c->mask == mask);
  CHECK(c->uniform);
  CHECK(c->ts_max == 42);
  CHECK(c->values_len == values.size());
  CHECK(c->values() == values);
  CHECK(Timestamps(player, *c) == "name@42 x@42 health@42");
  CHECK(engine::ClaimBytes(c.get()) == ExpectedBytes(0, values.size()));

  // The claim owns a copy of the values.
  values.assign(values.size(), '\0');
  CHECK(ShowClaim(player, *c) == R"({name="ann" x=1.5 health=90})");
}

TEST_CASE("claim: a claim with no fields is a bare header") {
  const engine::Schema player = engine::PlayerSchema();
  ClaimPtr c(engine::NewUniformClaim(1, 0, 5, ""));
  CHECK(c->mask == 0);
  CHECK(c->uniform);
  CHECK(c->ts_max == 5);
  CHECK(c->values().empty());
  CHECK(engine::ClaimBytes(c.get()) == ExpectedBytes(0, 0));

  // Patching nothing onto nothing is still a claim.
  ClaimPtr p = Patch(player, nullptr, 1, 6, {});
  CHECK(p->mask == 0);
  CHECK(p->ts_max == 6);
  CHECK(p->values().empty());
}

TEST_CASE("claim: a patch with no prior claim is a uniform claim of the patched fields") {
  const engine::Schema player = engine::PlayerSchema();
  ClaimPtr c =
      Patch(player, nullptr, 3, 11, {{"health", int64_t{70}}, {"team", std::string("red")}});
  CHECK(c->source == 3);
  CHECK(c->uniform);
  CHECK(c->ts_max == 11);
  CHECK(ShowClaim(player, *c) == R"({team="red" health=70})");
  CHECK(Timestamps(player, *c) == "team@11 health@11");
  CHECK(engine::ClaimBytes(c.get()) == ExpectedBytes(0, c->values_len));
}

TEST_CASE("claim: a patch covering every field of the old claim replaces it as a uniform claim") {
  const engine::Schema player = engine::PlayerSchema();
  ClaimPtr old = Uniform(player, 1, 10, {{"x", 1.0}, {"y", 2.0}});
  ClaimPtr c = Patch(player, old.get(), 1, 5, {{"x", 3.0}, {"y", 4.0}, {"z", 5.0}});
  CHECK(c->uniform);
  CHECK(c->ts_max == 5);  // the patch's ts, even though it is older
  CHECK(ShowClaim(player, *c) == "{x=3 y=4 z=5}");
  CHECK(Timestamps(player, *c) == "x@5 y@5 z@5");
  // The old claim is untouched: claims are immutable.
  CHECK(ShowClaim(player, *old) == "{x=1 y=2}");
  CHECK(old->ts_max == 10);
}

TEST_CASE("claim: a patch at another timestamp keeps a timestamp per field") {
  const engine::Schema player = engine::PlayerSchema();
  ClaimPtr old =
      Uniform(player, 2, 10, {{"name", std::string("ann")}, {"x", 1.0}, {"health", int64_t{90}}});
  ClaimPtr c = Patch(player, old.get(), 2, 20, {{"x", 2.5}, {"level", int64_t{3}}});
  CHECK_FALSE(c->uniform);
  CHECK(c->source == 2);
  CHECK(c->ts_max == 20);
  CHECK(ShowClaim(player, *c) == R"({name="ann" x=2.5 health=90 level=3})");
  CHECK(Timestamps(player, *c) == "name@10 x@20 health@10 level@20");
  // ts[] holds one entry per present field, in field order, before the values.
  const uint64_t* ts = c->ts_array();
  CHECK(ts[0] == 10);
  CHECK(ts[1] == 20);
  CHECK(ts[2] == 10);
  CHECK(ts[3] == 20);
  CHECK(c->values() == EncodeFields(player, {{"name", std::string("ann")},
                                             {"x", 2.5},
                                             {"health", int64_t{90}},
                                             {"level", int64_t{3}}})
                           .second);
  CHECK(engine::ClaimBytes(c.get()) == ExpectedBytes(4, c->values_len));

  // A patch older than the claim lowers that field's ts only; ts_max stays.
  ClaimPtr older = Patch(player, c.get(), 2, 5, {{"name", std::string("bo")}});
  CHECK_FALSE(older->uniform);
  CHECK(older->ts_max == 20);
  CHECK(Timestamps(player, *older) == "name@5 x@20 health@10 level@20");
  CHECK(ShowClaim(player, *older) == R"({name="bo" x=2.5 health=90 level=3})");
}

TEST_CASE("claim: a patch that leaves every field at one timestamp is uniform again") {
  const engine::Schema player = engine::PlayerSchema();
  ClaimPtr old = Uniform(player, 1, 10, {{"name", std::string("a")}, {"x", 1.0}});

  // Same ts as the claim: stays uniform.
  ClaimPtr same = Patch(player, old.get(), 1, 10, {{"y", 2.0}});
  CHECK(same->uniform);
  CHECK(same->ts_max == 10);
  CHECK(engine::ClaimBytes(same.get()) == ExpectedBytes(0, same->values_len));

  ClaimPtr mixed = Patch(player, old.get(), 1, 30, {{"x", 3.0}});
  REQUIRE_FALSE(mixed->uniform);
  // Bringing the other field up to the same ts collapses the timestamps.
  ClaimPtr again = Patch(player, mixed.get(), 1, 30, {{"name", std::string("b")}});
  CHECK(again->uniform);
  CHECK(again->ts_max == 30);
  CHECK(Timestamps(player, *again) == "name@30 x@30");
  CHECK(ShowClaim(player, *again) == R"({name="b" x=3})");
}

TEST_CASE("claim: values slice back into their fields whatever their encoded lengths") {
  engine::SchemaSet schemas;
  REQUIRE(
      schemas.AddFromText("all b:bool i:i64 f:f64 s:string by:bytes j:i64 t:string", "test").ok());
  const engine::Schema& schema = *schemas.FindByName("all");
  const std::string long_text(300, 'q');  // a two-byte length varint
  const std::string blob("\0\xff\x80z", 4);
  Fields fields = {{"b", true},
                   {"i", int64_t{-1}},
                   {"f", -0.25},
                   {"s", std::string("zoë")},
                   {"by", engine::Bytes{blob}},
                   {"j", int64_t{INT64_MIN}},  // a ten-byte varint
                   {"t", std::string()}};
  ClaimPtr c = Uniform(schema, 1, 1, fields);
  // Replace two fields in the middle with values of other lengths, at another ts.
  ClaimPtr p = Patch(schema, c.get(), 1, 2, {{"s", long_text}, {"i", int64_t{1} << 62}});
  REQUIRE_FALSE(p->uniform);

  std::string_view slices[engine::kMaxFields];
  engine::SliceFields(schema, p->mask, p->values(), slices);
  CHECK(std::get<bool>(engine::DecodeValue(engine::FieldType::kBool, slices[0])) == true);
  CHECK(std::get<int64_t>(engine::DecodeValue(engine::FieldType::kI64, slices[1])) == int64_t{1}
                                                                                          << 62);
  CHECK(std::get<double>(engine::DecodeValue(engine::FieldType::kF64, slices[2])) == -0.25);
  CHECK(std::get<std::string>(engine::DecodeValue(engine::FieldType::kString, slices[3])) ==
        long_text);
  CHECK(std::get<engine::Bytes>(engine::DecodeValue(engine::FieldType::kBytes, slices[4])).data ==
        blob);
  CHECK(std::get<int64_t>(engine::DecodeValue(engine::FieldType::kI64, slices[5])) == INT64_MIN);
  CHECK(std::get<std::string>(engine::DecodeValue(engine::FieldType::kString, slices[6])).empty());
  CHECK(slices[5].size() == 10);
  CHECK(slices[3].size() == 2 + long_text.size());

  // The slices tile the values exactly, and the whole record still parses.
  size_t total = 0;
  for (int i = 0; i < 7; ++i)
    total += slices[i].size();
  CHECK(total == p->values_len);
  std::string record;
  record.push_back(static_cast<char>(p->mask));
  record.append(p->values());
  engine::RecordView view;
  CHECK(engine::ParseRecord(schema, record, &view).ok());
  CHECK(Timestamps(schema, *p) == "b@1 i@2 f@1 s@2 by@1 j@1 t@1");
}

TEST_CASE("claim: a 64-field claim uses every mask bit") {
  engine::Schema schema;
  schema.id = 2;
  schema.name = "wide";
  Fields all;
  for (int i = 0; i < 64; ++i) {
    schema.fields.push_back({fmt::format("f{}", i), engine::FieldType::kI64});
    all[fmt::format("f{}", i)] = int64_t{i} * 1000;
  }
  ClaimPtr c = Uniform(schema, 1, 100, all);
  CHECK(c->mask == ~uint64_t{0});
  CHECK(c->FieldTs(63) == 100);

  ClaimPtr p = Patch(schema, c.get(), 1, 200, {{"f0", int64_t{-1}}, {"f63", int64_t{-63}}});
  REQUIRE_FALSE(p->uniform);
  CHECK(p->mask == ~uint64_t{0});
  CHECK(p->ts_max == 200);
  CHECK(p->FieldTs(0) == 200);
  CHECK(p->FieldTs(1) == 100);
  CHECK(p->FieldTs(62) == 100);
  CHECK(p->FieldTs(63) == 200);
  CHECK(engine::ClaimBytes(p.get()) == ExpectedBytes(64, p->values_len));

  std::string_view slices[engine::kMaxFields];
  engine::SliceFields(schema, p->mask, p->values(), slices);
  CHECK(std::get<int64_t>(engine::DecodeValue(engine::FieldType::kI64, slices[0])) == -1);
  CHECK(std::get<int64_t>(engine::DecodeValue(engine::FieldType::kI64, slices[31])) == 31000);
  CHECK(std::get<int64_t>(engine::DecodeValue(engine::FieldType::kI64, slices[63])) == -63);
}

TEST_CASE("claim: an entity keeps one claim per source, ordered by source id") {
  const engine::Schema player = engine::PlayerSchema();
  engine::Entity e;
  CHECK(engine::ClaimCount(e) == 0);
  CHECK(engine::FindClaim(e, 1) == nullptr);

  for (uint32_t source : {3u, 1u, 2u}) {
    engine::PutClaim(e, Uniform(player, source, source, {{"score", int64_t{source}}}).release());
  }
  std::vector<uint32_t> order;
  for (const engine::Claim* c = e.claims; c != nullptr; c = c->next)
    order.push_back(c->source);
  CHECK(order == std::vector<uint32_t>{1, 2, 3});
  CHECK(engine::ClaimCount(e) == 3);

  // Replacing a claim keeps its place and frees the old block (ASan checks that).
  engine::PutClaim(e, Uniform(player, 2, 9, {{"score", int64_t{20}}}).release());
  CHECK(engine::ClaimCount(e) == 3);
  REQUIRE(engine::FindClaim(e, 2) != nullptr);
  CHECK(ShowClaim(player, *engine::FindClaim(e, 2)) == "{score=20}");
  CHECK(e.claims->next == engine::FindClaim(e, 2));

  CHECK(engine::RemoveClaim(e, 2));
  CHECK_FALSE(engine::RemoveClaim(e, 2));
  CHECK_FALSE(engine::RemoveClaim(e, 4));
  CHECK(engine::FindClaim(e, 2) == nullptr);
  CHECK(engine::ClaimCount(e) == 2);
  CHECK(engine::RemoveClaim(e, 1));
  CHECK(e.claims == engine::FindClaim(e, 3));

  engine::FreeClaims(e);
  CHECK(e.claims == nullptr);
  CHECK(engine::ClaimCount(e) == 0);
}

TEST_CASE("entity key: ids up to 15 bytes inline, longer ones on the heap, both read back") {
  for (std::string_view id :
       {std::string_view(""), std::string_view("p-1"), std::string_view("exactly-15bytes"),
        std::string_view("sixteen-bytes-id"),
        std::string_view("an id well past the inline limit of the key")}) {
    CAPTURE(id);
    engine::EntityKey key(id);
    CHECK(key.view() == id);
    CHECK(std::string_view(key) == id);
    CHECK(key == id);
    engine::EntityKey same(id);
    CHECK(key == same);
  }
  // Bytes any id may hold, a NUL included, and the inline length byte's neighbours.
  std::string with_nul("a\0b", 3);
  engine::EntityKey nul(with_nul);
  CHECK(nul.view() == with_nul);
  engine::EntityKey short_key("p-1");
  CHECK_FALSE(short_key == std::string_view("p-10"));
  engine::EntityKey long_key(std::string(40, 'x'));
  CHECK_FALSE(long_key == std::string_view(std::string(39, 'x')));
}

TEST_CASE("entity key: random ids of every length read back and compare as their text") {
  const uint64_t seed = 0x5ca1e;
  MESSAGE("entity key property: seed " << seed);
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 2000; ++i) {
    std::string a(rng() % 64, '\0');
    for (char& c : a)
      c = static_cast<char>(rng() & 0xff);
    std::string b = a;
    if (!b.empty() && rng() % 2 == 0) b[rng() % b.size()] ^= static_cast<char>(1 + rng() % 255);
    engine::EntityKey ka(a);
    engine::EntityKey kb(b);
    CAPTURE(i);
    CHECK(ka.view() == a);
    CHECK(kb.view() == b);
    CHECK((ka == kb) == (a == b));
    CHECK((ka == std::string_view(b)) == (a == b));
    // A key and its text hash alike (the map finds a key by a string_view).
    CHECK(ka.Hash() == engine::EntityKey::Hash(a));
    CHECK(kb.Hash() == engine::EntityKey::Hash(b));
    if (a == b) CHECK(ka.Hash() == kb.Hash());
  }
}

TEST_CASE("entity key: the hashes of 100,000 player ids spread over a map's buckets") {
  // Ids of the benchmarks' form ("p-N", "player-N"): every bit of the hash must depend
  // on every byte, or the map's prime-modulo buckets chain up.
  std::unordered_set<size_t> hashes;
  std::vector<size_t> buckets(100'003);
  for (int i = 0; i < 100'000; ++i) {
    for (const std::string& id : {"p-" + std::to_string(i), "player-" + std::to_string(i)}) {
      size_t h = engine::EntityKey::Hash(id);
      CHECK(engine::EntityKey(id).Hash() == h);
      hashes.insert(h);
      ++buckets[h % buckets.size()];
    }
  }
  CHECK(hashes.size() == 200'000);
  size_t longest = *std::max_element(buckets.begin(), buckets.end());
  CHECK(longest <= 14);  // a random hash: about 10 (Poisson, mean 2, over 100,003 buckets)
}
