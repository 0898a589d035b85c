#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "engine/claim.h"
#include "engine/schema.h"
#include "engine/sources.h"

namespace conv::engine {

// An entity's id as the key of its partition's map: 16 bytes, the id inline when it
// has at most 15 bytes (the common case), else in a heap block of its own. It is
// half a std::string, and the map node holding it and its Entity is 24 bytes
// smaller. Never copied: a map node is built around it and stays put.
class EntityKey {
 public:
  static constexpr size_t kInline = 15;

  explicit EntityKey(std::string_view id) {
    if (id.size() <= kInline) {
      Inline(id, bytes_);
      return;
    }
    char* heap = new char[id.size()];
    std::memcpy(heap, id.data(), id.size());
    auto size = static_cast<uint64_t>(id.size());
    std::memcpy(bytes_, &heap, sizeof(heap));
    std::memcpy(bytes_ + sizeof(heap), &size, 7);  // ids are far below 2^56 bytes
    bytes_[kInline] = kHeap;
  }
  ~EntityKey() {
    if (on_heap()) delete[] heap();
  }
  EntityKey(const EntityKey&) = delete;
  EntityKey& operator=(const EntityKey&) = delete;

  std::string_view view() const noexcept {
    if (!on_heap()) return {bytes_, static_cast<size_t>(bytes_[kInline])};
    uint64_t size = 0;
    std::memcpy(&size, bytes_ + sizeof(char*), 7);
    return {heap(), static_cast<size_t>(size)};
  }
  operator std::string_view() const noexcept { return view(); }  // NOLINT: an id reads as its text
  // The map's hash of this key, equal to Hash(view()). An inline id is hashed as its
  // 16 bytes: two words, no loop (the map hashes a node's key again on each step along
  // a bucket's chain, since nodes keep no hash).
  size_t Hash() const noexcept { return on_heap() ? HashBytes(view()) : HashInline(bytes_); }
  static size_t Hash(std::string_view id) noexcept {
    if (id.size() > kInline) return HashBytes(id);
    char bytes[kInline + 1];
    Inline(id, bytes);
    return HashInline(bytes);
  }
  friend bool operator==(const EntityKey& a, std::string_view b) { return a.view() == b; }
  friend bool operator==(const EntityKey& a, const EntityKey& b) { return a.view() == b.view(); }

 private:
  static constexpr char kHeap = -1;
  // An id of at most kInline bytes as this key holds it: the bytes, zeros, the size.
  static void Inline(std::string_view id, char* out) noexcept {
    std::memset(out, 0, kInline);
    if (!id.empty()) std::memcpy(out, id.data(), id.size());
    out[kInline] = static_cast<char>(id.size());
  }
  static size_t HashInline(const char* bytes) noexcept {
    uint64_t a, b;
    std::memcpy(&a, bytes, 8);
    std::memcpy(&b, bytes + 8, 8);
    uint64_t h = (a ^ (b * 0x9e3779b97f4a7c15ULL)) * 0xd6e8feb86659fd93ULL;
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ULL;
    return static_cast<size_t>(h ^ (h >> 32));
  }
  static size_t HashBytes(std::string_view id) noexcept {
    return std::hash<std::string_view>{}(id);
  }
  bool on_heap() const { return bytes_[kInline] == kHeap; }
  char* heap() const {
    char* p;
    std::memcpy(&p, bytes_, sizeof(p));
    return p;
  }
  char bytes_[kInline + 1];
};
static_assert(sizeof(EntityKey) == 16);

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
