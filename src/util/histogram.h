#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace conv::util {

// A log-linear histogram of non-negative integer values (latencies in ns): values
// below 2^kSubBits are exact; above, each power of two is split into 2^kSubBits
// buckets, so a reported percentile is within 1/2^kSubBits (1.6%) of the true
// value. Fixed size, no allocation per record. Not thread-safe: one per thread,
// then Merge.
class Histogram {
 public:
  static constexpr int kSubBits = 6;
  static constexpr int kSub = 1 << kSubBits;
  static constexpr int kBuckets = (64 - kSubBits + 1) * kSub;

  Histogram() : counts_(kBuckets, 0) {}

  void Record(uint64_t v) { Record(v, 1); }
  // Records `n` samples of value `v` (e.g. a batch of ops that share one latency).
  void Record(uint64_t v, uint64_t n) {
    if (n == 0) return;
    counts_[Index(v)] += n;
    count_ += n;
    sum_ += v * n;
    if (v > max_) max_ = v;
    if (v < min_) min_ = v;
  }
  void Merge(const Histogram& other);

  uint64_t count() const { return count_; }
  uint64_t max() const { return max_; }
  uint64_t min() const { return count_ == 0 ? 0 : min_; }
  double mean() const {
    return count_ == 0 ? 0 : static_cast<double>(sum_) / static_cast<double>(count_);
  }
  // The value at quantile q in [0, 1] (the upper end of its bucket, capped at max).
  uint64_t Percentile(double q) const;
  // Calls f(value, count) for every non-empty bucket, in increasing order of value:
  // the bucket's upper end capped at max(), and how many samples it holds.
  template <typename F>
  void ForEachBucket(F&& f) const {
    for (int i = 0; i < kBuckets; ++i) {
      if (counts_[i] == 0) continue;
      uint64_t v = UpperBound(i);
      f(v < max_ ? v : max_, counts_[i]);
    }
  }

  static int Index(uint64_t v) {
    if (v < kSub) return static_cast<int>(v);
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - kSubBits;
    return (shift + 1) * kSub + static_cast<int>((v >> shift) & (kSub - 1));
  }
  // Largest value that maps to bucket `i`.
  static uint64_t UpperBound(int i);

 private:
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
  uint64_t max_ = 0;
  uint64_t min_ = UINT64_MAX;
};

}  // namespace conv::util
