#include "support/ws_client.h"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace conv::testing {

namespace {
constexpr uint8_t kMask[4] = {0x37, 0xfa, 0x21, 0x3d};
}

WsTestClient::WsTestClient(uint16_t port, const net::SslCtxPtr& tls) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd_ >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  transport_ = net::Transport(fd_);
  if (tls != nullptr) {
    auto t =
        net::Transport::Connect(fd_, tls, "127.0.0.1", static_cast<int>(kReplyTimeout.count()));
    REQUIRE_MESSAGE(t.ok(), (t.ok() ? "" : t.message()));
    transport_ = std::move(t).value();
  }
}

WsTestClient::~WsTestClient() {
  if (fd_ >= 0) ::close(fd_);
}

std::string WsTestClient::UpgradeRequest(std::string_view extra) {
  return fmt::format(
      "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{}\r\n",
      extra);
}

bool WsTestClient::Send(std::string_view bytes) {
  auto deadline = std::chrono::steady_clock::now() + kReplyTimeout;
  while (!bytes.empty()) {
    ssize_t n = transport_.Write(bytes.data(), bytes.size());
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      pollfd p{fd_, transport_.Events(POLLOUT), 0};
      ::poll(&p, 1, 100);
      continue;
    }
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

bool WsTestClient::Fill(std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    if (!transport_.Buffered()) {
      pollfd p{fd_, transport_.Events(POLLIN), 0};
      int rc = ::poll(&p, 1, static_cast<int>(left.count()));
      if (rc <= 0) continue;
    }
    char buf[64 * 1024];
    ssize_t n = transport_.Read(buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
    if (n <= 0) return false;
    in_.append(buf, static_cast<size_t>(n));
    return true;
  }
}

int WsTestClient::Handshake(std::string_view request, std::string* head) {
  if (!Send(request)) return 0;
  auto deadline = std::chrono::steady_clock::now() + kReplyTimeout;
  size_t end;
  while ((end = in_.find("\r\n\r\n")) == std::string::npos) {
    if (!Fill(deadline)) return 0;
  }
  std::string h = in_.substr(0, end + 4);
  in_.erase(0, end + 4);
  if (head != nullptr) *head = h;
  if (h.size() < 12 || h.compare(0, 9, "HTTP/1.1 ") != 0) return 0;
  return std::stoi(h.substr(9, 3));
}

void WsTestClient::Open(std::string_view source) {
  std::string head;
  REQUIRE_MESSAGE(Handshake(UpgradeRequest(), &head) == 101, head);
  REQUIRE(SendMessage(HelloFrame(source)));
  auto f = ReadFrame();
  REQUIRE_MESSAGE(f.ok(), (f.ok() ? "" : f.message()));
  REQUIRE(IsType(*f, net::FrameType::kWelcome));
}

std::string WsTestClient::Frame(uint8_t opcode, std::string_view payload, bool fin, bool masked) {
  std::string out;
  out.push_back(static_cast<char>((fin ? 0x80 : 0) | opcode));
  uint8_t m = masked ? 0x80 : 0;
  if (payload.size() < 126) {
    out.push_back(static_cast<char>(m | payload.size()));
  } else if (payload.size() <= 0xffff) {
    out.push_back(static_cast<char>(m | 126));
    out.push_back(static_cast<char>(payload.size() >> 8));
    out.push_back(static_cast<char>(payload.size()));
  } else {
    out.push_back(static_cast<char>(m | 127));
    for (int i = 7; i >= 0; --i)
      out.push_back(static_cast<char>(uint64_t(payload.size()) >> (8 * i)));
  }
  if (masked) out.append(reinterpret_cast<const char*>(kMask), 4);
  for (size_t i = 0; i < payload.size(); ++i)
    out.push_back(static_cast<char>(payload[i] ^ (masked ? kMask[i & 3] : 0)));
  return out;
}

util::Result<WsTestClient::WsFrame> WsTestClient::ReadWsFrame(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (in_.size() >= 2) {
      auto b0 = uint8_t(in_[0]), b1 = uint8_t(in_[1]);
      uint64_t len = b1 & 0x7f;
      size_t pos = 2;
      if (len == 126 && in_.size() >= 4) {
        len = (uint64_t(uint8_t(in_[2])) << 8) | uint8_t(in_[3]);
        pos = 4;
      } else if (len == 127 && in_.size() >= 10) {
        len = 0;
        for (int i = 0; i < 8; ++i)
          len = (len << 8) | uint8_t(in_[2 + i]);
        pos = 10;
      } else if (len >= 126) {
        pos = SIZE_MAX;
      }
      bool masked = (b1 & 0x80) != 0;
      if (pos != SIZE_MAX && in_.size() >= pos + (masked ? 4 : 0) + len) {
        WsFrame f;
        f.opcode = b0 & 0x0f;
        f.fin = (b0 & 0x80) != 0;
        f.masked = masked;
        f.payload = in_.substr(pos + (masked ? 4 : 0), len);
        in_.erase(0, pos + (masked ? 4 : 0) + len);
        return f;
      }
    }
    if (!Fill(deadline)) return util::Status::Error("timed out or closed");
  }
}

util::Result<net::OwnedFrame> WsTestClient::ReadFrame(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    net::Frame f;
    size_t consumed = 0;
    if (net::NextFrame(stream_, UINT32_MAX, &f, &consumed) == net::FrameStatus::kFrame) {
      net::OwnedFrame out{f.type, std::string(f.payload)};
      stream_.erase(0, consumed);
      return out;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    auto w = ReadWsFrame(std::max(left, std::chrono::milliseconds(1)));
    if (!w.ok()) return w.status();
    if (w->opcode == 0x8) return util::Status::Error("close frame");
    if (w->opcode == 0x2 || w->opcode == 0x0) stream_ += w->payload;
  }
}

uint16_t WsTestClient::ReadClose(std::vector<net::OwnedFrame>* before) {
  for (;;) {
    auto w = ReadWsFrame();
    if (!w.ok()) return 0;
    if (w->opcode == 0x8) {
      if (w->payload.size() < 2) return 1005;
      return static_cast<uint16_t>((uint8_t(w->payload[0]) << 8) | uint8_t(w->payload[1]));
    }
    if (w->opcode == 0x2 || w->opcode == 0x0) stream_ += w->payload;
    net::Frame f;
    size_t consumed = 0;
    while (net::NextFrame(stream_, UINT32_MAX, &f, &consumed) == net::FrameStatus::kFrame) {
      if (before != nullptr) before->push_back({f.type, std::string(f.payload)});
      stream_.erase(0, consumed);
    }
  }
}

bool WsTestClient::WaitEof() {
  auto deadline = std::chrono::steady_clock::now() + kReplyTimeout;
  while (Fill(deadline)) {
  }
  return std::chrono::steady_clock::now() < deadline;
}

}  // namespace conv::testing
