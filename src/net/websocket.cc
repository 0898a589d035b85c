#include "net/websocket.h"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cctype>

#include "util/json.h"

namespace conv::net {

namespace {

constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
constexpr size_t kMaxControlPayload = 125;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Whether any `name` header lists `token` (comma-separated, any case).
bool HasToken(const HttpRequest& req, std::string_view name, std::string_view token) {
  for (const auto& [n, v] : req.headers) {
    if (n != name) continue;
    std::string_view rest = v;
    while (!rest.empty()) {
      size_t comma = rest.find(',');
      std::string_view item = rest.substr(0, comma);
      while (!item.empty() && (item.front() == ' ' || item.front() == '\t'))
        item.remove_prefix(1);
      while (!item.empty() && (item.back() == ' ' || item.back() == '\t'))
        item.remove_suffix(1);
      if (Lower(item) == token) return true;
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  return false;
}

// The decoded length of a base64 text, or -1 when it is not base64.
int Base64Length(std::string_view s) {
  if (s.empty() || s.size() % 4 != 0) return -1;
  size_t pad = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '=') {
      if (i + 2 < s.size()) return -1;
      ++pad;
      continue;
    }
    if (pad > 0) return -1;
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '/') return -1;
  }
  return static_cast<int>(s.size() / 4 * 3 - pad);
}

WsHttpAnswer Refuse(int status, std::string why,
                    std::vector<std::pair<std::string, std::string>> headers = {}) {
  WsHttpAnswer a;
  a.status = status;
  a.why = std::move(why);
  a.response =
      FormatHttpResponse(status, "text/plain; charset=utf-8", a.why + "\n", false, headers);
  return a;
}

// A close code a peer may send (RFC 6455 §7.4).
bool ValidPeerCode(uint16_t code) {
  if (code >= 3000 && code <= 4999) return true;
  return code >= 1000 && code <= 1014 && code != 1004 && code != 1005 && code != 1006;
}

}  // namespace

std::string WsAcceptKey(std::string_view key) {
  std::string in(key);
  in += kGuid;
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(in.data()), in.size(), digest);
  unsigned char out[4 * ((SHA_DIGEST_LENGTH + 2) / 3) + 1];
  int n = EVP_EncodeBlock(out, digest, SHA_DIGEST_LENGTH);
  return std::string(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
}

WsHttpAnswer AnswerWsHttp(const HttpRequest& req, const WsHttpPolicy& policy) {
  bool upgrade = !req.Header("upgrade").empty() || !req.Header("sec-websocket-key").empty();
  if (!upgrade) {
    if (policy.console_page.empty()) {
      return Refuse(400, "this address accepts WebSocket connections only (Upgrade: websocket)");
    }
    if (req.method != "GET" && req.method != "HEAD") {
      return Refuse(405, fmt::format("method {} is not allowed: use GET", req.method),
                    {{"Allow", "GET, HEAD"}});
    }
    if (req.path != "/")
      return Refuse(404, fmt::format("no page at {}: the console is at /", req.path));
    WsHttpAnswer a;
    a.status = 200;
    a.response = FormatHttpResponse(200, "text/html; charset=utf-8", policy.console_page,
                                    req.method == "HEAD",
                                    {{"Cache-Control", "no-store"},
                                     {"X-Content-Type-Options", "nosniff"},
                                     {"Content-Security-Policy",
                                      "default-src 'none'; script-src 'unsafe-inline'; "
                                      "style-src 'unsafe-inline'; connect-src 'self'; "
                                      "img-src data:"}});
    return a;
  }
  if (req.method != "GET") {
    return Refuse(400, fmt::format("a WebSocket upgrade must be a GET, not {}", req.method));
  }
  if (!HasToken(req, "upgrade", "websocket")) {
    return Refuse(400, "the Upgrade header must be websocket");
  }
  if (!HasToken(req, "connection", "upgrade")) {
    return Refuse(400, "the Connection header must list upgrade");
  }
  if (req.Header("host").empty()) return Refuse(400, "the Host header is missing");
  std::string_view version = req.Header("sec-websocket-version");
  if (version != "13") {
    return Refuse(426,
                  version.empty()
                      ? std::string("the Sec-WebSocket-Version header is missing")
                      : fmt::format("Sec-WebSocket-Version {} is not supported", version),
                  {{"Sec-WebSocket-Version", "13"}});
  }
  std::string_view key = req.Header("sec-websocket-key");
  if (Base64Length(key) != 16) {
    return Refuse(400, "the Sec-WebSocket-Key header must be 16 bytes in base64");
  }
  std::string_view origin = req.Header("origin");
  if (!origin.empty()) {
    bool allowed = false;
    std::string o = Lower(origin);
    size_t scheme_end = o.find("://");
    if (scheme_end != std::string::npos && o.substr(scheme_end + 3) == Lower(req.Header("host"))) {
      allowed = true;  // the page was served by this listener
    }
    for (const auto& a : policy.allowed_origins) {
      if (a == "*" || Lower(a) == o) allowed = true;
    }
    if (!allowed) {
      return Refuse(403,
                    fmt::format("origin {} is not allowed (serve --ws-allowed-origins)", origin));
    }
  }
  WsHttpAnswer a;
  a.upgrade = true;
  a.status = 101;
  a.response = fmt::format(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: {}\r\n\r\n",
      WsAcceptKey(key));
  return a;
}

