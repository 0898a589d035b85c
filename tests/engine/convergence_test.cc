// The convergence rule of SPEC §2, driven on one engine::Partition, single-threaded:
// targeted cases for each op kind, then a randomized property (fixed, printed seed)
// that any interleaving of the sources' ops gives the same state as an independent
// reference model.

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cstdint>
#include <cstdlib>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/op.h"
#include "engine/partition.h"
#include "engine/partition_driver.h"
#include "engine/queues.h"
#include "engine/record.h"
#include "engine/schema.h"
#include "engine/sources.h"
#include "engine/test_records.h"

using namespace conv;
using engine::OpKind;
using testing::Fields;
using testing::Show;

namespace {

// One partition with the built-in schemas, fed one op per batch, as the tests below
// want to look at the state between any two ops.
struct Harness {
  engine::SchemaSet schemas;
  engine::SourceTable sources{16};
  engine::SealQueue seals;
  engine::Partition partition{0, schemas, sources, 1, &seals};
  const engine::Schema& player = *schemas.Find(engine::kPlayerSchemaId);
  std::map<uint32_t, uint64_t> last_seq;

  uint32_t Source(std::string_view name) {
    auto id = sources.Intern(name);
    REQUIRE(id.ok());
    return *id;
  }

  // Sends an op with the source's next seq.
  void Send(OpKind kind, uint32_t source, std::string_view id, uint64_t ts,
            const Fields& fields = {}) {
    SendWithSeq(kind, source, id, ++last_seq[source], ts, fields);
  }
  void SendWithSeq(OpKind kind, uint32_t source, std::string_view id, uint64_t seq, uint64_t ts,
                   const Fields& fields = {}) {
    auto [mask, values] = testing::EncodeFields(player, fields);
    REQUIRE((mask != 0 || values.empty()));
    engine::OpBatch batch;
    batch.Append({kind, source, player.id, seq, ts, id, mask, values});
    engine::PartitionDriver(partition).Apply(batch);
  }
  void Assert(uint32_t source, std::string_view id, uint64_t ts, const Fields& fields) {
    Send(OpKind::kAssert, source, id, ts, fields);
  }
  void Patch(uint32_t source, std::string_view id, uint64_t ts, const Fields& fields) {
    Send(OpKind::kPatch, source, id, ts, fields);
  }
  void Retract(uint32_t source, std::string_view id, uint64_t ts = 1) {
    Send(OpKind::kRetract, source, id, ts);
  }

  engine::QueryResult Get(std::string_view id) {
    engine::QueryResult r;
    bool found = partition.Query(player, id, true, &r);
    CHECK(found == r.found);
    return r;
  }
  // The converged record of `id`, as text; "not found" when it does not exist.
  std::string State(std::string_view id) {
    engine::QueryResult r = Get(id);
    return r.found ? Show(player, r.record.mask, r.record.values) : "not found";
  }
  // The claim of `source` on `id`, as text; "none" when it has none.
  std::string ClaimOf(std::string_view id, uint32_t source) {
    for (const auto& c : Get(id).claims) {
      if (c.source == source) return Show(player, c.mask, c.values);
    }
    return "none";
  }
};

}  // namespace

TEST_CASE("convergence: the greatest timestamp wins each field, then the greatest source name") {
  Harness h;
  // Ids in the opposite order of names, so a rule that looked at ids would fail.
  uint32_t zulu = h.Source("zulu");
  uint32_t mike = h.Source("mike");
  uint32_t alpha = h.Source("alpha");

  h.Assert(alpha, "p", 100, {{"name", std::string("a")}, {"health", int64_t{1}}});
  h.Assert(mike, "p", 100, {{"name", std::string("m")}});
  h.Assert(zulu, "p", 100, {{"name", std::string("z")}});
  CHECK(h.State("p") == R"({name="z" health=1})");

  h.Retract(zulu, "p");
  CHECK(h.State("p") == R"({name="m" health=1})");

  // A later timestamp beats any name.
  h.Patch(alpha, "p", 101, {{"name", std::string("a2")}});
  CHECK(h.State("p") == R"({name="a2" health=1})");
  h.Assert(zulu, "p", 100, {{"name", std::string("z")}, {"health", int64_t{9}}});
  CHECK(h.State("p") == R"({name="a2" health=9})");
}

