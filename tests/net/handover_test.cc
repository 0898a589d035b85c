// The hand-over between connections of one source: WELCOME's last_applied_seq is
// exactly the seq the server de-duplicates against, all of it durable, so a writer
// that reconnects (resending, or forgetting what it sent and numbering anew from
// WELCOME) never has an op skipped while being told it was applied. A property test
// of crash-and-renumber writers (fixed seed, printed; CONV_SEED overrides it), the
// reported regressions, and the rule for seqs that do not increase.

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "support/op_model.h"
#include "support/test_server.h"
#include "util/coding.h"

using namespace conv;
using net::FrameType;
using testing::ErrorOf;
using testing::IsType;
using testing::Player;
using testing::Record;
using testing::WaitForAck;
using testing::WriteFrame;

namespace {

constexpr uint64_t kPlayer = engine::kPlayerSchemaId;

std::unique_ptr<net::Client> ConnectAs(testing::TestServer& ts, const std::string& source) {
  return ts.Connect(source);
}

int64_t Score(net::Client& c, const engine::Schema& p, const std::string& id) {
  auto r = c.Query(p, id, false);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
  if (!r->found) return -1;
  return testing::I64Field(p, r->record, "score");
}

std::string PatchScore(const engine::Schema& p, uint64_t seq, const std::string& id,
                       int64_t score) {
  return WriteFrame(FrameType::kPatch, seq, 0, kPlayer, id, Record(p, {{"score", score}}));
}

}  // namespace

TEST_CASE("handover: a writer that closed without reading is reported with its applied seq") {
  testing::TestServer ts;
  std::string frames;
  {
    auto w = ConnectAs(ts, "w");
    const engine::Schema& p = Player(*w);
    for (uint64_t seq = 1; seq <= 3; ++seq)
      frames += PatchScore(p, seq, "e", static_cast<int64_t>(seq));
    REQUIRE(w->Send(frames).ok());
  }                                                             // closed at once, nothing read
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // applied and durable by now
  auto w = ConnectAs(ts, "w");
  const engine::Schema& p = Player(*w);
  CHECK(w->welcome().last_applied_seq == 3);
  CHECK(Score(*w, p, "e") == 3);
  // As docs/protocol.md tells a writer that lost track: number from WELCOME on.
  REQUIRE(w->Send(PatchScore(p, 4, "e", 1000)).ok());
  REQUIRE(WaitForAck(*w, 4));
  CHECK(Score(*w, p, "e") == 1000);
}

TEST_CASE("handover: a reconnect right after the close waits until what was sent is durable") {
  testing::TestServer ts;
  for (int round = 0; round < 20; ++round) {
    uint64_t base;
    {
      auto w = ConnectAs(ts, "fast");
      base = w->welcome().last_applied_seq;
      const engine::Schema& p = Player(*w);
      std::string frames;
      for (uint64_t i = 1; i <= 50; ++i)
        frames += PatchScore(p, base + i, "e", static_cast<int64_t>(base + i));
      REQUIRE(w->Send(frames).ok());
    }
    auto w = ConnectAs(ts, "fast");
    const engine::Schema& p = Player(*w);
    uint64_t m = w->welcome().last_applied_seq;
    // The closed connection's ops were read in part or in whole; whatever WELCOME
    // says was applied is exactly what the entity shows.
    CHECK(m >= base);
    CHECK(m <= base + 50);
    CHECK(Score(*w, p, "e") == (m == 0 ? -1 : static_cast<int64_t>(m)));
    REQUIRE(w->Send(PatchScore(p, m + 1, "e", -5)).ok());
    REQUIRE(WaitForAck(*w, m + 1));
    CHECK(Score(*w, p, "e") == -5);
    REQUIRE(w->Send(PatchScore(p, m + 2, "e", static_cast<int64_t>(m + 2))).ok());
    REQUIRE(WaitForAck(*w, m + 2));
  }
}

