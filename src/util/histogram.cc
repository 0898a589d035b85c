#include "util/histogram.h"

#include <algorithm>
#include <cmath>

namespace conv::util {

void Histogram::Merge(const Histogram& other) {
  for (int i = 0; i < kBuckets; ++i)
    counts_[i] += other.counts_[i];
  count_ += other.count_;
  sum_ += other.sum_;
  max_ = std::max(max_, other.max_);
  min_ = std::min(min_, other.min_);
}

uint64_t Histogram::UpperBound(int i) {
  if (i < kSub) return static_cast<uint64_t>(i);
  int shift = i / kSub - 1;
  uint64_t sub = static_cast<uint64_t>(i % kSub) | kSub;
  uint64_t lo = sub << shift;
  return lo + ((uint64_t{1} << shift) - 1);
}

uint64_t Histogram::Percentile(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  auto rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_)));
  if (rank == 0) rank = 1;
  uint64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::min(UpperBound(i), max_);
  }
  return max_;
}

}  // namespace conv::util