TEST_CASE("convergence: a retract falls back to the other sources' claims") {
  Harness h;
  uint32_t a = h.Source("a");
  uint32_t b = h.Source("b");
  h.Assert(a, "p", 10, {{"name", std::string("old")}, {"x", 1.0}, {"team", std::string("red")}});
  h.Assert(b, "p", 20, {{"name", std::string("new")}, {"x", 2.5}, {"online", true}});
  CHECK(h.State("p") == R"({name="new" team="red" x=2.5 online=true})");

  h.Retract(b, "p", 30);
  CHECK(h.State("p") == R"({name="old" team="red" x=1})");
  auto r = h.Get("p");
  REQUIRE(r.claims.size() == 1);
  CHECK(r.claims[0].source == a);

  // A retract's own ts does not matter: it removes the claim outright.
  h.Assert(b, "p", 20, {{"name", std::string("new")}});
  h.Retract(b, "p", 1);
  CHECK(h.State("p") == R"({name="old" team="red" x=1})");
}

TEST_CASE("convergence: a patch with no prior claim creates a partial claim") {
  Harness h;
  uint32_t a = h.Source("a");
  uint32_t b = h.Source("b");
  h.Patch(a, "p", 5, {{"health", int64_t{70}}});
  CHECK(h.State("p") == "{health=70}");
  CHECK(h.ClaimOf("p", a) == "{health=70}");
  CHECK(h.partition.counters().entities == 1);
  CHECK(h.partition.counters().claims == 1);

  // The partial claim only covers its field; another source's other fields show.
  h.Assert(b, "p", 1, {{"name", std::string("bo")}, {"health", int64_t{100}}});
  CHECK(h.State("p") == R"({name="bo" health=70})");
  CHECK(h.ClaimOf("p", b) == R"({name="bo" health=100})");
  CHECK(h.partition.counters().claims == 2);
}

TEST_CASE("convergence: a patch merges into the claim keeping each field's timestamp") {
  Harness h;
  uint32_t a = h.Source("a");
  uint32_t b = h.Source("b");
  h.Assert(a, "p", 100, {{"name", std::string("a")}, {"x", 1.0}, {"health", int64_t{10}}});
  h.Assert(b, "p", 50, {{"name", std::string("b")}, {"x", 2.0}, {"health", int64_t{20}}});
  CHECK(h.State("p") == R"({name="a" x=1 health=10})");

  // a's health is now at ts 40, below b's 50: a loses that field only.
  h.Patch(a, "p", 40, {{"health", int64_t{11}}});
  CHECK(h.ClaimOf("p", a) == R"({name="a" x=1 health=11})");
  CHECK(h.State("p") == R"({name="a" x=1 health=20})");

  // b's patched x at 200 beats a's x at 100; b's name and health keep ts 50.
  h.Patch(b, "p", 200, {{"x", 3.0}, {"level", int64_t{4}}});
  CHECK(h.ClaimOf("p", b) == R"({name="b" x=3 health=20 level=4})");
  CHECK(h.State("p") == R"({name="a" x=3 health=20 level=4})");

  // Once b is gone, a's health at ts 40 is all there is.
  h.Retract(b, "p");
  CHECK(h.State("p") == R"({name="a" x=1 health=11})");

  // The claim's ts_max is that of its newest field.
  auto r = h.Get("p");
  REQUIRE(r.claims.size() == 1);
  CHECK(r.claims[0].ts_max == 100);
}

TEST_CASE("convergence: an assert replaces the whole claim, unsetting the fields it omits") {
  Harness h;
  uint32_t a = h.Source("a");
  uint32_t b = h.Source("b");
  h.Assert(a, "p", 10, {{"name", std::string("a")}, {"x", 1.0}, {"score", int64_t{5}}});
  h.Patch(a, "p", 20, {{"y", 2.0}});
  h.Assert(b, "p", 1, {{"x", 9.0}});
  CHECK(h.State("p") == R"({name="a" x=1 y=2 score=5})");

  h.Assert(a, "p", 15, {{"score", int64_t{6}}});
  CHECK(h.ClaimOf("p", a) == "{score=6}");
  CHECK(h.State("p") == "{x=9 score=6}");
  auto r = h.Get("p");
  REQUIRE(r.claims.size() == 2);
  CHECK(r.claims[0].ts_max == 15);  // the assert's ts, not the older patch's 20

  // An assert with no fields leaves an empty claim: the entity still exists.
  h.Retract(b, "p");
  h.Assert(a, "p", 30, {});
  CHECK(h.State("p") == "{}");
  CHECK(h.partition.counters().entities == 1);
}

