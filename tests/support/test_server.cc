#include "support/test_server.h"

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "support/serve_process.h"
#include "util/coding.h"

namespace conv::testing {

TestServer::TestServer(TestServerOptions options) {
  if (!options.schema_text.empty()) {
    auto st = schemas_.AddFromText(options.schema_text, "test");
    REQUIRE_MESSAGE(st.ok(), st.message());
  }
  engine::EngineOptions eo;
  eo.partitions = options.partitions;
  eo.lanes = options.io_threads;
  eo.window = options.window;
  eo.resume_retention = options.resume_retention;
  engine_ = std::make_unique<engine::Engine>(eo, schemas_, sources_);
  options.server.listen = "127.0.0.1:0";
  server_ = std::make_unique<net::Server>(*engine_, options.server, log_);
  auto st = server_->Listen();
  REQUIRE_MESSAGE(st.ok(), st.message());
  server_->Start();
}

TestServer::~TestServer() {
  server_->Shutdown();
}

std::unique_ptr<net::Client> TestServer::Connect(const std::string& source,
                                                 const std::string& token) {
  net::Hello hello;
  hello.source = source;
  hello.auth_token = token;
  auto c = net::Client::Connect(address(), hello, kReplyTimeout);
  REQUIRE_MESSAGE(c.ok(), (c.ok() ? "" : c.message()));
  return std::move(c).value();
}

void BoundSends(int fd) {
  timeval tv{};
  tv.tv_sec = std::chrono::duration_cast<std::chrono::seconds>(kReplyTimeout).count();
  REQUIRE(::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == 0);
}

RawConnection::RawConnection(uint16_t port) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd_ >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = ::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  REQUIRE_MESSAGE(rc == 0, "connect: ", std::strerror(errno));
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  BoundSends(fd_);
}

RawConnection::~RawConnection() {
  if (fd_ >= 0) ::close(fd_);
}

bool RawConnection::Send(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

util::Result<net::OwnedFrame> RawConnection::ReadFrame(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    net::Frame f;
    size_t consumed = 0;
    if (net::NextFrame(in_, UINT32_MAX, &f, &consumed) == net::FrameStatus::kFrame) {
      net::OwnedFrame out{f.type, std::string(f.payload)};
      in_.erase(0, consumed);
      return out;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return util::Status::Error("timed out");
    pollfd p{fd_, POLLIN, 0};
    int rc = ::poll(&p, 1, static_cast<int>(left.count()));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) continue;  // the deadline check above ends the wait
    char buf[64 * 1024];
    ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      closed_ = true;
      return util::Status::Error(n == 0 ? "closed" : std::strerror(errno));
    }
    in_.append(buf, static_cast<size_t>(n));
  }
}