TEST_CASE("handover: a takeover storm keeps every acknowledged op") {
  // Two connections of one source alternate: each says HELLO (taking over the
  // other, whose ops are still in flight), then writes from WELCOME on without
  // waiting. Every op sets score = seq, so the entity's score is the source's highest
  // applied seq.
  testing::TestServer ts;
  std::unique_ptr<net::Client> live[2];
  uint64_t max_acked = 0;
  uint64_t welcomes = 0;
  for (int round = 0; round < 200; ++round) {
    auto& c = live[round % 2];
    if (c != nullptr) {
      // Taken over in the previous round: read what it was sent, ACKs included.
      std::vector<net::OwnedFrame> got;
      CHECK(testing::ReadUntilClosed(*c, &got));
      for (const auto& f : got) {
        uint64_t a;
        if (IsType(f, FrameType::kAck) && net::DecodeAck(f.payload, &a)) {
          max_acked = std::max(max_acked, a);
        }
      }
    }
    c = ConnectAs(ts, "storm");
    uint64_t m = c->welcome().last_applied_seq;
    // What was acknowledged anywhere was applied, so WELCOME is at least that.
    REQUIRE(m >= max_acked);
    REQUIRE(m >= welcomes);
    welcomes = m;
    const engine::Schema& p = Player(*c);
    std::string frames;
    for (uint64_t i = 1; i <= 40; ++i)
      frames += PatchScore(p, m + i, "storm", static_cast<int64_t>(m + i));
    REQUIRE(c->Send(frames).ok());
    if (round % 7 == 0) {
      REQUIRE(WaitForAck(*c, m + 10));
      max_acked = std::max(max_acked, m + 10);
    }
  }
  // The last owner's ops are acknowledged before it closes: a close with unread
  // ACKs resets the connection, and the kernel may drop what the server had yet to
  // read, so unacknowledged ops promise nothing.
  REQUIRE(WaitForAck(*live[1], welcomes + 40));
  max_acked = std::max(max_acked, welcomes + 40);
  live[0].reset();
  live[1].reset();
  auto last = ConnectAs(ts, "storm");
  uint64_t m = last->welcome().last_applied_seq;
  CHECK(m >= max_acked);
  CHECK(Score(*last, Player(*last), "storm") == static_cast<int64_t>(m));
  // No op a connection took as new was skipped by a partition as already applied.
  CHECK(ts.engine().Stats().totals.duplicates == 0);
  MESSAGE("storm: WELCOME ", m, ", highest ACK seen ", max_acked);
}

