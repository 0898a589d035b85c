// Per-window entity changes that partitions report for subscriptions (changes.h):
// one change per entity whose converged state differs between the start and the end
// of a window, with the fields that changed, the newest op ts and the prior state.

#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/changes.h"
#include "engine/partition.h"
#include "engine/partition_driver.h"
#include "engine/record.h"
#include "engine/test_records.h"

using namespace conv;
using conv::testing::EncodeFields;
using conv::testing::Fields;

namespace {

struct Rig {
  engine::SchemaSet schemas;
  engine::SourceTable sources;
  engine::SealQueue seals;
  std::unique_ptr<engine::Partition> partition;
  const engine::Schema* player;
  uint32_t a, b;
  uint64_t seq_a = 0, seq_b = 0;
  uint64_t window = 0;

  explicit Rig(bool watched = true) {
    REQUIRE(schemas.AddFromText("device serial:string temp:f64", "test").ok());
    partition = std::make_unique<engine::Partition>(0, schemas, sources, 1, &seals, false);
    if (watched) engine::PartitionDriver(*partition).Watch(engine::kPlayerSchemaId, 1);
    player = schemas.Find(engine::kPlayerSchemaId);
    a = *sources.Intern("a");
    b = *sources.Intern("b");
  }

  void Op(uint32_t source, engine::OpKind kind, const std::string& id, const Fields& fields,
          uint64_t ts, uint32_t schema = engine::kPlayerSchemaId) {
    auto [mask, values] = EncodeFields(*schemas.Find(schema), fields);
    engine::OpBatch batch;
    engine::OpView op{};
    op.kind = kind;
    op.source = source;
    op.schema = schema;
    op.seq = source == a ? ++seq_a : ++seq_b;
    op.ts = ts;
    op.id = id;
    op.mask = mask;
    op.values = values;
    batch.Append(op);
    engine::PartitionDriver(*partition).Apply(batch);
  }

  std::vector<engine::ChangeView> Seal(engine::PartitionSeal* keep) {
    *keep = engine::PartitionDriver(*partition).Seal(++window);
    std::vector<engine::ChangeView> out;
    engine::ChangeReader r(keep->changes);
    engine::ChangeView c;
    while (r.Next(&c))
      out.push_back(c);
    CHECK(out.size() == keep->change_count);
    return out;
  }

  uint64_t Bit(const char* field) const { return uint64_t{1} << player->FieldIndex(field); }
};

}  // namespace

TEST_CASE("changes: a new entity is one upsert with every field changed and no prior state") {
  Rig rig;
  rig.Op(rig.a, engine::OpKind::kAssert, "p-1",
         {{"name", std::string("ann")}, {"health", int64_t{90}}}, 100);
  engine::PartitionSeal seal;
  auto changes = rig.Seal(&seal);
  REQUIRE(changes.size() == 1);
  const auto& c = changes[0];
  CHECK(c.kind == engine::ChangeKind::kUpsert);
  CHECK(c.id == "p-1");
  CHECK(c.ts == 100);
  CHECK(c.changed_mask == (rig.Bit("name") | rig.Bit("health")));
  CHECK(c.mask == c.changed_mask);
  CHECK_FALSE(c.had_prev);
}

TEST_CASE(
    "changes: a thousand updates to one entity in a window give one change with the final "
    "state and the state at the window start") {
  Rig rig;
  rig.Op(rig.a, engine::OpKind::kAssert, "p-1", {{"health", int64_t{1}}, {"score", int64_t{5}}},
         10);
  engine::PartitionSeal seal;
  rig.Seal(&seal);
  for (int i = 0; i < 1000; ++i) {
    rig.Op(rig.a, engine::OpKind::kPatch, "p-1", {{"health", int64_t{i}}},
           100 + static_cast<uint64_t>(i));
  }
  auto changes = rig.Seal(&seal);
  REQUIRE(changes.size() == 1);
  const auto& c = changes[0];
  CHECK(c.ts == 1099);
  CHECK(c.changed_mask == rig.Bit("health"));
  auto [mask, values] =
      EncodeFields(*rig.player, {{"health", int64_t{999}}, {"score", int64_t{5}}});
  CHECK(c.mask == mask);
  CHECK(c.values == values);
  REQUIRE(c.had_prev);
  auto [pmask, pvalues] =
      EncodeFields(*rig.player, {{"health", int64_t{1}}, {"score", int64_t{5}}});
  CHECK(c.prev_mask == pmask);
  CHECK(c.prev_values == pvalues);
}