void WsAppendHeader(std::string& out, WsOpcode opcode, uint64_t len) {
  out.push_back(static_cast<char>(0x80 | static_cast<uint8_t>(opcode)));
  if (len < 126) {
    out.push_back(static_cast<char>(len));
  } else if (len <= 0xffff) {
    out.push_back(126);
    out.push_back(static_cast<char>(len >> 8));
    out.push_back(static_cast<char>(len));
  } else {
    out.push_back(127);
    for (int i = 7; i >= 0; --i)
      out.push_back(static_cast<char>(len >> (8 * i)));
  }
}

std::string WsCloseFrame(uint16_t code, std::string_view reason) {
  reason = reason.substr(0, kMaxControlPayload - 2);
  // Do not cut a UTF-8 sequence in two.
  while (!reason.empty() && !util::IsValidUtf8(reason))
    reason.remove_suffix(1);
  std::string out;
  WsAppendHeader(out, WsOpcode::kClose, 2 + reason.size());
  out.push_back(static_cast<char>(code >> 8));
  out.push_back(static_cast<char>(code));
  out.append(reason);
  return out;
}

void WsDecoder::Fail(WsCloseCode code, std::string why) {
  failure_ = static_cast<uint16_t>(code);
  why_ = fmt::format("{} (WebSocket frame at offset {})", why, frame_offset_);
}

bool WsDecoder::StartFrame() {
  auto b0 = static_cast<uint8_t>(header_[0]);
  auto b1 = static_cast<uint8_t>(header_[1]);
  fin_ = (b0 & 0x80) != 0;
  opcode_ = b0 & 0x0f;
  if ((b0 & 0x70) != 0) {
    Fail(WsCloseCode::kProtocolError, "reserved bits set: no extension was agreed");
    return false;
  }
  if ((b1 & 0x80) == 0) {
    Fail(WsCloseCode::kProtocolError, "unmasked frame: a client must mask every frame");
    return false;
  }
  uint64_t len = b1 & 0x7f;
  size_t pos = 2;
  if (len == 126) {
    len = (uint64_t(uint8_t(header_[2])) << 8) | uint8_t(header_[3]);
    pos = 4;
    if (len < 126) {
      Fail(WsCloseCode::kProtocolError, "length not in its shortest form");
      return false;
    }
  } else if (len == 127) {
    len = 0;
    for (int i = 0; i < 8; ++i)
      len = (len << 8) | uint8_t(header_[2 + i]);
    pos = 10;
    if (len >> 63) {
      Fail(WsCloseCode::kProtocolError, "length with its most significant bit set");
      return false;
    }
    if (len <= 0xffff) {
      Fail(WsCloseCode::kProtocolError, "length not in its shortest form");
      return false;
    }
  }
  std::copy(header_.begin() + static_cast<ptrdiff_t>(pos),
            header_.begin() + static_cast<ptrdiff_t>(pos + 4), mask_);
  left_ = len;
  mask_pos_ = 0;
  switch (opcode_) {
    case uint8_t(WsOpcode::kClose):
    case uint8_t(WsOpcode::kPing):
    case uint8_t(WsOpcode::kPong):
      if (!fin_) {
        Fail(WsCloseCode::kProtocolError, "fragmented control frame");
        return false;
      }
      if (len > kMaxControlPayload) {
        Fail(WsCloseCode::kProtocolError,
             fmt::format("control frame of {} bytes: the limit is 125", len));
        return false;
      }
      control_.clear();
      return true;
    case uint8_t(WsOpcode::kText):
      Fail(WsCloseCode::kUnsupportedData,
           "text message: the protocol's frames travel in binary messages");
      return false;
    case uint8_t(WsOpcode::kBinary):
      if (in_message_) {
        Fail(WsCloseCode::kProtocolError, "a new message started before the fragmented one ended");
        return false;
      }
      in_message_ = true;
      message_bytes_ = 0;
      break;
    case uint8_t(WsOpcode::kContinuation):
      if (!in_message_) {
        Fail(WsCloseCode::kProtocolError, "continuation frame without a message to continue");
        return false;
      }
      break;
    default:
      Fail(WsCloseCode::kProtocolError, fmt::format("unknown opcode {:#x}", opcode_));
      return false;
  }
  message_bytes_ += len;
  if (message_bytes_ > max_message_) {
    Fail(WsCloseCode::kTooBig,
         fmt::format("message of {} bytes or more: the limit is {} (--max-frame plus 4)",
                     message_bytes_, max_message_));
    return false;
  }
  if (fin_) in_message_ = false;
  return true;
}