TEST_CASE("handover: crash-and-renumber writers (property)") {
  const uint64_t seed = testing::TestSeed("CONV_SEED", 20261130);
  MESSAGE("seed ", seed, " (CONV_SEED)");
  std::mt19937_64 rng(seed);
  testing::TestServer ts;
  auto reader = ts.Connect();
  const engine::Schema& player = Player(*reader);
  testing::OpGenerator gen(player, seed, 12, {45, 40}, 6, "h-");

  constexpr size_t kSources = 3;
  struct Writer {
    size_t index = 0;
    std::string name;
    std::unique_ptr<net::Client> conn;
    std::vector<testing::GeneratedOp> history;  // sent, in seq order
    uint64_t next_seq = 1;
    uint64_t acked = 0;        // highest ACK seen on any of its connections
    uint64_t incarnation = 0;  // ops of a new incarnation differ from the old ones
  };
  std::vector<Writer> writers(kSources);
  for (size_t i = 0; i < kSources; ++i) {
    writers[i].index = i;
    writers[i].name = fmt::format("crash-{}", i);
  }

  uint64_t reconnects = 0, renumbered = 0, resent = 0, ops_sent = 0;
  auto note_acks = [](Writer& w, const std::vector<net::OwnedFrame>& frames) {
    for (const auto& f : frames) {
      uint64_t a;
      if (IsType(f, FrameType::kAck) && net::DecodeAck(f.payload, &a)) {
        w.acked = std::max(w.acked, a);
      }
    }
  };
  auto reconnect = [&](Writer& w, bool takeover) {
    std::unique_ptr<net::Client> old = std::move(w.conn);
    if (!takeover) old.reset();  // crash: gone without reading what it was sent
    w.conn = ts.Connect(w.name);
    uint64_t m = w.conn->welcome().last_applied_seq;
    if (old != nullptr) {
      std::vector<net::OwnedFrame> got;
      CHECK(testing::ReadUntilClosed(*old, &got));
      note_acks(w, got);
    }
    ++reconnects;
    // Nothing acknowledged is ever lost, and no seq above WELCOME was applied.
    REQUIRE_MESSAGE(m >= w.acked, w.name, ": WELCOME ", m, " below ACK ", w.acked);
    REQUIRE(m < w.next_seq);
    size_t keep = 0;
    while (keep < w.history.size() && w.history[keep].seq <= m)
      ++keep;
    if (keep < w.history.size() && rng() % 2 == 0) {
      // The writer resends what WELCOME does not cover, unchanged.
      std::string frames;
      for (size_t k = keep; k < w.history.size(); ++k) {
        const auto& op = w.history[k];
        frames += WriteFrame(op.type, op.seq, op.ts, kPlayer, op.id, op.record);
      }
      REQUIRE(w.conn->Send(frames).ok());
      ++resent;
    } else {
      // The writer forgot what it sent: it numbers new ops from WELCOME on.
      w.history.resize(keep);
      w.next_seq = m + 1 + rng() % 3;
      ++w.incarnation;
      ++renumbered;
    }
  };

  // New ops of `w`, in its history; the frames of the first `sent` of them are sent
  // (a writer that crashes loses the rest in its own buffers).
  auto write = [&](Writer& w, size_t n, size_t sent) {
    std::string frames;
    for (size_t k = 0; k < n; ++k) {
      size_t stream = w.index * 1'000'000 + w.incarnation;
      testing::GeneratedOp op = gen.Op(stream, w.next_seq);
      w.next_seq += 1 + (rng() % 4 == 0 ? rng() % 3 : 0);
      if (k < sent) frames += WriteFrame(op.type, op.seq, op.ts, kPlayer, op.id, op.record);
      w.history.push_back(std::move(op));
    }
    REQUIRE(w.conn->Send(frames).ok());
    ops_sent += sent;
  };

  for (auto& w : writers)
    reconnect(w, false);
  for (int step = 0; step < 1500; ++step) {
    Writer& w = writers[rng() % kSources];
    switch (rng() % 8) {
      case 0: {
        size_t n = 1 + rng() % 40;
        write(w, n, rng() % (n + 1));
        reconnect(w, false);
        break;
      }
      case 1:
        reconnect(w, true);
        break;
      case 2: {
        std::vector<net::OwnedFrame> got;
        net::OwnedFrame f;
        for (;;) {
          auto r = w.conn->TryReadFrame(std::chrono::milliseconds(1), &f);
          REQUIRE(r.ok());
          if (!*r) break;
          got.push_back(f);
        }
        note_acks(w, got);
        break;
      }
      default: {
        size_t n = 1 + rng() % 40;
        write(w, n, n);
        break;
      }
    }
  }
  // A last reconnect of every writer tells what was applied; the state must be
  // exactly those ops, in order per source.
  testing::StateModel model(player);
  for (auto& w : writers) {
    w.conn.reset();
    auto c = ts.Connect(w.name);
    uint64_t m = c->welcome().last_applied_seq;
    REQUIRE(m >= w.acked);
    for (const auto& op : w.history) {
      if (op.seq <= m) model.Apply(w.name, op);
    }
  }
  auto got = testing::QueryState(*reader, player, gen.EntityIds());
  REQUIRE_MESSAGE(got.ok(), (got.ok() ? "" : got.message()));
  testing::StateByEntity want = model.State();
  CHECK_MESSAGE(*got == want, testing::DescribeDifference(want, *got));
  // Duplicates are recognised by the connection; a partition never skips an op that
  // its connection took as new.
  CHECK(ts.engine().Stats().totals.duplicates == 0);
  MESSAGE(ops_sent, " ops, ", reconnects, " reconnects (", renumbered, " renumbered, ", resent,
          " resent)");
}

TEST_CASE("handover: seq 0 closes the connection, resends up to WELCOME are duplicates") {
  testing::TestServer ts;
  auto w = ConnectAs(ts, "mono");
  const engine::Schema& p = Player(*w);
  REQUIRE(w->Send(PatchScore(p, 5, "e", 5)).ok());
  REQUIRE(WaitForAck(*w, 5));

  // Seq 0 is no op's seq, and an op-level ERROR for it would read as connection-level.
  REQUIRE(w->Send(PatchScore(p, 0, "e", 0)).ok());
  std::vector<net::OwnedFrame> got;
  CHECK(testing::ReadUntilClosed(*w, &got));
  REQUIRE(got.size() == 1);
  net::Error e = ErrorOf(got[0]);
  CHECK(e.seq_or_req == 0);
  CHECK(e.code == static_cast<uint64_t>(net::ErrorCode::kBadFrame));
  CHECK(e.message.find("seq 0") != std::string::npos);

  // What was applied stays; after a reconnect, seqs up to WELCOME's are resends:
  // skipped and acknowledged at once, never applied again.
  w = ConnectAs(ts, "mono");
  REQUIRE(w->welcome().last_applied_seq == 5);
  const engine::Schema& p2 = Player(*w);
  REQUIRE(w->Send(PatchScore(p2, 5, "e", 555)).ok());
  REQUIRE(WaitForAck(*w, 5));
  CHECK(Score(*w, p2, "e") == 5);
  REQUIRE(w->Send(PatchScore(p2, 6, "e", 6)).ok());
  REQUIRE(WaitForAck(*w, 6));
  CHECK(Score(*w, p2, "e") == 6);
}
