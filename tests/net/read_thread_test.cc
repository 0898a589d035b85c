// Connections that say HELLO without a source move to the server's read thread
// (docs/architecture.md, "Reads"): what they pipelined after HELLO is handled there
// in order, the connection counts stay right, and they keep working while writers
// stream on the other I/O threads.

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "net/messages.h"
#include "support/test_server.h"

using namespace conv;
using net::FrameType;
using testing::IsType;
using testing::Player;
using testing::Record;
using testing::Stat;
using testing::WaitForAck;
using testing::WriteFrame;

namespace {
constexpr uint64_t kPlayer = engine::kPlayerSchemaId;
}  // namespace

TEST_CASE("read thread: frames pipelined after a reader's HELLO are answered in order") {
  testing::TestServer ts;
  {
    auto w = ts.Connect("w");
    REQUIRE(w->Send(WriteFrame(FrameType::kAssert, 1, 0, kPlayer, "e",
                               Record(Player(*w), {{"score", int64_t{7}}})))
                .ok());
    REQUIRE(WaitForAck(*w, 1));
  }
  testing::RawConnection raw(ts.port());
  std::string bytes = testing::HelloFrame("");
  bytes += testing::QueryFrame(1, kPlayer, "e", false);
  net::Subscribe sub;
  sub.sub = 2;
  sub.schema_id = kPlayer;
  sub.flags = net::kSubscribeBootstrap;
  net::EncodeSubscribe(bytes, sub);
  net::EncodeReq(bytes, FrameType::kPing, 3);
  REQUIRE(raw.Send(bytes));  // one write: HELLO and what follows arrive together
  std::vector<uint8_t> types;
  while (types.size() < 5) {
    auto f = raw.ReadFrame();
    REQUIRE_MESSAGE(f.ok(), f.message());
    types.push_back(f->type);
  }
  CHECK(types[0] == static_cast<uint8_t>(FrameType::kWelcome));
  CHECK(types[1] == static_cast<uint8_t>(FrameType::kResult));
  // PONG is a reply; SNAPSHOT and SNAPSHOT_END come from the feed: in either order.
  std::vector<uint8_t> rest(types.begin() + 2, types.end());
  std::sort(rest.begin(), rest.end());
  CHECK(rest == std::vector<uint8_t>{static_cast<uint8_t>(FrameType::kSnapshot),
                                     static_cast<uint8_t>(FrameType::kSnapshotEnd),
                                     static_cast<uint8_t>(FrameType::kPong)});
}

TEST_CASE("read thread: connections handed over are counted once") {
  testing::TestServer ts;
  auto w = ts.Connect("w");
  std::vector<std::unique_ptr<net::Client>> readers;
  for (int i = 0; i < 5; ++i)
    readers.push_back(ts.Connect());
  CHECK(Stat(*w, "connections") == 6);
  CHECK(Stat(*w, "connections_total") == 6);
  readers.clear();
  // A closed connection is counted out once its session ends.
  uint64_t open = 0;
  for (int i = 0; i < 200; ++i) {
    open = Stat(*w, "connections");
    if (open == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(open == 1);
  CHECK(Stat(*w, "connections_total") == 6);
}

TEST_CASE("read thread: readers and subscribers keep working while writers stream") {
  testing::TestServerOptions o;
  o.io_threads = 1;
  testing::TestServer ts(o);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> acked{0};
  std::thread writer([&] {
    auto w = ts.Connect("w");
    const engine::Schema& p = Player(*w);
    uint64_t seq = 0;
    while (!stop) {
      std::string frames;
      for (int i = 0; i < 1000; ++i) {
        ++seq;
        engine::RecordBuilder b(p);  // no doctest macros off the test thread
        (void)b.Set("score", static_cast<int64_t>(seq));
        frames += WriteFrame(FrameType::kAssert, seq, 0, kPlayer, fmt::format("e{}", seq % 500),
                             b.Encode());
      }
      if (!w->Send(frames).ok()) return;
    }
    if (WaitForAck(*w, seq)) acked = seq;
  });
  auto r = ts.Connect();
  const engine::Schema& p = Player(*r);
  for (int i = 0; i < 200; ++i) {
    auto q = r->Query(p, fmt::format("e{}", i % 500), false);
    REQUIRE_MESSAGE(q.ok(), q.message());
  }
  stop = true;
  writer.join();
  CHECK(acked > 0);
  CHECK(Stat(*r, "op_errors") == 0);
}
