// WriterCredit, the rule that sizes a writer's credit (docs/protocol.md, "Flow
// control"): what the server acknowledged for the writer over one cycle, with
// headroom; announced only where it matters; lowered by at most half at a time.

#include "net/credit.h"

#include <doctest/doctest.h>

#include <vector>

using conv::net::WriterCredit;

namespace {

// `n` ops consumed at `at`.
void Consume(WriterCredit& c, uint64_t n, uint64_t at) {
  for (uint64_t i = 0; i < n; ++i)
    c.Consumed(at);
}

}  // namespace

TEST_CASE("credit: a writer that never comes near its credit is never sent one") {
  WriterCredit c;
  uint64_t t = 1'000;
  for (int w = 0; w < 100; ++w) {
    Consume(c, 10, t);
    t += 12'000;
    CHECK(c.Acked(10, t, 12'000) == 0);
  }
  CHECK(c.credit() == WriterCredit::kInitial);
  CHECK(c.unacked() == 0);
}

TEST_CASE("credit: a writer the server serves faster than a cycle is granted more") {
  WriterCredit c;
  uint64_t t = 1'000;
  // The whole credit acknowledged after 8 ms with a 13 ms cycle: 4096 / 8 ms x 13 ms
  // x 1.25 = 8320.
  Consume(c, WriterCredit::kInitial, t);
  t += 8'000;
  uint64_t got = c.Acked(WriterCredit::kInitial, t, 13'000);
  CHECK(got == 8320);
  CHECK(c.credit() == 8320);
  CHECK(c.limit() == 2 * 8320);
}

TEST_CASE("credit: at saturation the credit is the writer's share of one cycle") {
  WriterCredit c;
  uint64_t t = 1'000;
  // 9 writers sharing 2.5M ops/s: this one gets ~2,778 ops acknowledged per 10 ms and
  // keeps the whole credit in flight. Credit -> 2778 x 1.3 x 1.25 ~ 4514 (no
  // announcement: within 1/8 of 4096), then holds.
  Consume(c, WriterCredit::kInitial, t);
  for (int w = 0; w < 50; ++w) {
    t += 10'000;
    c.Acked(2'778, t, 13'000);
    Consume(c, 2'778, t);
  }
  CHECK(c.credit() == WriterCredit::kInitial);
  // 100 writers: 250 ops per window (a credit of 250 / 10 ms x 13 ms x 1.25 = 406).
  // The credit falls, smoothed and by at most half at a time, and settles within 1/8
  // of that.
  std::vector<uint64_t> announced;
  for (int w = 0; w < 50; ++w) {
    t += 10'000;
    if (uint64_t a = c.Acked(250, t, 13'000)) announced.push_back(a);
    Consume(c, 250, t);
  }
  REQUIRE(announced.size() >= 3);
  uint64_t prev = WriterCredit::kInitial;
  for (uint64_t a : announced) {
    CHECK(a < prev);
    CHECK(a >= prev / 2);
    prev = a;
  }
  CHECK(c.credit() >= 406);
  CHECK(c.credit() <= 464);
}

TEST_CASE("credit: bounds, and the limit past which the server stops reading") {
  WriterCredit c;
  uint64_t t = 1'000;
  Consume(c, 2 * WriterCredit::kInitial - 1, t);
  CHECK_FALSE(c.over_limit());
  c.Consumed(t);
  CHECK(c.over_limit());
  // A huge rate is capped at kMax.
  for (int i = 0; i < 3; ++i) {
    t += 10;
    uint64_t n = c.unacked();
    c.Acked(n, t, 13'000);
    Consume(c, c.credit(), t);
  }
  CHECK(c.credit() == WriterCredit::kMax);
  // A trickle while the writer holds its whole credit: never below kMin.
  for (int i = 0; i < 100; ++i) {
    t += 1'000'000;
    c.Acked(1, t, 13'000);
    c.Consumed(t);
  }
  CHECK(c.credit() == WriterCredit::kMin);
}

TEST_CASE("credit: time the writer had nothing in flight does not count against it") {
  WriterCredit c;
  uint64_t t = 1'000;
  Consume(c, WriterCredit::kInitial, t);
  t += 8'000;
  uint64_t raised = c.Acked(WriterCredit::kInitial, t, 13'000);
  REQUIRE(raised == 8320);
  // Idle for a minute, then the same burst served as fast: the rate is measured from
  // when the burst started, so the credit is not cut.
  t += 60'000'000;
  Consume(c, raised, t);
  t += 8'000;
  uint64_t again = c.Acked(raised, t, 13'000);
  CHECK(again != 0);
  CHECK(c.credit() >= raised);
}
