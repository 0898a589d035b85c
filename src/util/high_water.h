#pragma once

#include <algorithm>
#include <cstddef>

namespace conv::util {

// Keeps a reused buffer near the size its recent uses needed. A buffer that one burst
// grew (a window of a pipelined preload, a large seal) otherwise keeps that memory for
// the life of the process. Each use is noted; after `period` uses, when the buffer
// holds more than four times the most any of them needed, Note() returns the size to
// shrink it to (twice that most, at least `floor`); otherwise 0.
class HighWater {
 public:
  HighWater(size_t period, size_t floor) : period_(period), floor_(floor) {}

  size_t Note(size_t used, size_t capacity) {
    most_ = std::max(most_, used);
    if (++uses_ < period_) return 0;
    size_t most = most_;
    uses_ = 0;
    most_ = 0;
    size_t keep = std::max(most * 2, floor_);
    return capacity > std::max(most * 4, floor_) ? keep : 0;
  }

 private:
  const size_t period_;
  const size_t floor_;
  size_t uses_ = 0;
  size_t most_ = 0;
};

}  // namespace conv::util