TEST_CASE("convergence: an entity disappears when its last claim is retracted") {
  Harness h;
  uint32_t a = h.Source("a");
  uint32_t b = h.Source("b");
  h.Retract(a, "p");  // retracting nothing creates nothing
  CHECK(h.State("p") == "not found");
  CHECK(h.partition.counters().entities == 0);

  h.Assert(a, "p", 1, {{"name", std::string("a")}});
  h.Patch(b, "p", 2, {{"x", 1.0}});
  h.Assert(a, "q", 1, {{"name", std::string("q")}});
  CHECK(h.partition.counters().entities == 2);
  CHECK(h.partition.counters().claims == 3);

  h.Retract(a, "p");
  CHECK(h.State("p") == "{x=1}");
  h.Retract(b, "p");
  CHECK(h.State("p") == "not found");
  CHECK(h.Get("p").claims.empty());
  CHECK(h.partition.counters().entities == 1);
  CHECK(h.partition.counters().claims == 1);

  h.Retract(a, "q");
  auto c = h.partition.counters();
  CHECK(c.entities == 0);
  CHECK(c.claims == 0);
  CHECK(c.claim_bytes == 0);

  // Gone before and after the window closes, and it comes back on a new claim.
  (void)engine::PartitionDriver(h.partition).Seal(1);
  CHECK(h.State("p") == "not found");
  h.Patch(b, "p", 3, {{"y", 2.0}});
  CHECK(h.State("p") == "{y=2}");
  CHECK(h.partition.counters().entities == 1);
}

TEST_CASE("convergence: duplicate resends are skipped, counted and change nothing") {
  Harness h;
  uint32_t a = h.Source("a");
  uint32_t b = h.Source("b");
  h.SendWithSeq(OpKind::kAssert, a, "p", 5, 10, {{"name", std::string("a")}});
  h.SendWithSeq(OpKind::kAssert, b, "p", 3, 10, {{"x", 1.0}});
  auto before = h.partition.counters();
  std::string state = h.State("p");

  // Same seq, lower seq, other ops, other entities: all skipped.
  h.SendWithSeq(OpKind::kAssert, a, "p", 5, 10, {{"name", std::string("a")}});
  h.SendWithSeq(OpKind::kAssert, a, "p", 5, 99, {{"name", std::string("changed")}});
  h.SendWithSeq(OpKind::kRetract, a, "p", 4, 99);
  h.SendWithSeq(OpKind::kPatch, a, "q", 1, 99, {{"x", 2.0}});
  h.SendWithSeq(OpKind::kRetract, b, "p", 3, 99);
  CHECK(h.State("p") == state);
  CHECK(h.State("q") == "not found");
  auto after = h.partition.counters();
  CHECK(after.duplicates == before.duplicates + 5);
  CHECK(after.applied == before.applied);
  CHECK(after.asserts == before.asserts);
  CHECK(after.claims == before.claims);
  CHECK(after.claim_bytes == before.claim_bytes);
  auto seal = engine::PartitionDriver(h.partition).Seal(1);
  CHECK(seal.ops == 2);

  // Gaps are allowed: any seq above the mark applies.
  h.SendWithSeq(OpKind::kPatch, a, "p", 1000, 11, {{"name", std::string("later")}});
  CHECK(h.State("p") == R"({name="later" x=1})");
  CHECK(h.partition.counters().duplicates == before.duplicates + 5);
}

TEST_CASE("convergence: a seal reports the ops, claim changes and entity changes of its window") {
  Harness h;
  uint32_t a = h.Source("a");
  uint32_t b = h.Source("b");
  uint32_t c = h.Source("c");

  for (int64_t i = 0; i < 1000; ++i)
    h.Patch(a, "p", 1 + i, {{"score", i}});
  auto seal = engine::PartitionDriver(h.partition).Seal(7);
  CHECK(seal.window == 7);
  CHECK(seal.partition == 0);
  CHECK(seal.ops == 1000);
  CHECK(seal.claim_changes == 1);
  CHECK(seal.entity_changes == 1);
  CHECK(h.State("p") == "{score=999}");

  // Nothing happened since: an empty window.
  seal = engine::PartitionDriver(h.partition).Seal(8);
  CHECK(seal.ops == 0);
  CHECK(seal.claim_changes == 0);
  CHECK(seal.entity_changes == 0);

  // Three sources on two entities; a retract is a change; duplicates and retracts of
  // claims that do not exist change nothing.
  h.Assert(a, "p", 1, {{"name", std::string("a")}});
  h.Assert(b, "p", 1, {{"name", std::string("b")}});
  h.Assert(b, "q", 1, {{"name", std::string("b")}});
  h.Patch(b, "q", 2, {{"x", 1.0}});
  h.Retract(a, "p");
  h.Retract(c, "p");
  h.Retract(c, "nothing");
  h.SendWithSeq(OpKind::kAssert, a, "p", 1, 1, {{"name", std::string("dup")}});
  seal = engine::PartitionDriver(h.partition).Seal(9);
  CHECK(seal.ops == 7);
  CHECK(seal.claim_changes == 3);  // (p, a), (p, b), (q, b)
  CHECK(seal.entity_changes == 2);

  // An entity created and removed within one window still counts as changed.
  h.Assert(c, "r", 1, {{"name", std::string("c")}});
  h.Retract(c, "r");
  seal = engine::PartitionDriver(h.partition).Seal(10);
  CHECK(seal.ops == 2);
  CHECK(seal.claim_changes == 1);
  CHECK(seal.entity_changes == 1);
  CHECK(h.State("r") == "not found");
}

