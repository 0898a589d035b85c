#pragma once

#include <chrono>
#include <cstdint>

namespace conv::util {

// Microseconds since the Unix epoch (the convention for op timestamps).
inline uint64_t WallMicros() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

// Monotonic nanoseconds, for measuring intervals.
inline uint64_t MonoNanos() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace conv::util
