// End-to-end tests of the server's connection handling over loopback: where it may
// listen, source takeover, connection and frame limits, idle and slow peers, frames
// cut at any byte, and graceful stop.

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "engine/record.h"
#include "support/test_server.h"
#include "util/coding.h"

using namespace conv;
using net::FrameType;
using testing::ErrorOf;
using testing::IsType;
using testing::Player;
using testing::Record;
using testing::Stat;
using testing::WaitForAck;
using testing::WriteFrame;

namespace {

constexpr uint64_t kPlayer = engine::kPlayerSchemaId;

}  // namespace

TEST_CASE("server: a non-loopback listen address needs an auth token") {
  engine::SchemaSet schemas;
  engine::SourceTable sources;
  engine::Engine engine({}, schemas, sources);
  util::Logger log(util::LogLevel::kOff);
  for (const char* addr : {"0.0.0.0:0", "[::]:0", "192.0.2.1:0"}) {
    CAPTURE(addr);
    net::ServerOptions o;
    o.listen = addr;
    net::Server s(engine, o, log);
    util::Status st = s.Listen();
    REQUIRE_FALSE(st.ok());
    CHECK(st.message().find(addr) != std::string::npos);
    CHECK(st.message().find("auth") != std::string::npos);
  }
  net::ServerOptions o;
  o.listen = "0.0.0.0:0";
  o.auth_token = "a-token";
  net::Server with_token(engine, o, log);
  util::Status st = with_token.Listen();
  CHECK_MESSAGE(st.ok(), st.message());
  CHECK(with_token.port() != 0);

  o.listen = "localhost:0";
  o.auth_token.clear();
  net::Server local(engine, o, log);
  st = local.Listen();
  CHECK_MESSAGE(st.ok(), st.message());
}

TEST_CASE("server: a second connection with the same source name takes over") {
  testing::TestServer ts;
  auto first = ts.Connect("taken");
  const engine::Schema& p = Player(*first);
  std::string frames;
  for (uint64_t seq = 1; seq <= 10; ++seq) {
    frames += WriteFrame(FrameType::kAssert, seq, 0, kPlayer, fmt::format("t-{}", seq),
                         Record(p, {{"level", static_cast<int64_t>(seq)}}));
  }
  REQUIRE(first->Send(frames).ok());
  REQUIRE(WaitForAck(*first, 10));

  auto second = ts.Connect("taken");
  CHECK(second->welcome().last_applied_seq == 10);
  std::vector<net::OwnedFrame> got;
  CHECK(testing::ReadUntilClosed(*first, &got));
  REQUIRE(got.size() == 1);
  net::Error e = ErrorOf(got[0]);
  CHECK(e.seq_or_req == 0);
  CHECK(e.code == static_cast<uint64_t>(net::ErrorCode::kSourceTakenOver));

  REQUIRE(second
              ->Send(WriteFrame(FrameType::kAssert, 11, 0, kPlayer, "t-11",
                                Record(p, {{"level", int64_t{11}}})))
              .ok());
  std::vector<net::OwnedFrame> others;
  REQUIRE(WaitForAck(*second, 11, &others));
  CHECK(others.empty());
  for (int i = 1; i <= 11; ++i) {
    auto r = second->Query(p, fmt::format("t-{}", i), false);
    REQUIRE(r.ok());
    CHECK(r->found);
  }
  CHECK(Stat(*second, "takeovers") == 1);
}