// ---------------------------------------------------------------------------------
// The randomized property.

namespace {

constexpr uint64_t kDefaultSeed = 20240611;
constexpr uint64_t kDefaultIterations = 1500;
constexpr int kInterleavings = 4;  // per scenario, the first one source after source
constexpr std::string_view kSourceNames[] = {"delta", "alpha", "echo", "charlie", "bravo"};
constexpr std::string_view kIds[] = {"e0", "e1", "e2"};

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::strtoull(v, nullptr, 0);
}

// Portable draws (std::uniform_int_distribution differs between standard libraries,
// and a printed seed must replay the same scenario everywhere).
uint64_t Below(std::mt19937_64& rng, uint64_t n) {
  return rng() % n;
}

// Everything the scenarios share: schemas (player and one with bytes fields), the
// source table (ids in an order unlike the names' order).
struct World {
  engine::SchemaSet schemas;
  engine::SourceTable sources{16};
  std::vector<const engine::Schema*> schema_list;
  std::vector<uint32_t> source_ids;
  std::vector<std::pair<uint32_t, std::string>> keys;  // every (schema, id) a scenario uses

  World() {
    REQUIRE(
        schemas.AddFromText("thing tag:bytes n:i64 label:string on:bool ratio:f64\n", "test").ok());
    schema_list = {schemas.Find(1), schemas.Find(2)};
    for (std::string_view name : kSourceNames) {
      auto id = sources.Intern(name);
      REQUIRE(id.ok());
      source_ids.push_back(*id);
    }
    for (const auto* s : schema_list) {
      for (std::string_view id : kIds)
        keys.emplace_back(s->id, std::string(id));
    }
  }
  const engine::Schema& schema(uint32_t id) const { return *schemas.Find(id); }
};

struct GenOp {
  OpKind kind = OpKind::kAssert;
  uint32_t schema = 0;
  std::string id;
  uint64_t seq = 0;
  uint64_t ts = 0;
  uint64_t mask = 0;
  std::map<int, std::string> fields;  // field index -> encoded value
  std::string values;                 // the encoded fields in field order
  bool duplicate = false;             // a resend the engine must skip
};

struct Scenario {
  std::vector<uint32_t> sources;        // the sources taking part
  std::vector<std::vector<GenOp>> ops;  // ops[k]: what sources[k] sends, in order
  size_t duplicates = 0;
};

std::string RandomValue(engine::FieldType type, std::mt19937_64& rng) {
  static const char* const kWords[] = {"ann", "bob", "zoë", "李", "", "x"};
  engine::Value v;
  switch (type) {
    case engine::FieldType::kBool:
      v = Below(rng, 2) == 1;
      break;
    case engine::FieldType::kI64:
      // Mostly small; sometimes anything, for long varints.
      v = Below(rng, 4) == 0 ? static_cast<int64_t>(rng())
                             : static_cast<int64_t>(Below(rng, 41)) - 20;
      break;
    case engine::FieldType::kF64:
      v = static_cast<double>(Below(rng, 64)) / 4.0;
      break;
    case engine::FieldType::kString:
      v = fmt::format("{}{}", kWords[Below(rng, std::size(kWords))], Below(rng, 20));
      break;
    case engine::FieldType::kBytes: {
      std::string b(Below(rng, 4) == 0 ? 130 + Below(rng, 10) : Below(rng, 5), '\0');
      for (char& c : b)
        c = static_cast<char>(rng());
      v = engine::Bytes{b};
      break;
    }
  }
  std::string out;
  engine::EncodeValue(type, v, out);  // cannot fail: v holds the type's alternative
  return out;
}

