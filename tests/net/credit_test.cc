// Writer credits (net/credit.h, docs/protocol.md "Flow control"): one I/O thread's
// budget is what was acknowledged to its constrained writers per unit of time times
// the target latency, shared equally; a writer's credit follows its share where it
// matters, and falls by at most half at a time.

#include "net/credit.h"

#include <doctest/doctest.h>

#include <vector>

using conv::net::CreditBudget;
using conv::net::WriterCredit;

namespace {

void Consume(WriterCredit& c, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i)
    c.Consumed();
}

}  // namespace

TEST_CASE("credit: the target is two windows plus the least cut-to-durable time") {
  CHECK(CreditBudget::Target(10'000, 1'500) == 21'500);
  CHECK(CreditBudget::Target(1'000, 0) == 2'000);
}

TEST_CASE("credit: the share is the acknowledged rate times the target, split equally") {
  CreditBudget b;
  // 9 writers had 25,000 ops acknowledged in 10 ms (2.5M ops/s); target 20 ms:
  // 50,000 ops in flight in all, 5,555 each.
  CHECK(b.Share(25'000, 9, 1'000'000, 20'000) == 25'000 / 9);  // the first counts a whole target
  uint64_t s = b.Share(25'000, 9, 1'010'000, 20'000);
  CHECK(s == 50'000 / 9);
  // A faster window is taken at once; a slower one only in part.
  CHECK(b.Share(50'000, 9, 1'020'000, 20'000) == 100'000 / 9);
  uint64_t slower = b.Share(25'000, 9, 1'030'000, 20'000);
  CHECK(slower < 100'000 / 9);
  CHECK(slower > 50'000 / 9);
  // Nobody constrained: nothing to share.
  CHECK(b.Share(25'000, 0, 1'040'000, 20'000) == 0);
}

TEST_CASE("credit: an idle gap does not count as a slow server") {
  CreditBudget b;
  uint64_t before = b.Share(20'000, 4, 1'000'000, 20'000);
  // One minute without acknowledgements, then the same amount in one window.
  uint64_t after = b.Share(20'000, 4, 61'000'000, 20'000);
  CHECK(after == before);
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
  WriterCredit c;
  Consume(c, WriterCredit::kInitial);
  c.Acked(WriterCredit::kInitial - 100);
  CHECK(c.Offer(3'000) == 3'000);  // it had 4096 unacknowledged since the last offer
  CHECK(c.Offer(1) == 0);          // 100 since: within any cut, nothing to announce
  WriterCredit d;
  Consume(d, 2'500);
  CHECK(d.Offer(3'000) == 0);  // never had more than 3000
  CHECK(d.credit() == WriterCredit::kInitial);
}

TEST_CASE("credit: successive cuts halve at most, down to the minimum") {
  WriterCredit c;
  Consume(c, WriterCredit::kInitial);
  std::vector<uint64_t> got;
  for (int i = 0; i < 10; ++i) {
    if (uint64_t a = c.Offer(1)) got.push_back(a);
    Consume(c, WriterCredit::kInitial);  // keeps far more than any credit in flight
  }
  REQUIRE(got.size() >= 4);
  uint64_t prev = WriterCredit::kInitial;
  for (uint64_t a : got) {
    CHECK(a == std::max(prev / 2, WriterCredit::kMin));
    prev = a;
  }
  CHECK(c.credit() == WriterCredit::kMin);
}

TEST_CASE("credit: the server pauses a writer at twice its credit") {
  WriterCredit c;
  Consume(c, 2 * WriterCredit::kInitial - 1);
  CHECK_FALSE(c.over_limit());
  c.Consumed();
  CHECK(c.over_limit());
  c.Acked(1);
  CHECK_FALSE(c.over_limit());
  CHECK(c.unacked() == 2 * WriterCredit::kInitial - 1);
}