TEST_CASE("changes: an entity that ends the window as it started produces nothing") {
  Rig rig;
  rig.Op(rig.a, engine::OpKind::kAssert, "p-1", {{"health", int64_t{1}}}, 10);
  engine::PartitionSeal seal;
  rig.Seal(&seal);
  rig.Op(rig.a, engine::OpKind::kPatch, "p-1", {{"health", int64_t{2}}}, 20);
  rig.Op(rig.a, engine::OpKind::kPatch, "p-1", {{"health", int64_t{1}}}, 30);
  CHECK(rig.Seal(&seal).empty());
  // Created and gone within one window: nothing either.
  rig.Op(rig.a, engine::OpKind::kAssert, "p-2", {{"health", int64_t{1}}}, 40);
  rig.Op(rig.a, engine::OpKind::kRetract, "p-2", {}, 50);
  CHECK(rig.Seal(&seal).empty());
}

TEST_CASE("changes: retracting the last claim is a delete carrying the prior state") {
  Rig rig;
  rig.Op(rig.a, engine::OpKind::kAssert, "p-1", {{"name", std::string("ann")}}, 10);
  engine::PartitionSeal seal;
  rig.Seal(&seal);
  rig.Op(rig.a, engine::OpKind::kRetract, "p-1", {}, 20);
  auto changes = rig.Seal(&seal);
  REQUIRE(changes.size() == 1);
  CHECK(changes[0].kind == engine::ChangeKind::kDelete);
  CHECK(changes[0].mask == 0);
  CHECK(changes[0].values.empty());
  CHECK(changes[0].changed_mask == rig.Bit("name"));
  CHECK(changes[0].had_prev);
  CHECK(changes[0].ts == 20);
}

TEST_CASE(
    "changes: a retract that falls back to another source reports only the fields that "
    "changed") {
  Rig rig;
  rig.Op(rig.a, engine::OpKind::kAssert, "p-1",
         {{"name", std::string("ann")}, {"health", int64_t{1}}}, 10);
  rig.Op(rig.b, engine::OpKind::kAssert, "p-1",
         {{"name", std::string("ann")}, {"health", int64_t{7}}}, 20);
  engine::PartitionSeal seal;
  rig.Seal(&seal);
  rig.Op(rig.b, engine::OpKind::kRetract, "p-1", {}, 30);
  auto changes = rig.Seal(&seal);
  REQUIRE(changes.size() == 1);
  CHECK(changes[0].kind == engine::ChangeKind::kUpsert);
  CHECK(changes[0].changed_mask == rig.Bit("health"));
}

TEST_CASE("changes: schemas nobody watches produce no changes") {
  Rig rig(/*watched=*/false);
  rig.Op(rig.a, engine::OpKind::kAssert, "p-1", {{"health", int64_t{1}}}, 10);
  rig.Op(rig.a, engine::OpKind::kAssert, "d-1", {{"serial", std::string("x")}}, 10, 2);
  engine::PartitionSeal seal;
  CHECK(rig.Seal(&seal).empty());
  CHECK(seal.entity_changes == 2);
}

