#pragma once

// WebSocket (RFC 6455) under the framing (docs/protocol.md, "WebSocket"): the opening
// handshake over the little HTTP of net/http.h, and the frames of one connection.
// Pure code, no sockets: Session drives it (net/session.cc), over TCP or TLS.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "net/http.h"

namespace conv::net {

// Close codes (RFC 6455 §7.4.1) the server sends.
enum class WsCloseCode : uint16_t {
  kNormal = 1000,
  kGoingAway = 1001,
  kProtocolError = 1002,
  kUnsupportedData = 1003,
  kInvalidPayload = 1007,
  kPolicyViolation = 1008,
  kTooBig = 1009,
};

enum class WsOpcode : uint8_t {
  kContinuation = 0x0,
  kText = 0x1,
  kBinary = 0x2,
  kClose = 0x8,
  kPing = 0x9,
  kPong = 0xA,
};

// Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + the RFC's GUID)).
std::string WsAcceptKey(std::string_view key);

// What a WebSocket listener does with the HTTP requests it gets.
struct WsHttpPolicy {
  // Origins (scheme://host[:port], as browsers send them) allowed besides the
  // listener's own (an Origin whose host:port is the request's Host); "*": any.
  // Requests without an Origin header (not from a browser) are always allowed.
  std::vector<std::string> allowed_origins;
  // Non-empty: GET / (without Upgrade) answers this page (text/html).
  std::string_view console_page;
};

struct WsHttpAnswer {
  bool upgrade = false;  // 101: the connection speaks WebSocket from now on
  int status = 0;
  std::string response;  // the bytes to send
  std::string why;       // for a refusal: which header and why (also the body)
};

// The answer to one request head: a WebSocket upgrade (101), the console page (200),
// or a refusal that names what is wrong: 400 for a bad upgrade request, 403 for an
// origin not allowed, 404, 405, 426 for a WebSocket version other than 13.
WsHttpAnswer AnswerWsHttp(const HttpRequest& req, const WsHttpPolicy& policy);

// The header of one unmasked, final server frame of `len` payload bytes.
void WsAppendHeader(std::string& out, WsOpcode opcode, uint64_t len);
// A whole close frame: the code, then `reason` (cut to fit 123 bytes).
std::string WsCloseFrame(uint16_t code, std::string_view reason);

// Decodes what a client sends once the handshake is done: frames must be masked;
// binary messages, whole or fragmented, carry the protocol's bytes; text messages are
// refused (1003); PING is answered with PONG; CLOSE ends the input. A message larger
// than `max_message` bytes, a frame that breaks a rule of RFC 6455 §5 or a close frame
// with a bad code or reason fails the connection with the RFC's code (failure()).
class WsDecoder {
 public:
  explicit WsDecoder(uint64_t max_message) : max_message_(max_message) {}

  // Consumes all of `in`: binary payload bytes are appended to *data as they arrive
  // (unmasked), replies (PONG) to *reply. Stops taking input at a failure or a close.
  void Feed(std::string_view in, std::string* data, std::string* reply);

  uint16_t failure() const { return failure_; }  // 0: none
  const std::string& why() const { return why_; }
  bool closed() const { return closed_; }            // the peer sent CLOSE
  uint16_t peer_code() const { return peer_code_; }  // its code; 1005: none given
  uint64_t offset() const { return offset_; }        // bytes consumed so far

 private:
  void Fail(WsCloseCode code, std::string why);
  // Handles the frame whose header is in header_; false after a failure.
  bool StartFrame();
  void EndControl(std::string* reply);

  const uint64_t max_message_;
  std::string header_;  // the current frame's header, while incomplete
  bool in_frame_ = false;
  uint8_t opcode_ = 0;
  bool fin_ = false;
  uint8_t mask_[4] = {0, 0, 0, 0};
  uint64_t left_ = 0;        // payload bytes of the current frame still to come
  uint64_t mask_pos_ = 0;    // payload bytes of the current frame unmasked so far
  bool in_message_ = false;  // a fragmented binary message is open
  uint64_t message_bytes_ = 0;
  std::string control_;  // the payload of the current control frame
  uint16_t failure_ = 0;
  std::string why_;
  bool closed_ = false;
  uint16_t peer_code_ = 0;
  uint64_t offset_ = 0;
  uint64_t frame_offset_ = 0;  // where the current frame started
};

// One WebSocket connection's state on the server, moved with it between I/O threads.
struct WsConnection {
  WsConnection(WsHttpPolicy p, uint64_t max_message) : policy(std::move(p)), decoder(max_message) {}
  WsHttpPolicy policy;
  bool open = false;  // the upgrade was answered
  std::string head;   // the request head, until complete
  WsDecoder decoder;
  std::string data;          // decoded protocol bytes not yet taken by the session
  std::string control;       // to send before the next message: HTTP answer, PONG
  uint16_t close_code = 0;   // the code of the close frame to send (0: not decided)
  std::string close_reason;  // and its reason
  bool close_sent = false;
  std::string raw;  // read buffer
};

}  // namespace conv::net