namespace {

// After a failed Client::ReadFrame: whether the peer has closed the socket (a read
// returns EOF or a reset) rather than merely not answering in time.
bool PeerClosed(int fd) {
  char byte;
  ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

}  // namespace

bool ReadUntilClosed(net::Client& c, std::vector<net::OwnedFrame>* frames) {
  c.set_timeout(kReplyTimeout);
  for (;;) {
    auto f = c.ReadFrame();
    if (!f.ok()) return PeerClosed(c.fd());
    if (frames != nullptr) frames->push_back(std::move(f).value());
  }
}

bool ReadUntilClosed(RawConnection& c, std::vector<net::OwnedFrame>* frames) {
  for (;;) {
    auto f = c.ReadFrame();
    if (!f.ok()) return c.closed();
    if (frames != nullptr) frames->push_back(std::move(f).value());
  }
}

std::string RawFrame(uint8_t type, std::string_view payload) {
  std::string out;
  util::PutFixed32(out, static_cast<uint32_t>(payload.size() + 1));
  util::PutU8(out, type);
  out.append(payload);
  return out;
}

std::string HelloFrame(std::string_view source, std::string_view token, uint64_t version) {
  net::Hello h;
  h.version = version;
  h.source = std::string(source);
  h.auth_token = std::string(token);
  std::string out;
  net::EncodeHello(out, h);
  return out;
}

std::string WriteFrame(net::FrameType type, uint64_t seq, uint64_t ts, uint64_t schema,
                       std::string_view id, std::string_view record) {
  std::string out;
  net::EncodeWriteOp(out, {type, seq, ts, schema, id, record});
  return out;
}

std::string QueryFrame(uint64_t req, uint64_t schema, std::string_view id, bool with_claims) {
  std::string out;
  net::EncodeQuery(out, {req, schema, id, with_claims ? net::kQueryIncludeClaims : uint8_t{0}});
  return out;
}

std::string Record(const engine::Schema& schema,
                   std::initializer_list<std::pair<std::string_view, engine::Value>> fields) {
  engine::RecordBuilder b(schema);
  for (const auto& [name, value] : fields) {
    auto st = b.Set(name, value);
    REQUIRE_MESSAGE(st.ok(), st.message());
  }
  return b.Encode();
}

const engine::Schema& Player(net::Client& c) {
  const engine::Schema* s = c.FindSchema("player");
  REQUIRE(s != nullptr);
  return *s;
}

int64_t I64Field(const engine::Schema& schema, std::string_view record, std::string_view field) {
  engine::RecordView view;
  auto st = engine::ParseRecord(schema, record, &view);
  REQUIRE_MESSAGE(st.ok(), st.message());
  int i = schema.FieldIndex(field);
  REQUIRE_MESSAGE(i >= 0, "no field ", field);
  if ((view.mask & (uint64_t{1} << i)) == 0) return -1;
  std::string_view slices[engine::kMaxFields];
  engine::SliceFields(schema, view.mask, view.values, slices);
  return std::get<int64_t>(engine::DecodeValue(engine::FieldType::kI64, slices[i]));
}

uint64_t RssKiB() {
  return RssKiBOf(::getpid());
}

void CheckRssGrowth(uint64_t before_kib, uint64_t after_kib, uint64_t limit_kib) {
#if defined(__SANITIZE_ADDRESS__)
  (void)before_kib, (void)after_kib, (void)limit_kib;
  MESSAGE("RSS bound not checked: AddressSanitizer's quarantine keeps freed memory resident");
#else
  CHECK(after_kib < before_kib + limit_kib);
#endif
}

bool WaitForAck(net::Client& c, uint64_t seq, std::vector<net::OwnedFrame>* others) {
  c.set_timeout(kReplyTimeout);
  auto deadline = std::chrono::steady_clock::now() + kReplyTimeout;
  while (std::chrono::steady_clock::now() < deadline) {
    auto f = c.ReadFrame();
    if (!f.ok()) {
      MESSAGE("waiting for ACK ", seq, ": ", f.message());
      return false;
    }
    uint64_t acked = 0;
    if (IsType(*f, net::FrameType::kAck) && net::DecodeAck(f->payload, &acked)) {
      if (acked >= seq) return true;
      continue;
    }
    if (others != nullptr) others->push_back(std::move(f).value());
  }
  MESSAGE("no ACK of ", seq, " within the timeout");
  return false;
}

uint64_t Stat(net::Client& c, std::string_view name) {
  auto stats = c.Stats();
  REQUIRE_MESSAGE(stats.ok(), (stats.ok() ? "" : stats.message()));
  for (const auto& [n, v] : *stats) {
    if (n == name) return v;
  }
  FAIL("STATS has no counter ", name);
  return 0;
}

net::Error ErrorOf(const net::OwnedFrame& f) {
  net::Error e;
  REQUIRE_MESSAGE(IsType(f, net::FrameType::kError), "expected ERROR, got ",
                  net::FrameTypeName(f.type));
  REQUIRE(net::DecodeError(f.payload, &e));
  return e;
}

bool IsType(const net::OwnedFrame& f, net::FrameType type) {
  return f.type == static_cast<uint8_t>(type);
}

}  // namespace conv::testing
