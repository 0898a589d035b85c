#include "util/crc32c.h"

#include <array>
#include <cstring>

namespace conv::util::crc32c {

namespace {

constexpr uint32_t kPoly = 0x82f63b78u;  // reflected Castagnoli polynomial

constexpr std::array<std::array<uint32_t, 256>, 8> MakeTables() {
  std::array<std::array<uint32_t, 256>, 8> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k)
      c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
    t[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; ++i) {
    for (int s = 1; s < 8; ++s)
      t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
  }
  return t;
}

constexpr auto kTables = MakeTables();

// Both take and return the CRC register (the complement of the CRC).
uint32_t RegisterPortable(uint32_t crc, const char* p, size_t n) {
  auto* b = reinterpret_cast<const uint8_t*>(p);
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, b, 8);
    v ^= crc;
    crc = kTables[7][v & 0xff] ^ kTables[6][(v >> 8) & 0xff] ^ kTables[5][(v >> 16) & 0xff] ^
          kTables[4][(v >> 24) & 0xff] ^ kTables[3][(v >> 32) & 0xff] ^
          kTables[2][(v >> 40) & 0xff] ^ kTables[1][(v >> 48) & 0xff] ^ kTables[0][v >> 56];
    b += 8;
    n -= 8;
  }
  while (n-- > 0)
    crc = kTables[0][(crc ^ *b++) & 0xff] ^ (crc >> 8);
  return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t RegisterHardware(uint32_t crc, const char* p, size_t n) {
  uint64_t c = crc;
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c = __builtin_ia32_crc32di(c, v);
    p += 8;
    n -= 8;
  }
  auto c32 = static_cast<uint32_t>(c);
  while (n-- > 0)
    c32 = __builtin_ia32_crc32qi(c32, static_cast<uint8_t>(*p++));
  return c32;
}
const bool kHaveHardware = __builtin_cpu_supports("sse4.2");
#endif

}  // namespace

uint32_t Extend(uint32_t init, const char* data, size_t n) {
#if defined(__x86_64__)
  if (kHaveHardware) return ~RegisterHardware(~init, data, n);
#endif
  return ~RegisterPortable(~init, data, n);
}

uint32_t ExtendPortable(uint32_t init, const char* data, size_t n) {
  return ~RegisterPortable(~init, data, n);
}

bool HaveHardware() {
#if defined(__x86_64__)
  return kHaveHardware;
#else
  return false;
#endif
}

}  // namespace conv::util::crc32c
