// Flow control (docs/protocol.md, "Flow control"): writers get a credit in WELCOME;
// one that keeps within it is never paused, one far past it is paused, never failed,
// and every op it sent is applied and acknowledged exactly once. And what a QUERY
// sees: every op acknowledged before it was sent, property-tested with concurrent
// writers (fixed seed, printed; CONV_SEED overrides it).

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "net/credit.h"
#include "support/op_model.h"
#include "support/test_server.h"

using namespace conv;
using net::FrameType;
using testing::Player;
using testing::Stat;
using testing::WaitForAck;

namespace {

// Writes ops 1..n of source 0 of `gen` through `c` in Sends of `batch` ops, then
// waits for the ACK of n.
void WriteAll(net::Client& c, const testing::OpGenerator& gen, uint64_t n, uint64_t batch) {
  std::string frames;
  for (uint64_t seq = 1; seq <= n; ++seq) {
    frames += gen.Frame(0, seq);
    if (seq % batch == 0 || seq == n) {
      auto st = c.Send(frames);
      REQUIRE_MESSAGE(st.ok(), st.message());
      frames.clear();
    }
  }
  REQUIRE(WaitForAck(c, n));
}

void CheckState(testing::TestServer& ts, const testing::OpGenerator& gen, const std::string& source,
                uint64_t n) {
  testing::StateModel model(gen.schema());
  for (uint64_t seq = 1; seq <= n; ++seq)
    model.Apply(source, gen.Op(0, seq));
  auto reader = ts.Connect();
  auto got = testing::QueryState(*reader, gen.schema(), gen.EntityIds());
  REQUIRE_MESSAGE(got.ok(), got.message());
  CHECK_MESSAGE(*got == model.State(), testing::DescribeDifference(model.State(), *got));
}

}  // namespace

TEST_CASE("flow control: WELCOME gives a writer its credit and a reader none") {
  testing::TestServer ts;
  auto w = ts.Connect("w");
  CHECK(w->welcome().credit == net::WriterCredit::kInitial);
  CHECK(w->credit() == net::WriterCredit::kInitial);
  auto r = ts.Connect();
  CHECK(r->welcome().credit == 0);
}

TEST_CASE("flow control: a writer far past its credit is paused, not failed, and nothing is lost") {
  testing::TestServer ts;
  auto w = ts.Connect("w");
  w->set_obey_credit(false);
  const engine::Schema& p = Player(*w);
  testing::OpGenerator gen(p, 7, 20'000);
  // Ten times the limit in one Send: the server stops reading at twice the credit
  // and goes on as ACKs come.
  constexpr uint64_t kOps = 20 * net::WriterCredit::kInitial;
  WriteAll(*w, gen, kOps, kOps);
  CHECK(Stat(*w, "credit_waits") > 0);
  CHECK(Stat(*w, "ops_applied") == kOps);
  CHECK(Stat(*w, "duplicates") == 0);
  CHECK(Stat(*w, "op_errors") == 0);
  CHECK_FALSE(w->closed());
  CheckState(ts, gen, "w", kOps);
}

TEST_CASE("flow control: a writer that keeps within its credit is never paused for it") {
  testing::TestServer ts;
  auto w = ts.Connect("w");
  const engine::Schema& p = Player(*w);
  testing::OpGenerator gen(p, 8, 20'000);
  constexpr uint64_t kOps = 20 * net::WriterCredit::kInitial;
  WriteAll(*w, gen, kOps, 256);
  CHECK(Stat(*w, "credit_waits") == 0);
  CHECK(Stat(*w, "ops_applied") == kOps);
  CHECK(w->unacked() == 0);
  CheckState(ts, gen, "w", kOps);
}

TEST_CASE("flow control: a QUERY sent after an ACK sees the acknowledged op, with writers racing") {
  const uint64_t seed = testing::TestSeed("CONV_SEED", 20261130);
  MESSAGE("seed ", seed, " (CONV_SEED replays it)");
  testing::TestServer ts;
  constexpr size_t kWriters = 4;
  constexpr size_t kEntities = 64;  // few, so that the writers' claims meet on each
  constexpr int kRounds = 40;
  auto probe = ts.Connect();
  testing::OpGenerator gen(Player(*probe), seed, kEntities);
  std::vector<std::string> failures(kWriters);
  std::vector<std::thread> threads;
  for (size_t k = 0; k < kWriters; ++k) {
    threads.emplace_back([&, k] {
      std::string source = fmt::format("w{}", k);
      auto w = ts.Connect(source);
      auto reader = ts.Connect();
      std::mt19937_64 rng(seed * 31 + k);
      testing::StateModel mine(gen.schema());  // this source's ops only
      uint64_t seq = 0;
      for (int round = 0; round < kRounds && failures[k].empty(); ++round) {
        // A random batch, sent in random pieces; then the ACK of its last op.
        uint64_t n = 1 + rng() % 300;
        std::string frames;
        for (uint64_t i = 0; i < n; ++i) {
          ++seq;
          frames += gen.Frame(k, seq);
          mine.Apply(source, gen.Op(k, seq));
          if (rng() % 16 == 0 || i + 1 == n) {
            if (auto st = w->Send(frames); !st.ok()) {
              failures[k] = st.message();
              return;
            }
            frames.clear();
          }
        }
        if (!WaitForAck(*w, seq)) {
          failures[k] = fmt::format("no ACK of {}", seq);
          return;
        }
        // At once, on this connection or another: this source's claims are exactly
        // what its acknowledged ops left, whatever the others do meanwhile.
        net::Client& via = rng() % 2 == 0 ? *w : *reader;
        auto got = testing::QueryState(via, gen.schema(), gen.EntityIds());
        if (!got.ok()) {
          failures[k] = got.message();
          return;
        }
        testing::StateByEntity want = mine.State();
        for (const std::string& id : gen.EntityIds()) {
          auto wi = want.find(id);
          auto gi = got->find(id);
          const testing::ExpectedClaim* want_claim =
              wi == want.end() ? nullptr : &wi->second.claims.at(source);
          const testing::ExpectedClaim* got_claim = nullptr;
          if (gi != got->end()) {
            auto c = gi->second.claims.find(source);
            if (c != gi->second.claims.end()) got_claim = &c->second;
          }
          bool same = want_claim == nullptr ? got_claim == nullptr
                                            : got_claim != nullptr && *got_claim == *want_claim;
          if (!same) {
            failures[k] =
                fmt::format("round {}: after the ACK of seq {}, {}'s claim on {} is {}", round, seq,
                            source, id, got_claim == nullptr ? "missing" : "stale");
            return;
          }
        }
      }
    });
  }
  for (auto& t : threads)
    t.join();
  for (size_t k = 0; k < kWriters; ++k)
    CHECK_MESSAGE(failures[k].empty(), "writer ", k, ": ", failures[k]);
}
