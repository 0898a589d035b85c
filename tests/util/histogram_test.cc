// util::Histogram: log-linear buckets, percentiles within 1/64 of the true value.

#include "util/histogram.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

using conv::util::Histogram;

namespace {

// The exact value at quantile q of `sorted` (nearest rank, as Percentile defines it).
uint64_t Exact(const std::vector<uint64_t>& sorted, double q) {
  auto rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  return sorted[std::max<size_t>(rank, 1) - 1];
}

}  // namespace

TEST_CASE("histogram: an empty histogram reports zeros") {
  Histogram h;
  CHECK(h.count() == 0);
  CHECK(h.Percentile(0.5) == 0);
  CHECK(h.min() == 0);
  CHECK(h.max() == 0);
}

TEST_CASE("histogram: values below 64 are exact and every value maps inside its bucket") {
  Histogram h;
  for (uint64_t v = 0; v < 64; ++v)
    h.Record(v);
  for (uint64_t v = 1; v <= 64; ++v)
    CHECK(h.Percentile(static_cast<double>(v) / 64) == v - 1);
  std::mt19937_64 rng(4242);
  MESSAGE("histogram bucket property: seed 4242");
  for (int i = 0; i < 100000; ++i) {
    uint64_t v = rng() >> (rng() % 64);
    int b = Histogram::Index(v);
    REQUIRE(b >= 0);
    REQUIRE(b < Histogram::kBuckets);
    CHECK(Histogram::UpperBound(b) >= v);
    if (b > 0) CHECK(Histogram::UpperBound(b - 1) < v);
  }
  CHECK(Histogram::Index(UINT64_MAX) == Histogram::kBuckets - 1);
}

TEST_CASE("histogram: percentiles are within 1/64 of the exact value") {
  const uint64_t seed = 777;
  MESSAGE("histogram percentile error: seed ", seed);
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<double> latency(9.0, 1.5);  // ns, around 8 µs with a long tail
  for (int trial = 0; trial < 20; ++trial) {
    Histogram h;
    std::vector<uint64_t> values;
    for (int i = 0; i < 20000; ++i) {
      auto v = static_cast<uint64_t>(latency(rng));
      values.push_back(v);
      h.Record(v);
    }
    std::sort(values.begin(), values.end());
    for (double q : {0.0, 0.01, 0.5, 0.9, 0.99, 0.999, 1.0}) {
      uint64_t exact = Exact(values, q);
      uint64_t got = h.Percentile(q);
      CHECK(got >= exact);  // the bucket's upper end, never below the true value
      CHECK(static_cast<double>(got - exact) <= static_cast<double>(exact) / 64.0 + 1);
    }
    CHECK(h.Percentile(1.0) == values.back());
    CHECK(h.min() == values.front());
    CHECK(h.max() == values.back());
  }
}

TEST_CASE("histogram: merging equals recording everything in one") {
  Histogram a, b, all;
  for (uint64_t v = 1; v < 100000; v += 7) {
    (v % 2 ? a : b).Record(v);
    all.Record(v);
  }
  a.Merge(b);
  CHECK(a.count() == all.count());
  CHECK(a.min() == all.min());
  CHECK(a.max() == all.max());
  CHECK(a.mean() == doctest::Approx(all.mean()));
  for (double q : {0.1, 0.5, 0.99, 0.999})
    CHECK(a.Percentile(q) == all.Percentile(q));
}

TEST_CASE("histogram: recording n samples at once equals recording each") {
  Histogram batched, single;
  uint64_t n = 0;
  for (uint64_t v = 3; v < 50000000; v = v * 3 + 1) {
    ++n;
    batched.Record(v, n);
    for (uint64_t i = 0; i < n; ++i)
      single.Record(v);
  }
  batched.Record(12345, 0);  // nothing
  CHECK(batched.count() == single.count());
  CHECK(batched.min() == single.min());
  CHECK(batched.max() == single.max());
  CHECK(batched.mean() == doctest::Approx(single.mean()));
  for (double q : {0.0, 0.1, 0.5, 0.99, 0.999, 1.0})
    CHECK(batched.Percentile(q) == single.Percentile(q));
}
