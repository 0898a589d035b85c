#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace conv::util::crc32c {

// CRC-32C (Castagnoli) of `data`, continuing from `init` (0 for a fresh CRC).
// Uses the SSE4.2 instruction when the CPU has it.
uint32_t Extend(uint32_t init, const char* data, size_t n);
// Extend without the SSE4.2 instruction (the path taken on CPUs without it), and
// whether Extend uses the instruction here: for tests that hold both paths equal.
uint32_t ExtendPortable(uint32_t init, const char* data, size_t n);
bool HaveHardware();

inline uint32_t Value(const char* data, size_t n) {
  return Extend(0, data, n);
}
inline uint32_t Value(std::string_view s) {
  return Extend(0, s.data(), s.size());
}

// A CRC stored next to the data it covers could match data that itself contains
// CRCs; masking (as leveldb does) avoids that.
constexpr uint32_t kMaskDelta = 0xa282ead8u;
inline uint32_t Mask(uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + kMaskDelta;
}
inline uint32_t Unmask(uint32_t masked) {
  uint32_t rot = masked - kMaskDelta;
  return (rot >> 17) | (rot << 15);
}

}  // namespace conv::util::crc32c