GenOp RandomOp(const World& world, std::mt19937_64& rng, size_t id_count) {
  GenOp op;
  const engine::Schema& schema = *world.schema_list[Below(rng, world.schema_list.size())];
  op.schema = schema.id;
  op.id = std::string(kIds[Below(rng, id_count)]);
  // A narrow range, so that sources often tie and the name decides.
  op.ts = Below(rng, 8) == 0 ? 1000 + Below(rng, 3) : 1 + Below(rng, 6);
  uint64_t kind = Below(rng, 10);
  if (kind < 4) {
    op.kind = OpKind::kAssert;
    op.mask = rng() & schema.AllFieldsMask();
  } else if (kind < 8) {
    op.kind = OpKind::kPatch;
    if (Below(rng, 20) != 0) {
      for (uint64_t n = 1 + Below(rng, 3); n > 0; --n) {
        op.mask |= uint64_t{1} << Below(rng, schema.fields.size());
      }
    }
  } else {
    op.kind = OpKind::kRetract;
  }
  for (uint64_t m = op.mask; m != 0; m &= m - 1) {
    int i = __builtin_ctzll(m);
    op.fields[i] = RandomValue(schema.fields[i].type, rng);
    op.values += op.fields[i];
  }
  return op;
}

Scenario RandomScenario(const World& world, std::mt19937_64& rng) {
  Scenario s;
  std::vector<uint32_t> ids = world.source_ids;
  for (size_t i = ids.size() - 1; i > 0; --i)
    std::swap(ids[i], ids[Below(rng, i + 1)]);
  ids.resize(2 + Below(rng, 3));
  s.sources = ids;
  size_t id_count = 1 + Below(rng, std::size(kIds));
  for (size_t k = 0; k < s.sources.size(); ++k) {
    std::vector<GenOp>& ops = s.ops.emplace_back();
    uint64_t seq = 0;
    for (uint64_t n = 1 + Below(rng, 24); n > 0; --n) {
      if (!ops.empty() && Below(rng, 8) == 0) {
        // A resend: an earlier op again, or another op reusing an applied seq.
        GenOp dup = ops[Below(rng, ops.size())];
        if (Below(rng, 2) == 0) {
          uint64_t old_seq = dup.seq;
          dup = RandomOp(world, rng, id_count);
          dup.seq = old_seq;
        }
        dup.duplicate = true;
        ops.push_back(std::move(dup));
        ++s.duplicates;
        continue;
      }
      GenOp op = RandomOp(world, rng, id_count);
      seq += Below(rng, 4) == 0 ? 2 + Below(rng, 5) : 1;  // gaps are allowed
      op.seq = seq;
      ops.push_back(std::move(op));
    }
  }
  return s;
}

// A uniformly random interleaving keeping each source's order: the index in
// `sources` of whoever sends next, step by step.
std::vector<size_t> RandomInterleaving(const Scenario& s, std::mt19937_64& rng) {
  std::vector<size_t> left;
  size_t total = 0;
  for (const auto& ops : s.ops) {
    left.push_back(ops.size());
    total += ops.size();
  }
  std::vector<size_t> order;
  for (; total > 0; --total) {
    uint64_t r = Below(rng, total);
    size_t k = 0;
    while (r >= left[k])
      r -= left[k++];
    --left[k];
    order.push_back(k);
  }
  return order;
}

std::vector<size_t> SourceAfterSource(const Scenario& s) {
  std::vector<size_t> order;
  for (size_t k = s.ops.size(); k-- > 0;)
    order.insert(order.end(), s.ops[k].size(), k);
  return order;
}

// What a reader sees of one entity.
struct ClaimState {
  uint32_t source = 0;
  uint64_t mask = 0;
  uint64_t ts_max = 0;  // 0 for a claim with no fields (not defined by the rule)
  std::string values;
  bool operator==(const ClaimState&) const = default;
};
struct EntityState {
  bool found = false;
  uint64_t mask = 0;
  uint64_t ts_max = 0;  // engine only: compared between interleavings
  std::string values;
  std::vector<ClaimState> claims;  // by source id
};

