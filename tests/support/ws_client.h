#pragma once

// A WebSocket client over loopback for tests, speaking RFC 6455 by hand so that a test
// can send what a good client never does (unmasked frames, a close in the middle of a
// message, oversized messages, bad upgrade requests).

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "net/messages.h"
#include "net/tls.h"
#include "support/test_server.h"
#include "util/status.h"

namespace conv::testing {

class WsTestClient {
 public:
  // Connects to 127.0.0.1:`port`, through TLS with `tls` (checked against
  // 127.0.0.1); fails the test when it cannot.
  explicit WsTestClient(uint16_t port, const net::SslCtxPtr& tls = nullptr);
  ~WsTestClient();
  WsTestClient(const WsTestClient&) = delete;
  WsTestClient& operator=(const WsTestClient&) = delete;

  // A GET request head for an upgrade, with `extra` header lines (each ending CRLF).
  static std::string UpgradeRequest(std::string_view extra = "");
  // Sends `request` and reads the response head; returns its status (0: none came)
  // and the head in *head. After a 101 the connection speaks WebSocket.
  int Handshake(std::string_view request, std::string* head = nullptr);
  // Handshake(UpgradeRequest()), then HELLO; fails the test unless WELCOME comes.
  void Open(std::string_view source = "");

  // A client frame: masked with a fixed key unless `masked` is false.
  static std::string Frame(uint8_t opcode, std::string_view payload, bool fin = true,
                           bool masked = true);
  bool Send(std::string_view bytes);
  // One binary message holding `bytes` (protocol frames).
  bool SendMessage(std::string_view bytes) { return Send(Frame(0x2, bytes)); }

  struct WsFrame {
    uint8_t opcode = 0;
    bool fin = false;
    bool masked = false;
    std::string payload;
  };
  // The next WebSocket frame from the server. Fails on timeout or the end of input.
  util::Result<WsFrame> ReadWsFrame(std::chrono::milliseconds timeout = kReplyTimeout);
  // The next protocol frame, from the payloads of the binary messages.
  util::Result<net::OwnedFrame> ReadFrame(std::chrono::milliseconds timeout = kReplyTimeout);
  // Reads until the server's close frame: its code (0 when the connection ended
  // without one, or on timeout). Protocol frames before it go to *before.
  uint16_t ReadClose(std::vector<net::OwnedFrame>* before = nullptr);
  // True when the server ends the TCP connection within kReplyTimeout.
  bool WaitEof();

 private:
  bool Fill(std::chrono::steady_clock::time_point deadline);
  int fd_ = -1;
  net::Transport transport_;
  std::string in_;      // raw bytes from the server
  std::string stream_;  // protocol bytes from its binary messages
};

}  // namespace conv::testing
