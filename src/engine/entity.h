#pragma once

#include <cstdint>
#include <string>

#include "engine/claim.h"
#include "engine/schema.h"
#include "engine/sources.h"

namespace conv::engine {

// An entity is its list of live claims. It exists while the list is non-empty; an
// entry with no claims is a tombstone, kept for resuming subscribers (partition.h).
// Owned by exactly one partition thread; see partition.h for who may read it. Point
// reads on other threads look at `claims` only (under the partition's mutex); the
// owner writes the other fields without it, so they must stay memory locations of
// their own (no bit-fields).
struct Entity {
  Claim* claims = nullptr;   // ordered by source id
  uint32_t dirty = 0;        // 1 + index in the partition's dirty list; 0 = clean this window
  bool tomb_queued = false;  // has an entry in the partition's tombstone queue
  uint64_t window = 0;       // last window that changed it (0: unknown, before recovery)
};

Claim* FindClaim(const Entity& e, uint32_t source);
// Installs `c` as its source's claim, freeing the claim it replaces.
void PutClaim(Entity& e, Claim* c);
// The link where `source`'s claim is, or would go (claims are ordered by source):
// FindClaim and PutClaim in one walk, for a caller that needs both.
Claim** FindLink(Entity& e, uint32_t source);
// The claim at `link` (from FindLink, no change since), null when `source` has none.
inline Claim* ClaimAt(Claim** link, uint32_t source) {
  return *link != nullptr && (*link)->source == source ? *link : nullptr;
}
// PutClaim at the link FindLink(e, c->source) returned.
void PutClaimAt(Claim** link, Claim* c);
// Removes and frees the claim of `source`; false when it had none.
bool RemoveClaim(Entity& e, uint32_t source);
void FreeClaims(Entity& e);
size_t ClaimCount(const Entity& e);

// The converged state: for each field, the value from the claim with the greatest
// (field ts, source name) among the claims that set the field. Depends only on the
// set of claims, never on the order they were applied in.
struct ConvergedRecord {
  uint64_t mask = 0;
  uint64_t ts_max = 0;
  std::string values;  // record values (no mask), as in record.h
};
void Converge(const Schema& schema, const Claim* claims, const SourceTable& sources,
              ConvergedRecord* out);

}  // namespace conv::engine