std::string Describe(const engine::Schema& schema, const engine::SourceTable& sources,
                     const EntityState& e, bool with_ts_max) {
  if (!e.found) return "not found";
  std::string out = Show(schema, e.mask, e.values);
  if (with_ts_max) out += fmt::format(" ts_max {}", e.ts_max);
  for (const auto& c : e.claims) {
    out += fmt::format("\n          claim {} ts_max {} {}", sources.Name(c.source), c.ts_max,
                       Show(schema, c.mask, c.values));
  }
  return out;
}

// "" when equal; otherwise both states, for the failure message. The record's ts_max
// is only compared between engine runs (the reference does not model it).
std::string Diff(const engine::Schema& schema, const engine::SourceTable& sources,
                 const EntityState& got, const EntityState& want, bool compare_ts_max) {
  bool same = got.found == want.found && got.mask == want.mask && got.values == want.values &&
              got.claims == want.claims && (!compare_ts_max || got.ts_max == want.ts_max);
  if (same) return "";
  return fmt::format("\n    got:  {}\n    want: {}", Describe(schema, sources, got, compare_ts_max),
                     Describe(schema, sources, want, compare_ts_max));
}

EntityState EngineState(const engine::Partition& p, const engine::Schema& schema,
                        std::string_view id) {
  engine::QueryResult r;
  EntityState e;
  e.found = p.Query(schema, id, true, &r);
  if (!e.found) return e;
  e.mask = r.record.mask;
  e.ts_max = r.record.ts_max;
  e.values = r.record.values;
  for (const auto& c : r.claims) {
    e.claims.push_back({c.source, c.mask, c.mask == 0 ? 0 : c.ts_max, c.values});
  }
  return e;
}

// The obviously-correct model of SPEC §2: per entity, per source, field -> (value, ts);
// a field converges to the value with the greatest (ts, source name).
class Reference {
 public:
  using Key = std::pair<uint32_t, std::string>;
  struct Field {
    std::string value;
    uint64_t ts = 0;
  };
  using Claim = std::map<int, Field>;

  explicit Reference(const engine::SourceTable& sources) : sources_(sources) {}

  void Apply(uint32_t source, const GenOp& op) {
    uint64_t& mark = marks_[source];
    if (op.seq <= mark) {
      ++counters.duplicates;
      return;
    }
    mark = op.seq;
    ++counters.applied;
    ++window_ops;
    Key key{op.schema, op.id};
    auto& claims = entities_[key];
    switch (op.kind) {
      case OpKind::kRetract:
        ++counters.retracts;
        if (claims.erase(source) == 1) window_claims.emplace(key, source);
        break;
      case OpKind::kAssert:
        ++counters.asserts;
        claims[source].clear();
        [[fallthrough]];
      case OpKind::kPatch:
        if (op.kind == OpKind::kPatch) ++counters.patches;
        for (const auto& [i, value] : op.fields)
          claims[source][i] = {value, op.ts};
        claims.try_emplace(source);  // a patch of no fields still makes a claim
        window_claims.emplace(key, source);
        break;
    }
    if (claims.empty()) entities_.erase(key);
  }

  EntityState State(const engine::Schema& schema, const std::string& id) {
    EntityState e;
    auto it = entities_.find(Key{schema.id, id});
    if (it == entities_.end()) return e;
    e.found = true;
    for (size_t i = 0; i < schema.fields.size(); ++i) {
      const Field* best = nullptr;
      std::string_view best_name;
      for (const auto& [source, claim] : it->second) {
        auto f = claim.find(static_cast<int>(i));
        if (f == claim.end()) continue;
        std::string_view name = sources_.Name(source);
        if (best != nullptr && f->second.ts == best->ts) ++name_ties;
        if (best == nullptr || std::pair(f->second.ts, name) > std::pair(best->ts, best_name)) {
          best = &f->second;
          best_name = name;
        }
      }
      if (best != nullptr) {
        e.mask |= uint64_t{1} << i;
        e.values += best->value;
      }
    }
    for (const auto& [source, claim] : it->second) {
      ClaimState c{source, 0, 0, ""};
      for (const auto& [i, f] : claim) {
        c.mask |= uint64_t{1} << i;
        c.ts_max = std::max(c.ts_max, f.ts);
        c.values += f.value;
      }
      e.claims.push_back(std::move(c));
    }
    return e;
  }

  uint64_t entity_count() const { return entities_.size(); }
  uint64_t claim_count() const {
    uint64_t n = 0;
    for (const auto& [key, claims] : entities_)
      n += claims.size();
    return n;
  }
  uint64_t window_entities() const {
    std::set<Key> keys;
    for (const auto& [key, source] : window_claims)
      keys.insert(key);
    return keys.size();
  }