TEST_CASE(
    "changes: after a burst window, a long run of small windows and another burst, every "
    "change still carries its state and prior state") {
  // The dirty list grown by the burst is given back after two periods of 256 windows
  // (the first one holds the burst)
  // (util::HighWater) and grows again: no change may be lost or mixed up meanwhile.
  Rig rig;
  constexpr int kBurst = 5000;
  auto id = [](int i) { return "p-" + std::to_string(i); };
  engine::PartitionSeal seal;
  for (int i = 0; i < kBurst; ++i)
    rig.Op(rig.a, engine::OpKind::kAssert, id(i), {{"health", int64_t{i}}}, 10);
  CHECK(rig.Seal(&seal).size() == kBurst);
  for (int w = 0; w < 600; ++w) {
    int i = w % kBurst;
    rig.Op(rig.a, engine::OpKind::kPatch, id(i), {{"health", int64_t{i + 1'000'000}}},
           20 + static_cast<uint64_t>(w));
    auto changes = rig.Seal(&seal);
    REQUIRE(changes.size() == 1);
    CHECK(changes[0].id == id(i));
    REQUIRE(changes[0].had_prev);
    CHECK(changes[0].prev_values == EncodeFields(*rig.player, {{"health", int64_t{i}}}).second);
  }
  for (int i = 0; i < kBurst; ++i)
    rig.Op(rig.a, engine::OpKind::kPatch, id(i), {{"health", int64_t{i + 2'000'000}}}, 1000);
  auto changes = rig.Seal(&seal);
  REQUIRE(changes.size() == kBurst);
  for (const auto& c : changes) {
    int i = std::stoi(std::string(c.id.substr(2)));
    CHECK(c.values == EncodeFields(*rig.player, {{"health", int64_t{i + 2'000'000}}}).second);
    int64_t prev = i < 600 ? i + 1'000'000 : i;
    CHECK(c.prev_values == EncodeFields(*rig.player, {{"health", prev}}).second);
  }
}

TEST_CASE("changes: random changes appended back to back read back field for field") {
  uint64_t seed = 20261130;
  if (const char* v = std::getenv("CONV_SEED")) seed = std::strtoull(v, nullptr, 10);
  MESSAGE("seed " << seed << " (CONV_SEED)");
  std::mt19937_64 rng(seed);
  auto text = [&rng](size_t max) {
    std::string s(rng() % (max + 1), '\0');
    for (char& ch : s)
      ch = static_cast<char>(rng());
    return s;
  };
  std::vector<std::string> ids, values, prevs;
  std::vector<engine::ChangeView> written;
  for (int i = 0; i < 500; ++i) {
    ids.push_back(text(255));
    values.push_back(text(300));
    prevs.push_back(text(300));
  }
  std::string bytes = "prefix";  // appended after what the buffer holds
  for (int i = 0; i < 500; ++i) {
    engine::ChangeView c;
    c.schema = static_cast<uint32_t>(rng());
    c.kind = rng() % 2 ? engine::ChangeKind::kUpsert : engine::ChangeKind::kDelete;
    c.id = ids[i];
    c.changed_mask = rng();
    c.ts = rng();
    c.mask = rng();
    c.values = values[i];
    c.had_prev = rng() % 2 == 0;
    if (c.had_prev) {
      c.prev_mask = rng();
      c.prev_values = prevs[i];
    }
    engine::AppendChange(bytes, c);
    written.push_back(c);
  }
  REQUIRE(bytes.starts_with("prefix"));
  engine::ChangeReader r(std::string_view(bytes).substr(6));
  engine::ChangeView c;
  size_t n = 0;
  while (r.Next(&c)) {
    REQUIRE(n < written.size());
    const engine::ChangeView& w = written[n++];
    CHECK(c.schema == w.schema);
    CHECK(c.kind == w.kind);
    CHECK(c.id == w.id);
    CHECK(c.changed_mask == w.changed_mask);
    CHECK(c.ts == w.ts);
    CHECK(c.mask == w.mask);
    CHECK(c.values == w.values);
    REQUIRE(c.had_prev == w.had_prev);
    if (w.had_prev) {
      CHECK(c.prev_mask == w.prev_mask);
      CHECK(c.prev_values == w.prev_values);
    }
  }
  CHECK(n == written.size());
}
