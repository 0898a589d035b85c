// The source table's bound (serve --max-sources): sources with no claim, no
// connection and nothing in flight are forgotten to make room for new names, at
// once when they never wrote, after --source-retention when they did (their seq
// mark is what a writer resends against). A new source on a forgotten id starts
// from seq 0 in every partition, across restarts too.

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <string>
#include <thread>

#include "support/durable_server.h"
#include "support/op_model.h"
#include "support/process.h"
#include "support/test_server.h"

using namespace conv;
using net::FrameType;
using testing::Player;
using testing::Record;
using testing::Stat;
using testing::WaitForAck;
using testing::WriteFrame;

namespace {

constexpr uint64_t kPlayer = engine::kPlayerSchemaId;

testing::DurableServerOptions Options(const testing::TempDir& d,
                                      std::chrono::microseconds retention) {
  testing::DurableServerOptions o;
  o.data_dir = d.File("data");
  o.max_sources = 4;
  o.server.source_retention = retention;
  return o;
}

util::Result<std::unique_ptr<net::Client>> Hello(testing::DurableServer& s,
                                                 const std::string& source) {
  net::Hello hello;
  hello.source = source;
  return net::Client::Connect(s.address(), hello, testing::kReplyTimeout);
}

// Sends ops seq first.. as PATCHes of `id`'s score = seq; waits for the last ACK.
// HELLO as `source`, retried while the table is full: a connection just closed is
// forgettable once the server has seen it close.
std::unique_ptr<net::Client> HelloWhenRoom(testing::DurableServer& s, const std::string& source) {
  for (int i = 0; i < 200; ++i) {
    auto c = Hello(s, source);
    if (c.ok()) return std::move(c).value();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  FAIL("no room for source " << source);
  return nullptr;
}

void Write(net::Client& c, const std::string& id, uint64_t first, uint64_t last) {
  std::string frames;
  for (uint64_t seq = first; seq <= last; ++seq) {
    frames += WriteFrame(FrameType::kPatch, seq, 0, kPlayer, id,
                         Record(Player(c), {{"score", static_cast<int64_t>(seq)}}));
  }
  REQUIRE(c.Send(frames).ok());
  REQUIRE(WaitForAck(c, last));
}

void Retract(net::Client& c, const std::string& id, uint64_t seq) {
  REQUIRE(c.Send(WriteFrame(FrameType::kRetract, seq, 0, kPlayer, id)).ok());
  REQUIRE(WaitForAck(c, seq));
}

int64_t Score(net::Client& c, const std::string& id) {
  auto r = c.Query(Player(c), id, false);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.message()));
  return r->found ? testing::I64Field(Player(c), r->record, "score") : -1;
}

}  // namespace

TEST_CASE("sources: names that never wrote are forgotten at once, past the table's size") {
  testing::TempDir d("conv-sources");
  testing::DurableServer s(Options(d, std::chrono::hours(1)));
  // One client saying HELLO with 100 names in turn, as a flood would.
  for (int i = 0; i < 100; ++i) {
    // (Retried while the server has not yet seen the previous ones close.)
    auto c = HelloWhenRoom(s, fmt::format("boot-{}", i));
    CHECK(c->welcome().last_applied_seq == 0);
  }
  auto r = s.Connect();
  CHECK(Stat(*r, "sources") <= 4);
  CHECK(Stat(*r, "sources_forgotten") >= 96);
}

TEST_CASE("sources: a source holding claims, or idle for less than the retention, is kept") {
  testing::TempDir d("conv-sources");
  testing::DurableServer s(Options(d, std::chrono::hours(1)));
  for (int i = 0; i < 3; ++i) {
    auto c = s.Connect(fmt::format("holder-{}", i));
    Write(*c, fmt::format("e-{}", i), 1, 5);
  }
  {
    // Wrote, then took its claim back: no claim, but its seq mark is kept.
    auto c = s.Connect("retracted");
    Write(*c, "e-r", 1, 5);
    Retract(*c, "e-r", 6);
  }
  auto refused = Hello(s, "newcomer");
  REQUIRE_FALSE(refused.ok());
  CHECK_MESSAGE(refused.message().find("4 sources") != std::string::npos, refused.message());
  CHECK_MESSAGE(refused.message().find("--max-sources") != std::string::npos, refused.message());
  auto again = s.Connect("retracted");
  CHECK(again->welcome().last_applied_seq == 6);
}

TEST_CASE("sources: a new source on a forgotten id starts from seq 0, also after a restart") {
  testing::TempDir d("conv-sources");
  {
    testing::DurableServer s(Options(d, std::chrono::microseconds(0)));
    for (int i = 0; i < 3; ++i) {
      auto c = s.Connect(fmt::format("holder-{}", i));
      Write(*c, fmt::format("e-{}", i), 1, 3);
    }
    {
      auto old = s.Connect("old");
      Write(*old, "e-old", 1, 500);  // a high mark in every partition it reached
      Retract(*old, "e-old", 501);
    }
    // "old" has no claim and no connection; retention 0: its id goes to "new".
    auto fresh = HelloWhenRoom(s, "new");
    CHECK(fresh->welcome().last_applied_seq == 0);
    Write(*fresh, "e-old", 1, 7);  // not duplicates of old's 1..500
    CHECK(Score(*fresh, "e-old") == 7);
    CHECK(Stat(*fresh, "duplicates") == 0);
    CHECK(Stat(*fresh, "sources_forgotten") == 1);
    // "old" comes back once "new" has gone too: it is a new source now, from 0.
    Retract(*fresh, "e-old", 8);
    fresh.reset();
    auto back = HelloWhenRoom(s, "old");
    CHECK(back->welcome().last_applied_seq == 0);
    REQUIRE(s.engine().Checkpoint().ok());
    Write(*back, "e-back", 1, 2);
    s.Shutdown();
  }
  // After a restart (checkpoint, then the log), each name has its own mark.
  testing::DurableServer s(Options(d, std::chrono::hours(1)));
  CHECK(s.Connect("old")->welcome().last_applied_seq == 2);
  CHECK(s.Connect("holder-1")->welcome().last_applied_seq == 3);
  auto r = s.Connect();
  CHECK(Score(*r, "e-old") == -1);
  CHECK(Score(*r, "e-back") == 2);
}

TEST_CASE("sources: a log naming more sources than the table holds is recovered") {
  testing::TempDir d("conv-sources");
  {
    testing::DurableServer s(Options(d, std::chrono::microseconds(0)));
    // 12 sources in turn, each writes and takes its claim back: with room for 4,
    // the log names three times more than the table holds.
    for (int i = 0; i < 12; ++i) {
      auto c = HelloWhenRoom(s, fmt::format("churn-{}", i));
      Write(*c, "e", 1, 10);
      Retract(*c, "e", 11);
    }
    auto last = HelloWhenRoom(s, "last");
    Write(*last, "e", 1, 4);
    s.Shutdown();
  }
  testing::DurableServer s(Options(d, std::chrono::microseconds(0)));
  CHECK(s.Connect("last")->welcome().last_applied_seq == 4);
  auto r = s.Connect();
  CHECK(Score(*r, "e") == 4);
  CHECK(Stat(*r, "sources") <= 4);
}
