// Writer credits (net/credit.h, docs/protocol.md "Flow control"): one I/O thread's
// budget is what was acknowledged to its constrained writers per unit of time times
// a target latency that follows the queue in front of the partitions, shared
// equally; a writer's credit follows its share where it matters, and falls by at
// most half at a time.

#include "net/credit.h"

#include <doctest/doctest.h>

#include <vector>

using conv::net::CreditBudget;
using conv::net::WriterCredit;

namespace {

CreditBudget::Times Times(uint64_t window, uint64_t goal, uint64_t queue, uint64_t durable = 0,
                          uint64_t rtt = 0) {
  CreditBudget::Times t;
  t.window = window;
  t.goal = goal;
  t.queue = queue;
  t.durable = durable;
  t.rtt = rtt;
  return t;
}

void Consume(WriterCredit& c, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i)
    c.Consumed();
}

}  // namespace

TEST_CASE("credit: the share is the acknowledged rate times the target, split equally") {
  CreditBudget b;
  // 9 writers had 25,000 ops acknowledged in 10 ms (2.5 ops/us); the target starts
  // at two windows (20 ms) and, with the cut's queue within the goal, grows
  // by a quarter: 2.5 x 25,000 / 9. (Windows take 20 ms from cut to durable: the
  // ceiling, 1.25 x 30 ms, leaves room.)
  CHECK(b.Share(25'000, 9, 1'000'000, Times(10'000, 10'000, 1'000, 20'000)) ==
        25'000 * 25 / 10 / 9);
  CHECK(b.target() == 25'000);
  // Within the same window: nothing new.
  CHECK(b.Share(25'000, 9, 1'005'000, Times(10'000, 10'000, 1'000, 20'000)) == 0);
  // A window later, 50,000 ops over those 10 ms: the rate moves a quarter of the way
  // (2.5 -> 3.125 ops/us), the target grows another quarter.
  uint64_t s = b.Share(25'000, 9, 1'010'000, Times(10'000, 10'000, 1'000, 20'000));
  CHECK(s == static_cast<uint64_t>(3.125 * 31'250 / 9));
  // Nobody constrained: nothing to share, and the time does not count.
  CHECK(b.Share(25'000, 0, 1'020'000, Times(10'000, 10'000, 1'000)) == 0);
}

TEST_CASE("credit: the target shrinks in proportion to the queue past its goal") {
  CreditBudget b;
  b.Share(10'000, 1, 1'000'000, Times(10'000, 10'000, 0));
  double t = b.target();
  // The cut waited twice the goal behind queued ops: the target halves.
  b.Share(10'000, 1, 1'010'000, Times(10'000, 10'000, 20'000));
  CHECK(b.target() == doctest::Approx(t / 2));
  // A goal four times as long takes that queue as room to grow.
  double u = b.target();
  b.Share(10'000, 1, 1'020'000, Times(10'000, 40'000, 20'000));
  CHECK(b.target() == doctest::Approx(u * 1.25));
  // Never below one window, whatever the queue.
  for (int i = 0; i < 20; ++i)
    b.Share(10'000, 1, 1'020'000 + i * 10'000, Times(10'000, 10'000, 1'000'000));
  CHECK(b.target() == doctest::Approx(10'000));
  // Nor above two windows while the queue stays short and windows are durable at
  // their cut.
  for (int i = 0; i < 100; ++i)
    b.Share(10'000, 1, 2'000'000 + i * 10'000, Times(10'000, 10'000, 0));
  CHECK(b.target() == doctest::Approx(20'000));
}

TEST_CASE("credit: the ceiling covers a window and its way to durable, a quarter over") {
  CreditBudget b;
  // Windows of 10 ms durable 30 ms after their cut: an op sent just after an ACK
  // waits up to 40 ms for the next, so the target may reach 1.25 x 40 ms.
  for (int i = 0; i < 100; ++i)
    b.Share(10'000, 1, 1'000'000 + i * 10'000, Times(10'000, 10'000, 0, 30'000));
  CHECK(b.target() == doctest::Approx(50'000));
  CHECK(b.ceiling(10'000) == doctest::Approx(50'000));
  // The time to durable is smoothed: one slow window moves the ceiling a quarter of
  // the way, and it comes back down as windows are durable sooner again.
  b.Share(10'000, 1, 2'000'000, Times(10'000, 10'000, 0, 110'000));
  CHECK(b.ceiling(10'000) == doctest::Approx(1.25 * (10'000 + 50'000)));
  for (int i = 1; i <= 100; ++i)
    b.Share(10'000, 1, 2'000'000 + i * 10'000, Times(10'000, 10'000, 0, 2'000));
  CHECK(b.ceiling(10'000) == doctest::Approx(20'000));
  CHECK(b.target() == doctest::Approx(20'000));
  // A writer 60 ms away waits that much more for each ACK: the ceiling covers it, so
  // its credit still grows until the server, not the distance, is the limit.
  for (int i = 0; i < 100; ++i)
    b.Share(10'000, 1, 3'100'000 + i * 10'000, Times(10'000, 10'000, 0, 2'000, 60'000));
  CHECK(b.ceiling(10'000) == doctest::Approx(1.25 * (10'000 + 2'000 + 60'000)));
  CHECK(b.target() == doctest::Approx(1.25 * (10'000 + 2'000 + 60'000)));
  // Windows durable at once, writers next door: never below two windows.
  CreditBudget fresh;
  fresh.Share(10'000, 1, 1'000'000, Times(50'000, 10'000, 0, 0, 0));
  CHECK(fresh.ceiling(50'000) == doctest::Approx(100'000));
}

TEST_CASE("credit: an idle gap does not count as a slow server") {
  CreditBudget b;
  uint64_t before = b.Share(20'000, 4, 1'000'000, Times(10'000, 10'000, 0));
  // Nobody constrained for a minute, then the same amount in one window.
  CHECK(b.Share(0, 0, 31'000'000, Times(10'000, 10'000, 0)) == 0);
  uint64_t after = b.Share(20'000, 4, 61'000'000, Times(10'000, 10'000, 0));
  CHECK(after >= before);  // the rate is the same; the target grew a step
}

TEST_CASE("credit: a writer that never comes near its credit is never sent one") {
  WriterCredit c;
  for (int w = 0; w < 100; ++w) {
    Consume(c, 10);
    c.Acked(10);
    CHECK_FALSE(c.constrained());
    CHECK(c.Offer(WriterCredit::kMin) == 0);
    CHECK(c.Offer(WriterCredit::kMax) == 0);
  }
  CHECK(c.credit() == WriterCredit::kInitial);
}

TEST_CASE("credit: a raise goes to a writer that used half its credit") {
  WriterCredit c;
  Consume(c, WriterCredit::kInitial / 2);
  CHECK(c.constrained());
  CHECK(c.Offer(WriterCredit::kInitial + WriterCredit::kInitial / 16) == 0);  // under 1/8
  Consume(c, 1);
  CHECK(c.Offer(10'000) == 10'000);
  CHECK(c.credit() == 10'000);
  CHECK(c.limit() == 20'000);
  CHECK(c.Offer(uint64_t{1} << 40) == 0);  // peak was reset: not constrained since
  Consume(c, 6'000);
  CHECK(c.Offer(uint64_t{1} << 40) == WriterCredit::kMax);
}

TEST_CASE("credit: a cut falls by at most half and only for a writer over the new credit") {
  constexpr uint64_t kCut = WriterCredit::kInitial * 3 / 4;
  WriterCredit c;
  Consume(c, WriterCredit::kInitial);
  c.Acked(WriterCredit::kInitial - 100);
  CHECK(c.Offer(kCut) == kCut);  // it had its whole credit unacknowledged since the last offer
  CHECK(c.Offer(1) == 0);        // 100 since: within any cut, nothing to announce
  WriterCredit d;
  Consume(d, kCut - 10);
  CHECK(d.Offer(kCut) == 0);  // never had more than the new credit
  CHECK(d.credit() == WriterCredit::kInitial);
}

TEST_CASE("credit: successive cuts halve at most, down to the minimum") {
  WriterCredit c;
  c.Offer(16 * WriterCredit::kMin);  // not constrained: stays
  Consume(c, WriterCredit::kInitial);
  REQUIRE(c.Offer(16 * WriterCredit::kMin) == 16 * WriterCredit::kMin);
  std::vector<uint64_t> got;
  for (int i = 0; i < 10; ++i) {
    Consume(c, 16 * WriterCredit::kMin);  // keeps far more than any credit in flight
    if (uint64_t a = c.Offer(1)) got.push_back(a);
  }
  CHECK(got == std::vector<uint64_t>{8 * WriterCredit::kMin, 4 * WriterCredit::kMin,
                                     2 * WriterCredit::kMin, WriterCredit::kMin});
  CHECK(c.credit() == WriterCredit::kMin);
}

TEST_CASE("credit: the server pauses a writer past twice its credit") {
  WriterCredit c;
  Consume(c, 2 * WriterCredit::kInitial);
  CHECK_FALSE(c.over_limit());  // what a writer that obeyed a credit twice as large has
  c.Consumed();
  CHECK(c.over_limit());
  c.Acked(1);
  CHECK_FALSE(c.over_limit());
  CHECK(c.unacked() == 2 * WriterCredit::kInitial);
}
