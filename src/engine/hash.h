#pragma once

#include <cstdint>
#include <string_view>

namespace conv::engine {

// The one function that maps an entity to its partition. Stable within a process
// run; the WAL stores entities by key, never by partition, so the partition count
// may change across restarts.
inline uint64_t EntityHash(uint32_t schema, std::string_view id) {
  // FNV-1a over the schema id and the id bytes, then a murmur3 finalizer so that
  // the low bits (used for the modulo) depend on every input byte.
  uint64_t h = 0xcbf29ce484222325ULL ^ schema;
  for (char c : id) {
    h ^= static_cast<uint8_t>(c);
    h *= 0x100000001b3ULL;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

}  // namespace conv::engine
