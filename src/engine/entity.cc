#include "engine/entity.h"

#include <vector>

namespace conv::engine {

Claim* FindClaim(const Entity& e, uint32_t source) {
  for (Claim* c = e.claims; c != nullptr && c->source <= source; c = c->next) {
    if (c->source == source) return c;
  }
  return nullptr;
}

Claim** FindLink(Entity& e, uint32_t source) {
  Claim** link = &e.claims;
  while (*link != nullptr && (*link)->source < source)
    link = &(*link)->next;
  return link;
}

void PutClaim(Entity& e, Claim* c) {
  PutClaimAt(FindLink(e, c->source), c);
}

void PutClaimAt(Claim** link, Claim* c) {
  if (*link != nullptr && (*link)->source == c->source) {
    Claim* old = *link;
    c->next = old->next;
    *link = c;
    FreeClaim(old);
    return;
  }
  c->next = *link;
  *link = c;
}

bool RemoveClaim(Entity& e, uint32_t source) {
  Claim** link = &e.claims;
  while (*link != nullptr && (*link)->source < source)
    link = &(*link)->next;
  if (*link == nullptr || (*link)->source != source) return false;
  Claim* old = *link;
  *link = old->next;
  FreeClaim(old);
  return true;
}

void FreeClaims(Entity& e) {
  while (e.claims != nullptr) {
    Claim* next = e.claims->next;
    FreeClaim(e.claims);
    e.claims = next;
  }
}

size_t ClaimCount(const Entity& e) {
  size_t n = 0;
  for (const Claim* c = e.claims; c != nullptr; c = c->next)
    ++n;
  return n;
}

namespace {

// True when (ts_a, name of a) > (ts_b, name of b).
bool Wins(uint64_t ts_a, const Claim* a, uint64_t ts_b, const Claim* b,
          const SourceTable& sources) {
  if (ts_a != ts_b) return ts_a > ts_b;
  return sources.Name(a->source) > sources.Name(b->source);
}

}  // namespace

void Converge(const Schema& schema, const Claim* claims, const SourceTable& sources,
              ConvergedRecord* out) {
  out->values.clear();
  if (claims == nullptr) {
    out->mask = 0;
    out->ts_max = 0;
    return;
  }
  if (claims->next == nullptr) {  // one claim: it is the converged state
    out->mask = claims->mask;
    out->ts_max = claims->ts_max;
    out->values.assign(claims->values());
    return;
  }
  const Claim* winner[kMaxFields] = {};
  uint64_t winner_ts[kMaxFields];
  uint64_t mask = 0;
  uint64_t ts_max = 0;
  for (const Claim* c = claims; c != nullptr; c = c->next) {
    mask |= c->mask;
    if (c->ts_max > ts_max) ts_max = c->ts_max;
    for (uint64_t m = c->mask; m != 0; m &= m - 1) {
      int i = __builtin_ctzll(m);
      uint64_t t = c->FieldTs(i);
      if (winner[i] == nullptr || Wins(t, c, winner_ts[i], winner[i], sources)) {
        winner[i] = c;
        winner_ts[i] = t;
      }
    }
  }
  // Slice each claim that won a field once, then copy values in field order.
  std::string_view slices[kMaxFields];
  const Claim* sliced = nullptr;
  std::string_view field_value[kMaxFields];
  for (const Claim* c = claims; c != nullptr; c = c->next) {
    bool wins_any = false;
    for (uint64_t m = c->mask; m != 0; m &= m - 1) {
      if (winner[__builtin_ctzll(m)] == c) {
        wins_any = true;
        break;
      }
    }
    if (!wins_any) continue;
    SliceFields(schema, c->mask, c->values(), slices);
    sliced = c;
    for (uint64_t m = c->mask; m != 0; m &= m - 1) {
      int i = __builtin_ctzll(m);
      if (winner[i] == sliced) field_value[i] = slices[i];
    }
  }
  for (uint64_t m = mask; m != 0; m &= m - 1)
    out->values.append(field_value[__builtin_ctzll(m)]);
  out->mask = mask;
  out->ts_max = ts_max;
}

}  // namespace conv::engine