void WsDecoder::EndControl(std::string* reply) {
  switch (opcode_) {
    case uint8_t(WsOpcode::kPing):
      WsAppendHeader(*reply, WsOpcode::kPong, control_.size());
      reply->append(control_);
      return;
    case uint8_t(WsOpcode::kPong):
      return;
    default:
      break;
  }
  // CLOSE
  if (control_.size() == 1) {
    Fail(WsCloseCode::kProtocolError, "close frame with a 1-byte payload");
    return;
  }
  peer_code_ = 1005;
  if (control_.size() >= 2) {
    peer_code_ = static_cast<uint16_t>((uint8_t(control_[0]) << 8) | uint8_t(control_[1]));
    if (!ValidPeerCode(peer_code_)) {
      Fail(WsCloseCode::kProtocolError, fmt::format("close code {} is not allowed", peer_code_));
      return;
    }
    if (!util::IsValidUtf8(std::string_view(control_).substr(2))) {
      Fail(WsCloseCode::kInvalidPayload, "close reason is not valid UTF-8");
      return;
    }
  }
  closed_ = true;
}

void WsDecoder::Feed(std::string_view in, std::string* data, std::string* reply) {
  while (!in.empty() && failure_ == 0 && !closed_) {
    if (!in_frame_) {
      if (header_.empty()) frame_offset_ = offset_;
      // Take bytes until the header is whole: 2, then the length's extension, then
      // the masking key.
      size_t need = 2;
      for (;;) {
        if (header_.size() >= 2) {
          uint8_t l = uint8_t(header_[1]) & 0x7f;
          need = 2 + (l == 126 ? 2 : l == 127 ? 8 : 0) + ((uint8_t(header_[1]) & 0x80) ? 4 : 0);
        }
        if (header_.size() >= need || in.empty()) break;
        header_.push_back(in.front());
        in.remove_prefix(1);
        ++offset_;
      }
      if (header_.size() < need) return;
      // An unmasked header is complete without a key: StartFrame refuses it.
      bool ok = StartFrame();
      header_.clear();
      if (!ok) return;
      in_frame_ = true;
    }
    bool control = opcode_ >= 0x8;
    size_t n = static_cast<size_t>(std::min<uint64_t>(left_, in.size()));
    std::string* to = control ? &control_ : data;
    size_t at = to->size();
    to->append(in.data(), n);
    for (size_t i = 0; i < n; ++i)
      (*to)[at + i] = static_cast<char>((*to)[at + i] ^ mask_[(mask_pos_ + i) & 3]);
    mask_pos_ += n;
    left_ -= n;
    offset_ += n;
    in.remove_prefix(n);
    if (left_ == 0) {
      in_frame_ = false;
      if (control) EndControl(reply);
    }
  }
}

}  // namespace conv::net
