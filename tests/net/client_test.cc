// net::Client against servers that misbehave (fake ones, listening in the test) and
// against the real one where request ids and op seqs meet: the frame size limit, the
// send timeout, and ERRORs matched to the request they belong to.

#include "net/client.h"

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <future>
#include <limits>
#include <string>
#include <thread>

#include "net/messages.h"
#include "support/test_server.h"
#include "util/coding.h"

using namespace conv;
using net::FrameType;
using testing::RawFrame;
using testing::WriteFrame;

namespace {

using Clock = std::chrono::steady_clock;

// A server that says WELCOME (with the player schema) to the first connection and
// then runs `script` on its socket in a thread of its own. No doctest macros there:
// the script reports through its return value, read by Finish().
class FakeServer {
 public:
  explicit FakeServer(std::function<bool(int fd, FakeServer& self)> script)
      : script_(std::move(script)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(listen_fd_ >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    REQUIRE(::listen(listen_fd_, 4) == 0);
    socklen_t len = sizeof(addr);
    REQUIRE(::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { ok_ = Serve(); });
  }
  ~FakeServer() {
    Stop();
    if (thread_.joinable()) thread_.join();
    if (conn_fd_ >= 0) ::close(conn_fd_);
    ::close(listen_fd_);
  }

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // Asks the script to end (scripts that wait poll stopping()).
  void Stop() { stop_ = true; }
  bool stopping() const { return stop_; }
  // Waits for the script, then closes the connection (a reset when the client's
  // bytes are unread); whether the handshake and the script went as planned.
  bool Finish() {
    Stop();
    if (thread_.joinable()) thread_.join();
    if (conn_fd_ >= 0) ::close(conn_fd_);
    conn_fd_ = -1;
    return ok_;
  }

  // Writes all of `bytes`; false when the connection failed.
  static bool Write(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

 private:
  bool Serve() {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(testing::kReplyTimeout.count())) != 1) return false;
    conn_fd_ = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn_fd_ < 0) return false;
    // Read the HELLO frame, whole.
    std::string in;
    for (;;) {
      if (in.size() >= net::kFrameHeader &&
          in.size() >= net::kFrameHeader +
                           util::DecodeFixed32(reinterpret_cast<const uint8_t*>(in.data()))) {
        break;
      }
      char buf[4096];
      ssize_t n = ::recv(conn_fd_, buf, sizeof(buf), 0);
      if (n <= 0) return false;
      in.append(buf, static_cast<size_t>(n));
    }
    if (static_cast<uint8_t>(in[net::kFrameHeader]) != static_cast<uint8_t>(FrameType::kHello)) {
      return false;
    }
    net::Welcome w;
    w.server_name = "fake";
    w.window_us = 10'000;
    w.partitions = 1;
    w.schemas.push_back(engine::PlayerSchema());
    std::string welcome;
    net::EncodeWelcome(welcome, w);
    if (!Write(conn_fd_, welcome)) return false;
    return script_(conn_fd_, *this);
  }

  std::function<bool(int, FakeServer&)> script_;
  int listen_fd_ = -1;
  int conn_fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  bool ok_ = false;
};