  engine::PartitionCounters counters;  // all but entities, claims, claim_bytes
  uint64_t window_ops = 0;
  std::set<std::pair<Key, uint32_t>> window_claims;
  uint64_t name_ties = 0;  // field decisions between equal timestamps

 private:
  const engine::SourceTable& sources_;
  std::map<Key, std::map<uint32_t, Claim>> entities_;  // claims by source id
  std::map<uint32_t, uint64_t> marks_;
};

std::string DescribeScenario(const World& world, const Scenario& s) {
  std::string out;
  for (size_t k = 0; k < s.sources.size(); ++k) {
    out += fmt::format("\n  source {}:", world.sources.Name(s.sources[k]));
    for (const GenOp& op : s.ops[k]) {
      const engine::Schema& schema = world.schema(op.schema);
      std::string_view kind = op.kind == OpKind::kAssert  ? "ASSERT"
                              : op.kind == OpKind::kPatch ? "PATCH"
                                                          : "RETRACT";
      out += fmt::format("\n    seq {} {} {}/{} ts {}", op.seq, kind, schema.name, op.id, op.ts);
      if (op.kind != OpKind::kRetract) out += " " + Show(schema, op.mask, op.values);
      if (op.duplicate) out += " (duplicate)";
    }
  }
  return out;
}

std::string CompareCounters(const engine::PartitionCounters& got,
                            const engine::PartitionCounters& want, bool compare_bytes) {
  std::string out;
  auto cmp = [&](std::string_view name, uint64_t g, uint64_t w) {
    if (g != w) out += fmt::format("\n    counters().{}: got {}, want {}", name, g, w);
  };
  cmp("applied", got.applied, want.applied);
  cmp("asserts", got.asserts, want.asserts);
  cmp("patches", got.patches, want.patches);
  cmp("retracts", got.retracts, want.retracts);
  cmp("duplicates", got.duplicates, want.duplicates);
  cmp("entities", got.entities, want.entities);
  cmp("claims", got.claims, want.claims);
  if (compare_bytes) cmp("claim_bytes", got.claim_bytes, want.claim_bytes);
  return out;
}

struct RunOutcome {
  std::vector<EntityState> states;  // by World::keys
  engine::PartitionCounters counters;
  uint64_t name_ties = 0;
  std::string failure;  // "" when the engine agreed with the reference throughout
};

// Feeds `order` to a fresh partition in batches of random size, sealing windows at
// random points, and checks the engine against the reference after every seal and
// at random points between.
RunOutcome Run(const World& world, const Scenario& s, const std::vector<size_t>& order,
               std::mt19937_64& rng) {
  engine::SealQueue seals;
  engine::Partition partition(0, world.schemas, world.sources, 1, &seals);
  Reference ref(world.sources);
  RunOutcome out;
  engine::OpBatch batch;
  uint64_t window = 0;
  size_t step = 0;

  auto flush = [&] {
    if (batch.empty()) return;
    engine::PartitionDriver(partition).Apply(batch);
    batch = engine::OpBatch();
  };
  auto check_state = [&](std::string_view when) {
    for (const auto& [schema_id, id] : world.keys) {
      const engine::Schema& schema = world.schema(schema_id);
      std::string diff = Diff(schema, world.sources, EngineState(partition, schema, id),
                              ref.State(schema, id), false);
      if (!diff.empty()) {
        out.failure += fmt::format("\n  {}/{} differs from the reference {} (after {} ops):{}",
                                   schema.name, id, when, step, diff);
      }
    }
    engine::PartitionCounters want = ref.counters;
    want.entities = ref.entity_count();
    want.claims = ref.claim_count();
    std::string counters = CompareCounters(partition.counters(), want, false);
    if (!counters.empty()) {
      out.failure += fmt::format("\n  counters differ {} (after {} ops):{}", when, step, counters);
    }
    return out.failure.empty();
  };
  auto seal = [&] {
    flush();
    engine::PartitionSeal got = engine::PartitionDriver(partition).Seal(++window);
    if (got.window != window || got.ops != ref.window_ops ||
        got.claim_changes != ref.window_claims.size() ||
        got.entity_changes != ref.window_entities()) {
      out.failure += fmt::format(
          "\n  seal of window {} after {} ops: got window {} ops {} claim_changes {} "
          "entity_changes {}, want ops {} claim_changes {} entity_changes {}",
          window, step, got.window, got.ops, got.claim_changes, got.entity_changes, ref.window_ops,
          ref.window_claims.size(), ref.window_entities());
    }
    ref.window_ops = 0;
    ref.window_claims.clear();
    return check_state("after a seal") && out.failure.empty();
  };

  // Batches of one op, of a few, or of more than Partition::kApplyChunk; windows of a
  // few ops or of the whole run.
  static constexpr uint64_t kFlushEvery[] = {1, 4, 128};
  const uint64_t flush_every = kFlushEvery[Below(rng, std::size(kFlushEvery))];
  const uint64_t seal_every = Below(rng, 2) == 0 ? 16 : 256;
  std::vector<size_t> next(s.ops.size(), 0);
  for (step = 0; step < order.size();) {
    size_t k = order[step];
    const GenOp& op = s.ops[k][next[k]++];
    batch.Append({op.kind, s.sources[k], op.schema, op.seq, op.ts, op.id, op.mask, op.values});
    ref.Apply(s.sources[k], op);
    ++step;
    if (Below(rng, flush_every) == 0) flush();
    uint64_t r = Below(rng, seal_every);
    if (r == 0) {
      if (!seal()) return out;
    } else if (r == 1) {
      flush();
      if (!check_state("between seals")) return out;
    }
  }
  if (!seal()) return out;
  for (const auto& [schema_id, id] : world.keys) {
    out.states.push_back(EngineState(partition, world.schema(schema_id), id));
  }
  out.counters = partition.counters();
  out.name_ties = ref.name_ties;
  return out;
}

}  // namespace