TEST_CASE("server: a connection over max_connections gets overloaded and others carry on") {
  testing::TestServerOptions opt;
  opt.server.max_connections = 1;
  testing::TestServer ts(opt);
  auto first = ts.Connect("only");

  net::Hello hello;
  hello.source = "second";
  auto refused = net::Client::Connect(ts.address(), hello, testing::kReplyTimeout);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.message().find("overloaded") != std::string::npos);

  testing::RawConnection raw(ts.port());
  auto f = raw.ReadFrame();
  REQUIRE(f.ok());
  net::Error e = ErrorOf(*f);
  CHECK(e.seq_or_req == 0);
  CHECK(e.code == static_cast<uint64_t>(net::ErrorCode::kOverloaded));
  CHECK(testing::ReadUntilClosed(raw));

  const engine::Schema& p = Player(*first);
  REQUIRE(first->Send(WriteFrame(FrameType::kAssert, 1, 0, kPlayer, "o-1", Record(p, {}))).ok());
  REQUIRE(WaitForAck(*first, 1));
  CHECK(Stat(*first, "connections_rejected") == 2);

  // Once the first connection is gone its slot is free again (the server notices the
  // close asynchronously, so retry for a while).
  first.reset();
  auto deadline = std::chrono::steady_clock::now() + testing::kReplyTimeout;
  std::unique_ptr<net::Client> next;
  while (std::chrono::steady_clock::now() < deadline) {
    auto c = net::Client::Connect(ts.address(), hello, testing::kReplyTimeout);
    if (c.ok()) {
      next = std::move(c).value();
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  REQUIRE(next != nullptr);
  CHECK(next->Sync().ok());
}

TEST_CASE("server: shutdown sends the final ACK, then shutting_down, then closes") {
  testing::TestServerOptions opt;
  opt.window = std::chrono::seconds(30);  // no window closes before the shutdown's flush
  testing::TestServer ts(opt);
  auto w = ts.Connect("final");
  auto reader = ts.Connect();
  const engine::Schema& p = Player(*w);
  std::string frames;
  for (uint64_t seq = 1; seq <= 100; ++seq) {
    frames += WriteFrame(FrameType::kAssert, seq, 0, kPlayer, fmt::format("f-{}", seq % 9),
                         Record(p, {{"score", static_cast<int64_t>(seq)}}));
  }
  net::EncodeReq(frames, FrameType::kPing, 5);
  REQUIRE(w->Send(frames).ok());
  // PONG: the server has read every op before it.
  auto f = w->ReadFrame();
  REQUIRE(f.ok());
  REQUIRE(IsType(*f, FrameType::kPong));

  ts.Shutdown();

  std::vector<net::OwnedFrame> got;
  CHECK(testing::ReadUntilClosed(*w, &got));
  REQUIRE(got.size() == 2);
  REQUIRE(IsType(got[0], FrameType::kAck));
  uint64_t acked = 0;
  REQUIRE(net::DecodeAck(got[0].payload, &acked));
  CHECK(acked == 100);
  net::Error e = ErrorOf(got[1]);
  CHECK(e.seq_or_req == 0);
  CHECK(e.code == static_cast<uint64_t>(net::ErrorCode::kShuttingDown));

  got.clear();
  CHECK(testing::ReadUntilClosed(*reader, &got));
  REQUIRE(got.size() == 1);
  CHECK(ErrorOf(got[0]).code == static_cast<uint64_t>(net::ErrorCode::kShuttingDown));

  // The state is intact and the listener is closed.
  engine::QueryResult q;
  CHECK(ts.engine().Query(p, "f-1", false, &q));
  CHECK(ts.engine().Stats().totals.applied == 100);
  auto late = net::Client::Connect(ts.address(), net::Hello{}, std::chrono::seconds(2));
  CHECK_FALSE(late.ok());
}

TEST_CASE("server: a writer still sending at a graceful stop gets its final frames, then a FIN") {
  testing::TestServer ts;
  auto probe = ts.Connect();
  const engine::Schema& p = Player(*probe);
  const std::string rec = Record(p, {{"score", int64_t{1}}});
  testing::RawConnection raw(ts.port());
  REQUIRE(raw.Send(testing::HelloFrame("flood")));
  auto welcome = raw.ReadFrame();
  REQUIRE(welcome.ok());
  REQUIRE(IsType(*welcome, FrameType::kWelcome));
  // No REQUIRE from here until the threads are joined: a failed one would leave them.
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> sent{0};
  std::atomic<bool> send_failed{false};
  std::thread sender([&] {
    uint64_t seq = 0;
    while (!stop.load()) {
      std::string frames;
      for (int i = 0; i < 200; ++i) {
        ++seq;
        frames +=
            WriteFrame(FrameType::kPatch, seq, 0, kPlayer, fmt::format("f-{}", seq % 100), rec);
      }
      if (!raw.Send(frames)) {
        send_failed = true;
        break;
      }
      sent = seq;
    }
  });
  for (int i = 0; i < 500 && sent.load() < 20'000; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::thread stopper([&] { ts.Shutdown(); });
  std::vector<net::OwnedFrame> got;
  std::string end;
  for (;;) {
    auto f = raw.ReadFrame();
    if (!f.ok()) {
      end = f.message();
      break;
    }
    got.push_back(std::move(f).value());
  }
  // The server ended its side after the last frame and drops what the writer still
  // sends (for up to 2 s): it does not reset the connection over input it did not
  // read (a reset can cost a writer the frames not yet read, and fails its sends).
  bool failed_at_end = send_failed.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  char byte;
  ssize_t n = ::recv(raw.fd(), &byte, 1, MSG_DONTWAIT);
  int err = errno;
  stop = true;
  sender.join();
  ::shutdown(raw.fd(), SHUT_WR);  // the server closes at once instead of after its grace
  stopper.join();
  MESSAGE(sent.load(), " ops sent, ", got.size(), " frames read, then: ", end);
  CHECK(end == "closed");
  CHECK_FALSE(failed_at_end);
  CHECK_MESSAGE(n == 0, "after the end of the stream: ", (n < 0 ? std::strerror(err) : "data"));
  // CREDIT frames follow ACKs: the last frame but the ERROR that is not one is an ACK.
  std::erase_if(got, [](const net::OwnedFrame& f) { return IsType(f, FrameType::kCredit); });
  REQUIRE(got.size() >= 2);
  CHECK(IsType(got[got.size() - 2], FrameType::kAck));
  CHECK(ErrorOf(got.back()).code == static_cast<uint64_t>(net::ErrorCode::kShuttingDown));
}

TEST_CASE("server: a graceful stop does not wait for a pending lease") {
  testing::TestServer ts;
  net::Hello hello;
  hello.source = "leased";
  hello.lease_ms = 60'000;
  {
    auto c = net::Client::Connect(ts.address(), hello, testing::kReplyTimeout);
    REQUIRE(c.ok());
    REQUIRE((*c)->Sync().ok());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the lease is running
  auto t0 = std::chrono::steady_clock::now();
  ts.Shutdown();
  auto took = std::chrono::steady_clock::now() - t0;
  // A liveness bound only: before, the stop lasted the whole 60 s lease.
  CHECK(took < std::chrono::seconds(10));
}

TEST_CASE("server: ops read before a graceful stop are applied and acknowledged, no more") {
  testing::TestServer ts;
  auto w = ts.Connect("streaming");
  testing::BoundSends(w->fd());
  const engine::Schema& p = Player(*w);
  // A writer streams ops from its own thread until the server closes the connection
  // (raw sends on the client's socket, bounded by testing::BoundSends), while this thread
  // reads the replies and stops the server mid-stream.
  constexpr uint64_t kMaxOps = 2'000'000;
  std::atomic<uint64_t> sent{0};
  std::thread writer([&] {
    std::string chunk;
    for (uint64_t seq = 1; seq <= kMaxOps;) {
      chunk.clear();
      for (int i = 0; i < 1000; ++i, ++seq) {
        engine::RecordBuilder b(p);  // no doctest macros off the test thread
        (void)b.Set("level", static_cast<int64_t>(seq));
        chunk +=
            WriteFrame(FrameType::kAssert, seq, 0, kPlayer, fmt::format("k-{}", seq), b.Encode());
      }
      std::string_view rest = chunk;
      while (!rest.empty()) {
        ssize_t n = ::send(w->fd(), rest.data(), rest.size(), MSG_NOSIGNAL);
        if (n <= 0) return;
        rest.remove_prefix(static_cast<size_t>(n));
      }
      sent = seq - 1;
    }
  });

  uint64_t acked = 0;
  while (acked == 0) {
    auto f = w->ReadFrame();
    REQUIRE(f.ok());
    if (IsType(*f, FrameType::kCredit)) continue;  // the writer streams past its credit
    REQUIRE(IsType(*f, FrameType::kAck));
    REQUIRE(net::DecodeAck(f->payload, &acked));
  }
  ts.Shutdown();

  std::vector<net::OwnedFrame> got;
  CHECK(testing::ReadUntilClosed(*w, &got));
  writer.join();
  REQUIRE_FALSE(got.empty());
  net::Error e = ErrorOf(got.back());
  CHECK(e.code == static_cast<uint64_t>(net::ErrorCode::kShuttingDown));
  for (size_t i = 0; i + 1 < got.size(); ++i) {
    if (IsType(got[i], FrameType::kCredit)) continue;
    REQUIRE(IsType(got[i], FrameType::kAck));
    uint64_t v = 0;
    REQUIRE(net::DecodeAck(got[i].payload, &v));
    CHECK(v > acked);
    acked = v;
  }
  // What was applied is a prefix of the source's ops, and all of it is acknowledged.
  uint64_t applied = ts.engine().Stats().totals.applied;
  INFO("applied ", applied, " ops, ", sent.load(), " sent, before the stop");
  CHECK(applied < kMaxOps);
  CHECK(acked == applied);
  engine::QueryResult q;
  CHECK(ts.engine().Query(p, fmt::format("k-{}", applied), false, &q));
  CHECK_FALSE(ts.engine().Query(p, fmt::format("k-{}", applied + 1), false, &q));
}

TEST_CASE("server: frames cut into single bytes are reassembled") {
  testing::TestServer ts;
  const engine::Schema& p = *ts.engine().schemas().Find(kPlayer);
  std::string bytes = testing::HelloFrame("trickle");
  bytes += WriteFrame(FrameType::kAssert, 1, 0, kPlayer, "c-1",
                      Record(p, {{"name", std::string("cut")}, {"x", 0.5}}));
  bytes += WriteFrame(FrameType::kPatch, 2, 0, kPlayer, "c-1", Record(p, {{"y", 1.5}}));
  net::EncodeReq(bytes, FrameType::kSync, 9);

  testing::RawConnection raw(ts.port());
  for (size_t i = 0; i < bytes.size(); ++i) {
    REQUIRE(raw.Send(bytes.substr(i, 1)));
    // Every few bytes, give the server a chance to read what it has.
    if (i % 5 == 0) std::this_thread::sleep_for(std::chrono::microseconds(300));
  }
  auto f = raw.ReadFrame();
  REQUIRE(f.ok());
  REQUIRE(IsType(*f, FrameType::kWelcome));
  uint64_t acked = 0;
  for (;;) {
    f = raw.ReadFrame();
    REQUIRE(f.ok());
    if (IsType(*f, FrameType::kAck)) {
      REQUIRE(net::DecodeAck(f->payload, &acked));
      continue;
    }
    REQUIRE(IsType(*f, FrameType::kSynced));
    break;
  }
  CHECK(acked == 2);
  // After SYNCED the writes are visible; the QUERY is cut into bytes as well.
  std::string query = testing::QueryFrame(10, kPlayer, "c-1", false);
  for (char b : query)
    REQUIRE(raw.Send(std::string(1, b)));
  f = raw.ReadFrame();
  REQUIRE(f.ok());
  REQUIRE(IsType(*f, FrameType::kResult));
  net::Result r;
  REQUIRE(net::DecodeResult(f->payload, p, false, &r));
  CHECK(r.req == 10);
  CHECK(r.found);
  CHECK(r.record == Record(p, {{"name", std::string("cut")}, {"x", 0.5}, {"y", 1.5}}));
}

TEST_CASE("server: a frame of the default max size is served, one byte more is not") {
  testing::TestServer ts;
  auto w = ts.Connect("big");
  const engine::Schema& p = Player(*w);
  std::string name;
  std::string frame;
  // Grow the name until the frame is exactly max_frame long.
  for (size_t n = net::kDefaultMaxFrame - 64; frame.size() != 4 + net::kDefaultMaxFrame; ++n) {
    REQUIRE(n < net::kDefaultMaxFrame);
    name.assign(n, 'b');
    frame = WriteFrame(FrameType::kAssert, 1, 0, kPlayer, "huge", Record(p, {{"name", name}}));
  }
  REQUIRE(w->Send(frame).ok());
  REQUIRE(WaitForAck(*w, 1));
  auto r = w->Query(p, "huge", true);
  REQUIRE(r.ok());
  CHECK(r->record == Record(p, {{"name", name}}));
  REQUIRE(r->claims.size() == 1);

  name.push_back('b');
  frame = WriteFrame(FrameType::kAssert, 2, 0, kPlayer, "huge", Record(p, {{"name", name}}));
  REQUIRE(frame.size() == 4 + net::kDefaultMaxFrame + 1);
  // The server answers as soon as it has the length, and closes: the rest of the
  // frame may meet a closed connection.
  (void)w->Send(frame);
  std::vector<net::OwnedFrame> got;
  CHECK(testing::ReadUntilClosed(*w, &got));
  REQUIRE_FALSE(got.empty());
  CHECK(ErrorOf(got.back()).code == static_cast<uint64_t>(net::ErrorCode::kFrameTooLarge));
}

TEST_CASE("server: a client that reads slowly gets every reply, in order") {
  testing::TestServerOptions opt;
  opt.server.output_high_water = 64 * 1024;  // pause reading early
  testing::TestServer ts(opt);
  auto w = ts.Connect("fat");
  const engine::Schema& p = Player(*w);
  const std::string name(20'000, 'f');
  REQUIRE(w->Send(WriteFrame(FrameType::kAssert, 1, 0, kPlayer, "fat", Record(p, {{"name", name}})))
              .ok());
  REQUIRE(WaitForAck(*w, 1));

  // 500 replies of 20 KB: far more than the socket buffers and the high-water mark, so
  // the server has to stop reading requests until the client catches up.
  constexpr uint64_t kQueries = 500;
  std::string frames;
  for (uint64_t req = 1; req <= kQueries; ++req) {
    frames += testing::QueryFrame(req, kPlayer, "fat", req % 2 == 0);
  }
  net::EncodeReq(frames, FrameType::kPing, 999);
  REQUIRE(w->Send(frames).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let the output back up

  for (uint64_t req = 1; req <= kQueries; ++req) {
    CAPTURE(req);
    auto f = w->ReadFrame();
    REQUIRE(f.ok());
    REQUIRE(IsType(*f, FrameType::kResult));
    net::Result r;
    REQUIRE(net::DecodeResult(f->payload, p, req % 2 == 0, &r));
    CHECK(r.req == req);
    CHECK(r.found);
    CHECK(r.record.size() > name.size());
  }
  auto f = w->ReadFrame();
  REQUIRE(f.ok());
  CHECK(IsType(*f, FrameType::kPong));
  CHECK(Stat(*w, "queries") == kQueries);
}

TEST_CASE("server: one read of QUERYs for a large record queues no more than the output limit") {
  // 300 QUERYs in one read, each answered with 600 KB: handling them all before
  // looking at the output would queue 180 MB for a client that is not reading.
  testing::TestServerOptions opt;
  opt.server.output_high_water = 64 * 1024;
  testing::TestServer ts(opt);
  auto w = ts.Connect("huge");
  const engine::Schema& p = Player(*w);
  const std::string name(600'000, 'h');
  REQUIRE(
      w->Send(WriteFrame(FrameType::kAssert, 1, 0, kPlayer, "huge", Record(p, {{"name", name}})))
          .ok());
  REQUIRE(WaitForAck(*w, 1));

  auto reader = ts.Connect();
  constexpr uint64_t kQueries = 300;
  std::string frames;
  for (uint64_t req = 1; req <= kQueries; ++req)
    frames += testing::QueryFrame(req, kPlayer, "huge", false);
  uint64_t before = testing::RssKiB();
  REQUIRE(reader->Send(frames).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  uint64_t during = testing::RssKiB();
  MESSAGE("RSS ", before / 1024, " MiB before, ", during / 1024,
          " MiB with 300 replies of 600 KB asked for and none read");
  testing::CheckRssGrowth(before, during, 48 * 1024);

  for (uint64_t req = 1; req <= kQueries; ++req) {
    CAPTURE(req);
    auto f = reader->ReadFrame();
    REQUIRE(f.ok());
    REQUIRE(IsType(*f, FrameType::kResult));
    net::Result r;
    REQUIRE(net::DecodeResult(f->payload, p, false, &r));
    CHECK(r.req == req);
    CHECK(r.record.size() > name.size());
  }
}

TEST_CASE("server: before HELLO a frame over 4 KiB is refused at once, and holds no memory") {
  testing::TestServer ts;
  // The length alone is enough to refuse it.
  std::string header;
  util::PutFixed32(header, 1u << 20);
  util::PutU8(header, static_cast<uint8_t>(FrameType::kHello));
  {
    testing::RawConnection raw(ts.port());
    REQUIRE(raw.Send(header));
    std::vector<net::OwnedFrame> got;
    CHECK(testing::ReadUntilClosed(raw, &got));
    REQUIRE(got.size() == 1);
    net::Error e = ErrorOf(got[0]);
    CHECK(e.code == static_cast<uint64_t>(net::ErrorCode::kFrameTooLarge));
    CHECK(e.message.find("before HELLO") != std::string::npos);
  }
  // 200 connections each sending 512 KiB of a declared 1 MiB HELLO.
  const std::string partial = header + std::string(512 * 1024, 'h');
  uint64_t before = testing::RssKiB();
  std::vector<std::unique_ptr<testing::RawConnection>> conns;
  for (int i = 0; i < 200; ++i) {
    conns.push_back(std::make_unique<testing::RawConnection>(ts.port()));
    conns.back()->Send(partial);  // may fail once the server closed it
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  uint64_t during = testing::RssKiB();
  MESSAGE("RSS ", before / 1024, " MiB before, ", during / 1024,
          " MiB with 200 connections sending 512 KiB of a 1 MiB HELLO");
  testing::CheckRssGrowth(before, during, 32 * 1024);
  for (auto& c : conns) {
    auto f = c->ReadFrame();
    REQUIRE(f.ok());
    CHECK(ErrorOf(*f).code == static_cast<uint64_t>(net::ErrorCode::kFrameTooLarge));
  }
  // The server carries on; the limit applies before HELLO only.
  auto w = ts.Connect("after");
  const std::string name(100'000, 'n');
  REQUIRE(w->Send(WriteFrame(FrameType::kAssert, 1, 0, kPlayer, "big",
                             Record(Player(*w), {{"name", name}})))
              .ok());
  REQUIRE(WaitForAck(*w, 1));
}

TEST_CASE("server: idle counts whole frames: a trickle of bytes is idle, a listener is not") {
  testing::TestServerOptions opt;
  opt.server.idle_timeout = std::chrono::milliseconds(400);
  testing::TestServer ts(opt);
  auto listener = ts.Connect();
  net::Subscribe sub;
  sub.sub = 1;
  sub.schema_id = kPlayer;
  REQUIRE(listener->Subscribe(sub).ok());
  auto trickle = ts.Connect("trickle");
  // One byte of a frame every 100 ms: the frame never completes.
  std::string frame = WriteFrame(FrameType::kAssert, 1, 0, kPlayer, "t", std::string(100, 'x'));
  auto start = std::chrono::steady_clock::now();
  bool closed = false;
  for (size_t i = 0; i < 30 && !closed; ++i) {
    closed = !trickle->Send(frame.substr(i, 1)).ok();
    net::OwnedFrame f;
    auto r = trickle->TryReadFrame(std::chrono::milliseconds(100), &f);
    if (!r.ok() || (*r && IsType(f, FrameType::kError))) closed = true;
  }
  CHECK(closed);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(2'000));
  // The subscriber sent nothing for three idle timeouts and is still served.
  std::this_thread::sleep_for(std::chrono::milliseconds(1'200));
  std::string ping;
  net::EncodeReq(ping, FrameType::kPing, 7);
  REQUIRE(listener->Send(ping).ok());
  bool pong = false;
  for (int i = 0; i < 10 && !pong; ++i) {
    auto f = listener->ReadFrame();
    REQUIRE(f.ok());
    pong = IsType(*f, FrameType::kPong);
  }
  CHECK(pong);
}

TEST_CASE("server: an idle connection is closed after idle_timeout, a busy one is not") {
  testing::TestServerOptions opt;
  opt.server.idle_timeout = std::chrono::milliseconds(500);
  testing::TestServer ts(opt);
  auto idle = ts.Connect("idle");
  auto busy = ts.Connect();
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 10; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::string ping;
    net::EncodeReq(ping, FrameType::kPing, static_cast<uint64_t>(i));
    REQUIRE(busy->Send(ping).ok());
    auto f = busy->ReadFrame();
    REQUIRE(f.ok());
    CHECK(IsType(*f, FrameType::kPong));
  }
  std::vector<net::OwnedFrame> got;
  CHECK(testing::ReadUntilClosed(*idle, &got));
  CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(500));
  REQUIRE(got.size() == 1);
  net::Error e = ErrorOf(got[0]);
  CHECK(e.seq_or_req == 0);
  CHECK(e.code == static_cast<uint64_t>(net::ErrorCode::kOverloaded));
  CHECK(busy->Sync().ok());
}

TEST_CASE("server: many sources write at once on many connections") {
  testing::TestServer ts;
  constexpr int kConnections = 64;
  constexpr uint64_t kOps = 50;
  std::vector<std::unique_ptr<net::Client>> clients;
  for (int c = 0; c < kConnections; ++c)
    clients.push_back(ts.Connect(fmt::format("many-{}", c)));
  const engine::Schema& p = Player(*clients[0]);
  for (int c = 0; c < kConnections; ++c) {
    std::string frames;
    for (uint64_t seq = 1; seq <= kOps; ++seq) {
      // Every connection writes the same entities: each ends up with 64 claims.
      frames += WriteFrame(FrameType::kPatch, seq, seq, kPlayer, fmt::format("m-{}", seq % 5),
                           Record(p, {{"score", int64_t{c}}}));
    }
    REQUIRE(clients[static_cast<size_t>(c)]->Send(frames).ok());
  }
  for (int c = 0; c < kConnections; ++c) {
    CAPTURE(c);
    std::vector<net::OwnedFrame> others;
    CHECK(WaitForAck(*clients[static_cast<size_t>(c)], kOps, &others));
    CHECK(others.empty());
  }
  CHECK(Stat(*clients[0], "connections") == kConnections);
  CHECK(Stat(*clients[0], "ops_applied") == kConnections * kOps);
  CHECK(Stat(*clients[0], "entities") == 5);
  CHECK(Stat(*clients[0], "claims") == 5 * kConnections);
  // Same ts everywhere for m-0 (last seq 50): the greatest source name wins the tie.
  auto r = clients[0]->Query(p, "m-0", true);
  REQUIRE(r.ok());
  CHECK(r->claims.size() == kConnections);
  CHECK(r->record == Record(p, {{"score", int64_t{9}}}));  // "many-9" is the greatest name
}

TEST_CASE("server: connections arriving together never exceed max_connections") {
  testing::TestServerOptions opt;
  opt.server.max_connections = 2;
  testing::TestServer ts(opt);
  // Connect all at once, so the server accepts them back to back from its backlog.
  constexpr int kConnections = 24;
  std::vector<std::unique_ptr<testing::RawConnection>> conns;
  for (int i = 0; i < kConnections; ++i) {
    conns.push_back(std::make_unique<testing::RawConnection>(ts.port()));
  }
  int welcomed = 0, refused = 0;
  for (auto& c : conns) {
    REQUIRE(c->Send(testing::HelloFrame("")));
    auto f = c->ReadFrame();
    REQUIRE(f.ok());
    if (IsType(*f, FrameType::kWelcome)) {
      ++welcomed;
    } else {
      CHECK(ErrorOf(*f).code == static_cast<uint64_t>(net::ErrorCode::kOverloaded));
      ++refused;
    }
  }
  CHECK(welcomed == 2);
  CHECK(refused == kConnections - 2);
}