// Waits, without reading, until the test says stop (or a minute passed).
bool Idle(FakeServer& self) {
  auto until = Clock::now() + std::chrono::minutes(1);
  while (!self.stopping() && Clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return true;
}

std::string FrameHead(uint32_t length, FrameType type) {
  std::string out(4, '\0');
  util::EncodeFixed32(reinterpret_cast<uint8_t*>(out.data()), length);
  out.push_back(static_cast<char>(type));
  return out;
}

std::unique_ptr<net::Client> ConnectTo(const FakeServer& fake) {
  auto c = net::Client::Connect(fake.address(), net::Hello{}, testing::kReplyTimeout);
  REQUIRE_MESSAGE(c.ok(), (c.ok() ? "" : c.message()));
  return std::move(c).value();
}

bool Contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("client: a frame declaring 4 GiB is refused as soon as its length arrives") {
  FakeServer fake([](int fd, FakeServer& self) {
    // 0xffffffff bytes announced, a few sent, the rest never comes.
    return FakeServer::Write(fd, FrameHead(0xffffffff, FrameType::kResult) + "abc") && Idle(self);
  });
  auto c = ConnectTo(fake);
  CHECK(c->max_frame() == net::Client::kDefaultMaxFrame);
  CHECK(net::Client::kDefaultMaxFrame == 64u << 20);
  auto start = Clock::now();
  auto f = c->ReadFrame();
  REQUIRE_FALSE(f.ok());
  CHECK_MESSAGE(Contains(f.message(),
                         "frame of 4294967295 bytes, over the client's limit of "
                         "67108864 bytes"),
                f.message());
  // Refused on sight, not after waiting the timeout out for the rest.
  CHECK(Clock::now() - start < testing::kReplyTimeout / 2);
  CHECK_FALSE(c->HasBufferedFrame());
  CHECK(fake.Finish());
}

TEST_CASE("client: set_max_frame accepts a frame of exactly the limit and refuses one more") {
  FakeServer fake([](int fd, FakeServer& self) {
    std::string at_limit = FrameHead(1024, FrameType::kPong) + std::string(1023, 'p');
    return FakeServer::Write(fd, at_limit + FrameHead(1025, FrameType::kPong)) && Idle(self);
  });
  auto c = ConnectTo(fake);
  c->set_max_frame(1024);
  auto f = c->ReadFrame();
  REQUIRE_MESSAGE(f.ok(), f.message());
  CHECK(f->type == static_cast<uint8_t>(FrameType::kPong));
  CHECK(f->payload.size() == 1023);
  f = c->ReadFrame();
  REQUIRE_FALSE(f.ok());
  CHECK_MESSAGE(Contains(f.message(), "frame of 1025 bytes, over the client's limit of 1024"),
                f.message());
  CHECK(fake.Finish());
}

TEST_CASE("client: a Send to a server that never reads fails after the timeout") {
  FakeServer fake([](int, FakeServer& self) { return Idle(self); });
  auto c = ConnectTo(fake);
  c->set_timeout(std::chrono::milliseconds(300));
  // Far more than the socket buffers of both sides hold.
  std::string big = RawFrame(static_cast<uint8_t>(FrameType::kPing), std::string(64 << 20, 'x'));
  auto start = Clock::now();
  auto sent = std::async(std::launch::async, [&] { return c->Send(big); });
  bool returned = sent.wait_for(testing::kReplyTimeout) == std::future_status::ready;
  // A Send that never returns would hang the test: ending the fake server's side
  // makes it fail (and this check report it).
  CHECK_MESSAGE(returned, "Send still blocked after ", testing::kReplyTimeout.count(), " ms");
  fake.Finish();
  util::Status st = sent.get();
  auto took = Clock::now() - start;
  REQUIRE_FALSE(st.ok());
  CHECK_MESSAGE(Contains(st.message(), "send made no progress within 300 ms"), st.message());
  CHECK_MESSAGE(Contains(st.message(), "the server is not reading"), st.message());
  CHECK(took >= std::chrono::milliseconds(300));
  CHECK(took < testing::kReplyTimeout);
}

TEST_CASE("client: the send timeout bounds a stall, not a whole Send that keeps progressing") {
  // The server reads 1 MiB every 50 ms: a 16 MiB Send takes far longer than the
  // 300 ms timeout, yet never stalls that long.
  std::atomic<uint64_t> received{0};
  constexpr size_t kBytes = 16 << 20;
  FakeServer fake([&](int fd, FakeServer&) {
    std::string buf(1 << 20, '\0');
    while (received < kBytes) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      for (size_t got = 0; got < buf.size();) {
        ssize_t n = ::recv(fd, buf.data(), buf.size() - got, 0);
        if (n <= 0) return false;
        got += static_cast<size_t>(n);
        received += static_cast<uint64_t>(n);
        if (received >= kBytes) break;
      }
    }
    return received >= kBytes;
  });
  auto c = ConnectTo(fake);
  c->set_timeout(std::chrono::milliseconds(300));
  std::string big = RawFrame(static_cast<uint8_t>(FrameType::kPing), std::string(kBytes - 5, 'x'));
  auto start = Clock::now();
  util::Status st = c->Send(big);
  auto took = Clock::now() - start;
  CHECK_MESSAGE(st.ok(), st.message());
  CHECK(took > std::chrono::milliseconds(300));
  CHECK(fake.Finish());
  CHECK(received == kBytes);
}