TEST_CASE("convergence: any interleaving of the sources' ops gives the same state") {
  const uint64_t seed = EnvOr("CONV_SEED", kDefaultSeed);
  const uint64_t iterations = EnvOr("CONV_ITERATIONS", kDefaultIterations);
  MESSAGE("convergence property: seed " << seed << ", " << iterations
                                        << " scenarios (override with CONV_SEED, "
                                           "CONV_ITERATIONS)");
  World world;
  std::mt19937_64 master(seed);
  uint64_t ops = 0, duplicates = 0, name_ties = 0;
  for (uint64_t iteration = 0; iteration < iterations; ++iteration) {
    const uint64_t scenario_seed = master();
    std::mt19937_64 rng(scenario_seed);
    const Scenario s = RandomScenario(world, rng);
    auto fail = [&](int interleaving, const std::vector<size_t>& order, const std::string& why) {
      std::string sources;
      for (size_t k : order)
        sources += fmt::format(" {}", world.sources.Name(s.sources[k]));
      FAIL_CHECK(fmt::format(
          "seed {} scenario {} (rerun: CONV_SEED={} CONV_ITERATIONS={}), interleaving {}:{}"
          "\n  scenario:{}\n  interleaving (who sends next):{}",
          seed, iteration, seed, iteration + 1, interleaving, why, DescribeScenario(world, s),
          sources));
    };

    RunOutcome first;
    for (int v = 0; v < kInterleavings; ++v) {
      std::vector<size_t> order = v == 0 ? SourceAfterSource(s) : RandomInterleaving(s, rng);
      RunOutcome o = Run(world, s, order, rng);
      if (!o.failure.empty()) return fail(v, order, o.failure);
      if (v == 0) {
        first = std::move(o);
        continue;
      }
      // Between interleavings everything a reader can see must match exactly,
      // including timestamps and memory accounting.
      std::string why = CompareCounters(o.counters, first.counters, true);
      for (size_t i = 0; i < world.keys.size(); ++i) {
        const engine::Schema& schema = world.schema(world.keys[i].first);
        std::string diff = Diff(schema, world.sources, o.states[i], first.states[i], true);
        if (!diff.empty()) {
          why += fmt::format("\n  {}/{} differs from interleaving 0:{}", schema.name,
                             world.keys[i].second, diff);
        }
      }
      if (!why.empty()) return fail(v, order, why);
    }
    for (const auto& source_ops : s.ops)
      ops += source_ops.size();
    duplicates += s.duplicates;
    CHECK(first.counters.duplicates == s.duplicates);
    name_ties += first.name_ties;
  }
  MESSAGE(ops << " ops (" << duplicates << " duplicates) in " << kInterleavings
              << " interleavings each; " << name_ties << " field decisions between equal ts");
  // The generator must exercise what the property is about.
  if (iterations >= 100) {
    CHECK(duplicates > 0);
    CHECK(name_ties > 0);
  }
}
