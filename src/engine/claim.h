#pragma once

// A claim: what one source currently says about one entity. One heap block:
//
//   +-------+------+--------+--------+-----------+---------+--------------------+--------+
//   | next  | mask | ts_max | source | values_len| uniform | ts[popcount(mask)] | values |
//   +-------+------+--------+--------+-----------+---------+--------------------+--------+
//                                                  ts[] only when !uniform
//
// When every field of the claim was set by ops with one timestamp (the common case:
// an ASSERT) the per-field timestamps collapse into ts_max. Claims are immutable
// once built; an update builds a new block and frees the old one. Claims of one
// entity form a singly linked list ordered by source id.

#include <cstdint>
#include <string_view>

#include "engine/record.h"
#include "engine/schema.h"

namespace conv::engine {

struct Claim {
  Claim* next;
  uint64_t mask;
  uint64_t ts_max;
  uint32_t source;
  uint32_t values_len;
  bool uniform;

  const uint64_t* ts_array() const { return reinterpret_cast<const uint64_t*>(this + 1); }
  std::string_view values() const {
    const char* base = reinterpret_cast<const char*>(this + 1);
    if (!uniform) base += sizeof(uint64_t) * static_cast<size_t>(PopCount(mask));
    return {base, values_len};
  }
  // Timestamp of field `i`. REQUIRES: mask has bit i.
  uint64_t FieldTs(int i) const {
    if (uniform) return ts_max;
    return ts_array()[PopCount(mask & ((uint64_t{1} << i) - 1))];
  }
};

// Builds a claim setting exactly `mask` with `values`, all at timestamp `ts`.
Claim* NewUniformClaim(uint32_t source, uint64_t mask, uint64_t ts, std::string_view values);
// Builds the claim `old` would become after a PATCH setting `patch_mask` to
// `patch_values` at `ts`. `old` may be null (a partial claim is created).
Claim* PatchClaim(const Schema& schema, const Claim* old, uint32_t source, uint64_t patch_mask,
                  std::string_view patch_values, uint64_t ts);
// Rebuilds a claim from its logged form: per-field timestamps `ts` (one per present
// field, in field order) and `values`.
Claim* RestoreNonUniformClaim(uint32_t source, uint64_t mask, uint64_t ts_max, const uint64_t* ts,
                              std::string_view values);
void FreeClaim(Claim* claim);

// Heap bytes a claim block takes (for memory accounting).
size_t ClaimBytes(const Claim* claim);

}  // namespace conv::engine