TEST_CASE("client: an op's ERROR with the number of a pending QUERY's req is the op's") {
  testing::TestServer ts;
  auto w = ts.Connect("writer");
  const engine::Schema& p = testing::Player(*w);

  SUBCASE("an op seq") {
    // Op 1 names no schema the server knows: ERROR(1, unknown_schema) comes back
    // before the RESULT of the QUERY that follows it.
    REQUIRE(w->Send(WriteFrame(FrameType::kAssert, 1, 0, 999, "p-1", "")).ok());
    auto r = w->Query(p, "p-1", false);
    REQUIRE_MESSAGE(r.ok(), r.message());
    CHECK_FALSE(r->found);
  }
  SUBCASE("an op seq sent in pieces") {
    std::string op = WriteFrame(FrameType::kAssert, 1, 0, 999, "p-1", "");
    REQUIRE(w->Send(op.substr(0, 2)).ok());
    REQUIRE(w->Send(op.substr(2, 4)).ok());
    REQUIRE(w->Send(op.substr(6)).ok());
    auto r = w->Query(p, "p-1", false);
    REQUIRE_MESSAGE(r.ok(), r.message());
    CHECK_FALSE(r->found);
  }
  SUBCASE("a subscription's sub") {
    net::Subscribe s;
    s.sub = 1;
    s.schema_id = p.id;
    s.interval_ms = 3'600'001;  // refused: ERROR(1, bad_value)
    REQUIRE(w->Subscribe(s).ok());
    auto r = w->Query(p, "p-1", false);
    REQUIRE_MESSAGE(r.ok(), r.message());
    CHECK_FALSE(r->found);
  }
  SUBCASE("ops with seqs above the requests so far, then Sync and Stats") {
    REQUIRE(w->Query(p, "p-1", false).ok());  // req 1
    REQUIRE(w->Send(WriteFrame(FrameType::kAssert, 2, 0, 999, "p-1", "") +
                    WriteFrame(FrameType::kAssert, 3, 0, 999, "p-1", ""))
                .ok());
    CHECK(w->Sync().ok());
    auto stats = w->Stats();
    REQUIRE_MESSAGE(stats.ok(), stats.message());
    auto r = w->Query(p, "p-1", false);
    REQUIRE_MESSAGE(r.ok(), r.message());
  }
  // A QUERY's own error is still its failure.
  engine::Schema unknown = p;
  unknown.id = 999;
  auto r = w->Query(unknown, "p-1", false);
  REQUIRE_FALSE(r.ok());
  CHECK_MESSAGE(Contains(r.message(), "unknown_schema"), r.message());
  CHECK(w->last_error_code() == static_cast<uint64_t>(net::ErrorCode::kUnknownSchema));
}

TEST_CASE("client: no request id is left once a frame carried the largest u64") {
  testing::TestServer ts;
  auto w = ts.Connect("writer");
  const engine::Schema& p = testing::Player(*w);
  REQUIRE(w->Send(WriteFrame(FrameType::kAssert, std::numeric_limits<uint64_t>::max(), 0, 999,
                             "p-1", ""))
              .ok());
  auto r = w->Query(p, "p-1", false);
  REQUIRE_FALSE(r.ok());
  CHECK_MESSAGE(Contains(r.message(), "no request id is left"), r.message());
  CHECK_FALSE(w->Sync().ok());
  CHECK_FALSE(w->Stats().ok());
}
