#include "engine/claim.h"

#include <cstdlib>
#include <cstring>
#include <new>

namespace conv::engine {

namespace {

Claim* Allocate(size_t ts_count, size_t values_len) {
  size_t bytes = sizeof(Claim) + ts_count * sizeof(uint64_t) + values_len;
  void* mem = std::malloc(bytes);
  if (mem == nullptr) throw std::bad_alloc();
  return static_cast<Claim*>(mem);
}

}  // namespace

Claim* NewUniformClaim(uint32_t source, uint64_t mask, uint64_t ts, std::string_view values) {
  Claim* c = Allocate(0, values.size());
  c->next = nullptr;
  c->mask = mask;
  c->ts_max = ts;
  c->source = source;
  c->values_len = static_cast<uint32_t>(values.size());
  c->uniform = true;
  if (!values.empty()) std::memcpy(c + 1, values.data(), values.size());
  return c;
}

Claim* PatchClaim(const Schema& schema, const Claim* old, uint32_t source, uint64_t patch_mask,
                  std::string_view patch_values, uint64_t ts) {
  if (old == nullptr || (old->mask & ~patch_mask) == 0) {
    // Nothing of the old claim survives: the patch is the whole claim.
    return NewUniformClaim(source, patch_mask, ts, patch_values);
  }
  std::string_view old_slices[kMaxFields];
  std::string_view new_slices[kMaxFields];
  SliceFields(schema, old->mask, old->values(), old_slices);
  SliceFields(schema, patch_mask, patch_values, new_slices);

  uint64_t mask = old->mask | patch_mask;
  uint64_t ts_by_field[kMaxFields];
  size_t values_len = 0;
  uint64_t ts_max = 0;
  bool uniform = true;
  uint64_t first_ts = 0;
  bool have_first = false;
  for (uint64_t m = mask; m != 0; m &= m - 1) {
    int i = __builtin_ctzll(m);
    bool from_patch = (patch_mask >> i) & 1;
    uint64_t t = from_patch ? ts : old->FieldTs(i);
    ts_by_field[i] = t;
    values_len += from_patch ? new_slices[i].size() : old_slices[i].size();
    if (t > ts_max) ts_max = t;
    if (!have_first) {
      first_ts = t;
      have_first = true;
    } else if (t != first_ts) {
      uniform = false;
    }
  }
  size_t n = static_cast<size_t>(PopCount(mask));
  Claim* c = Allocate(uniform ? 0 : n, values_len);
  c->next = nullptr;
  c->mask = mask;
  c->ts_max = ts_max;
  c->source = source;
  c->values_len = static_cast<uint32_t>(values_len);
  c->uniform = uniform;
  auto* ts_out = reinterpret_cast<uint64_t*>(c + 1);
  char* out = reinterpret_cast<char*>(c + 1) + (uniform ? 0 : n * sizeof(uint64_t));
  for (uint64_t m = mask; m != 0; m &= m - 1) {
    int i = __builtin_ctzll(m);
    bool from_patch = (patch_mask >> i) & 1;
    std::string_view s = from_patch ? new_slices[i] : old_slices[i];
    std::memcpy(out, s.data(), s.size());
    out += s.size();
    if (!uniform) *ts_out++ = ts_by_field[i];
  }
  return c;
}

Claim* RestoreNonUniformClaim(uint32_t source, uint64_t mask, uint64_t ts_max, const uint64_t* ts,
                              std::string_view values) {
  size_t n = static_cast<size_t>(PopCount(mask));
  Claim* c = Allocate(n, values.size());
  c->next = nullptr;
  c->mask = mask;
  c->ts_max = ts_max;
  c->source = source;
  c->values_len = static_cast<uint32_t>(values.size());
  c->uniform = false;
  std::memcpy(c + 1, ts, n * sizeof(uint64_t));
  if (!values.empty()) {
    std::memcpy(reinterpret_cast<char*>(c + 1) + n * sizeof(uint64_t), values.data(),
                values.size());
  }
  return c;
}

void FreeClaim(Claim* claim) {
  std::free(claim);
}

size_t ClaimBytes(const Claim* claim) {
  size_t ts = claim->uniform ? 0 : static_cast<size_t>(PopCount(claim->mask));
  return sizeof(Claim) + ts * sizeof(uint64_t) + claim->values_len;
}

}  // namespace conv::engine
