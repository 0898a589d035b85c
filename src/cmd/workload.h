#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "engine/schema.h"
#include "util/status.h"

namespace conv::cmd {

// The op mix of the load generator, in percent: ASSERT / PATCH / RETRACT.
struct Mix {
  unsigned assert_pct = 70;
  unsigned patch_pct = 20;
  unsigned retract_pct = 10;
};
// Parses "A/P/R" (three whole numbers adding up to 100).
util::Result<Mix> ParseMix(const std::string& text);

// What ops to send: which entity, which kind, which record. Records come from a
// pool made once per schema so that generating an op costs no encoding work.
// One per worker thread (not thread-safe).
class Workload {
 public:
  // `hot_pct` in [0, 100): that percent of the entities receives 90% of the writes
  // (0: uniform).
  Workload(const engine::Schema& schema, uint64_t entities, unsigned hot_pct, Mix mix,
           uint64_t seed);

  enum class Kind { kAssert, kPatch, kRetract };
  Kind NextKind();
  // Index of the next entity to write.
  uint64_t NextEntity();
  // The id of entity `entity` (EntityId), made on demand so that millions of entities
  // cost no memory here; valid until the next call.
  std::string_view Id(uint64_t entity);
  // A full record (every field), mask + values.
  const std::string& FullRecord() { return full_[rng_() % full_.size()]; }
  // A partial record (a random non-empty subset of the fields).
  const std::string& PartialRecord() { return partial_[rng_() % partial_.size()]; }
  uint64_t entities() const { return entities_; }
  std::mt19937_64& rng() { return rng_; }

 private:
  std::mt19937_64 rng_;
  uint64_t entities_;
  std::string prefix_;  // "<schema prefix>-"
  std::string id_;      // Id()'s text
  std::vector<std::string> full_;
  std::vector<std::string> partial_;
  uint64_t hot_count_;
  Mix mix_;
};

// Entity ids the load generator uses: "<schema prefix>-<n>", e.g. "p-17" for player.
std::string EntityId(const engine::Schema& schema, uint64_t n);

}  // namespace conv::cmd
