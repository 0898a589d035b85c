#pragma once

// Deterministic write ops and the claims they leave, for recovery and crash tests.
// The op of (source, seq) depends on the seed alone, so a writer that resends after a
// restart regenerates the very op it sent before, and a model can say exactly what
// each source claims on each entity after any prefix of its ops.

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/schema.h"
#include "net/client.h"
#include "net/protocol.h"
#include "util/status.h"

namespace conv::testing {

struct GeneratedOp {
  net::FrameType type = net::FrameType::kAssert;
  uint64_t seq = 0;
  uint64_t ts = 0;
  std::string id;
  std::string record;  // mask + values; empty for RETRACT
};

struct OpMix {
  unsigned assert_pct = 50;
  unsigned patch_pct = 35;  // the rest are RETRACTs
};

// Ops on the `player` schema over the entities "<prefix>0" .. "<prefix>N-1".
// Timestamps grow with seq (ts = 1'000'000 + seq), so claims are deterministic.
class OpGenerator {
 public:
  OpGenerator(const engine::Schema& player, uint64_t seed, size_t entities, OpMix mix = {},
              size_t name_bytes = 8, std::string prefix = "p-");

  GeneratedOp Op(size_t source, uint64_t seq) const;
  // The op as an encoded ASSERT/PATCH/RETRACT frame.
  std::string Frame(size_t source, uint64_t seq) const;
  std::string EntityId(size_t i) const { return prefix_ + std::to_string(i); }
  std::vector<std::string> EntityIds() const;
  size_t entities() const { return entities_; }
  const engine::Schema& schema() const { return schema_; }

 private:
  engine::Schema schema_;
  uint64_t seed_;
  size_t entities_;
  OpMix mix_;
  size_t name_bytes_;
  std::string prefix_;
};

// One source's claim as the server reports it (QUERY with claims).
struct ExpectedClaim {
  uint64_t ts_max = 0;
  std::string record;  // mask + values
  bool operator==(const ExpectedClaim&) const = default;
};

// An entity as QUERY with claims shows it.
struct EntityState {
  std::string record;                           // converged: mask + values
  std::map<std::string, ExpectedClaim> claims;  // by source name
  bool operator==(const EntityState&) const = default;
};

// Entity id -> state. Entities without claims are absent.
using StateByEntity = std::map<std::string, EntityState>;

// What each source claims after its ops, applied in order (SPEC §2: ASSERT replaces
// the claim, PATCH sets fields in it, RETRACT removes it), and the converged records
// (per field, the value of the claim with the greatest (ts, source name)).
class StateModel {
 public:
  explicit StateModel(const engine::Schema& schema) : schema_(schema) {}
  void Apply(const std::string& source, const GeneratedOp& op);
  // Forgets every op of `source`.
  void Reset(const std::string& source) { sources_.erase(source); }
  StateByEntity State() const;

 private:
  struct Field {
    std::string slice;  // encoded value
    uint64_t ts = 0;
  };
  struct Claim {
    std::map<int, Field> fields;  // by field index
    uint64_t ts_max = 0;
  };
  engine::Schema schema_;
  std::map<std::string, std::map<std::string, Claim>> sources_;  // source -> id -> claim
};

// QUERY with claims for every id in `ids`. The client must not be a writer whose
// ACKs matter: replies other than RESULT are skipped.
util::Result<StateByEntity> QueryState(net::Client& c, const engine::Schema& schema,
                                       const std::vector<std::string>& ids);

// A readable account of how `got` differs from `want` (at most `limit` entries);
// empty when they are equal.
std::string DescribeDifference(const StateByEntity& want, const StateByEntity& got,
                               size_t limit = 5);

// The seed of a randomized test: `env` when set to a number, else `fallback`.
// Printed so that a failure can be replayed.
uint64_t TestSeed(const char* env, uint64_t fallback);

}  // namespace conv::testing
