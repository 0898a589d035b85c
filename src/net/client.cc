#include "net/client.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <thread>
#include <utility>

#include "net/address.h"
#include "util/clock.h"
#include "util/coding.h"

namespace conv::net {

namespace {

// Milliseconds left until `deadline_ns` (monotonic), at least 0.
int MillisLeft(uint64_t deadline_ns) {
  uint64_t now = util::MonoNanos();
  return now >= deadline_ns ? 0 : static_cast<int>((deadline_ns - now + 999'999) / 1'000'000);
}

}  // namespace

Client::~Client() {
  if (fd_ >= 0) ::close(fd_);
}

util::Result<std::unique_ptr<Client>> Client::Connect(const std::string& server, const Hello& hello,
                                                      std::chrono::milliseconds timeout,
                                                      const SslCtxPtr& tls) {
  auto servers = ParseAddressList(server);
  if (!servers.ok()) return servers.status();
  ClientOptions options;
  options.servers = std::move(servers).value();
  options.timeout = timeout;
  options.tls = tls;
  return Connect(options, hello);
}

util::Result<std::unique_ptr<Client>> Client::Connect(const ClientOptions& options,
                                                      const Hello& hello) {
  if (options.servers.empty()) return util::Status::Error("no server address to connect to");
  return ConnectAny(options, hello, "");
}

namespace {

// A server's refusal of HELLO after which another server (or the same one later) may
// take it: not the owner, stopping, out of connections or source slots.
bool RetryableRefusal(uint64_t code) {
  return code == static_cast<uint64_t>(ErrorCode::kNotOwner) ||
         code == static_cast<uint64_t>(ErrorCode::kShuttingDown) ||
         code == static_cast<uint64_t>(ErrorCode::kOverloaded);
}

}  // namespace

util::Result<std::unique_ptr<Client>> Client::ConnectAny(const ClientOptions& options,
                                                         const Hello& hello,
                                                         const std::string& first) {
  std::vector<std::string> order;
  if (!first.empty()) order.push_back(first);
  for (const std::string& s : options.servers) {
    if (s != first) order.push_back(s);
  }
  // Each address tried, with its last error, in the order first tried.
  std::vector<std::pair<std::string, std::string>> failures;
  auto note = [&failures](const std::string& server, std::string error) {
    for (auto& f : failures) {
      if (f.first == server) {
        f.second = std::move(error);
        return;
      }
    }
    failures.emplace_back(server, std::move(error));
  };
  const uint64_t start = util::MonoNanos();
  const uint64_t deadline = start + static_cast<uint64_t>(options.retry_for.count()) * 1'000'000;
  auto pause = std::chrono::milliseconds(50);
  for (int round = 1;; ++round) {
    for (const std::string& entry : order) {
      std::string target = entry;
      for (int hop = 0;; ++hop) {
        uint64_t code = 0;
        std::string owner;
        auto c = ConnectOnce(target, hello, options.timeout, options.tls, &code, &owner);
        if (c.ok()) {
          (*c)->options_ = options;
          (*c)->hello_ = hello;
          (*c)->server_ = target;
          return c;
        }
        if (code != 0 && !RetryableRefusal(code)) return c.status();
        if (!owner.empty() && hop == kMaxOwnerRedirects) {
          note(target, fmt::format("{} (after following {} not_owner redirects)", c.message(),
                                   kMaxOwnerRedirects));
          break;
        }
        note(target, c.message());
        if (owner.empty()) break;
        target = owner;
      }
    }
    uint64_t now = util::MonoNanos();
    if (now >= deadline) {
      if (failures.size() == 1 && options.retry_for.count() == 0) {
        return util::Status::Error(failures.front().second);
      }
      std::string list, why;
      for (const auto& [server, error] : failures) {
        list += (list.empty() ? "" : ", ") + server;
        why += fmt::format("\n  {}: {}", server, error);
      }
      return util::Status::Error(
          fmt::format("no server took the connection ({} tried, {} round(s) in {} ms): {}{}",
                      failures.size(), round, (now - start) / 1'000'000, list, why));
    }
    uint64_t wait_ns =
        std::min<uint64_t>(static_cast<uint64_t>(pause.count()) * 1'000'000, deadline - now);
    std::this_thread::sleep_for(std::chrono::nanoseconds(wait_ns));
    pause = std::min(pause * 2, std::chrono::milliseconds(500));
  }
}

util::Status Client::Reconnect(const std::string& why) {
  in_reconnect_ = true;
  auto st = ReconnectAndResend(why);
  in_reconnect_ = false;
  return st;
}

util::Status Client::ReconnectAndResend(const std::string& why) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  transport_ = Transport();
  auto fresh = ConnectAny(options_, hello_, redirect_);
  if (!fresh.ok()) {
    closed_ = true;
    return util::Status::Error(fmt::format("lost the connection to {} ({}) and found no server: {}",
                                           server_, why, fresh.message()));
  }
  Client& f = **fresh;
  ++reconnects_;
  fd_ = f.fd_;
  f.fd_ = -1;
  transport_ = std::move(f.transport_);
  welcome_ = std::move(f.welcome_);
  credit_ = f.credit_;
  server_ = std::move(f.server_);
  in_ = std::move(f.in_);
  in_pos_ = f.in_pos_;
  closed_ = false;
  redirect_.clear();
  // Every op not acknowledged, unchanged and in order: what the server already has
  // (up to WELCOME's last_applied_seq) it skips and acknowledges.
  std::string resend;
  for (const Unacked& u : unacked_)
    resend += u.frame;
  std::string_view rest = resend;
  uint64_t deadline = util::MonoNanos() + static_cast<uint64_t>(timeout_.count()) * 1'000'000;
  while (!rest.empty()) {
    ssize_t n = transport_.Write(rest.data(), rest.size());
    if (n >= 0) {
      rest.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      return util::Status::Error(fmt::format("resending {} unacknowledged ops to {} failed: {}",
                                             unacked_.size(), server_, std::strerror(errno)));
    }
    // The server reads what we resend unless we do not read its ACKs: take them.
    OwnedFrame frame;
    auto r = ReadSocket(deadline, false, &frame);
    if (!r.ok()) return r.status();
    if (*r != ReadOutcome::kFrame) {
      return util::Status::Error(
          fmt::format("resending {} unacknowledged ops to {}: no progress within {} ms",
                      unacked_.size(), server_, timeout_.count()));
    }
    held_.push_back(std::move(frame));
  }
  return util::Status::Ok();
}

util::Result<std::unique_ptr<Client>> Client::ConnectOnce(const std::string& server,
                                                          const Hello& hello,
                                                          std::chrono::milliseconds timeout,
                                                          const SslCtxPtr& tls, uint64_t* code,
                                                          std::string* owner) {
  std::string host;
  uint16_t port;
  if (auto st = ParseHostPort(server, &host, &port); !st.ok()) return st;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string port_text = std::to_string(port);
  if (int rc = ::getaddrinfo(host.c_str(), port_text.c_str(), &hints, &res); rc != 0) {
    return util::Status::Error(fmt::format("cannot resolve '{}': {}", host, ::gai_strerror(rc)));
  }
  std::unique_ptr<Client> c(new Client());
  c->timeout_ = timeout;
  std::string last_error = "no address";
  uint64_t deadline = util::MonoNanos() + static_cast<uint64_t>(timeout.count()) * 1'000'000;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    int flags = ::fcntl(fd, F_GETFL, 0);
    ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      rc = ::poll(&p, 1, MillisLeft(deadline));
      if (rc == 1) {
        int err = 0;
        socklen_t len = sizeof(err);
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        rc = err == 0 ? 0 : -1;
        errno = err;
      } else {
        if (rc == 0) errno = ETIMEDOUT;
        rc = -1;
      }
    }
    if (rc == 0) {
      ::fcntl(fd, F_SETFL, flags);
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      c->fd_ = fd;
      break;
    }
    last_error = std::strerror(errno);
    ::close(fd);
  }
  ::freeaddrinfo(res);
  if (c->fd_ < 0) {
    return util::Status::Error(fmt::format("cannot connect to {}: {}", server, last_error));
  }
  c->transport_ = Transport(c->fd_);
  if (tls != nullptr) {
    auto t = Transport::Connect(c->fd_, tls, host, MillisLeft(deadline));
    if (!t.ok()) return util::Status::Error(fmt::format("{}: {}", server, t.message()));
    c->transport_ = std::move(t).value();
  }
  std::string frame;
  EncodeHello(frame, hello);
  if (auto st = c->Send(frame); !st.ok()) return st;
  auto reply = c->ReadFrame();
  if (!reply.ok()) {
    return util::Status::Error(fmt::format("no WELCOME from {}: {}", server, reply.message()));
  }
  if (reply->type == static_cast<uint8_t>(FrameType::kError)) {
    Error e;
    if (DecodeError(reply->payload, &e)) {
      c->last_error_code_ = e.code;
      *code = e.code;
      if (e.code == static_cast<uint64_t>(ErrorCode::kNotOwner)) {
        *owner = OwnerInNotOwnerMessage(e.message);
      }
      return util::Status::Error(
          fmt::format("{} refused HELLO: {} ({})", server, e.message, ErrorCodeName(e.code)));
    }
  }
  if (reply->type != static_cast<uint8_t>(FrameType::kWelcome) ||
      !DecodeWelcome(reply->payload, &c->welcome_)) {
    return util::Status::Error(fmt::format("{} did not answer HELLO with a valid WELCOME", server));
  }
  c->credit_ = c->welcome_.credit;
  return c;
}

const engine::Schema* Client::FindSchema(std::string_view name) const {
  for (const auto& s : welcome_.schemas) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

const engine::Schema* Client::FindSchema(uint64_t id) const {
  for (const auto& s : welcome_.schemas) {
    if (s.id == id) return &s;
  }
  return nullptr;
}

util::Status Client::Send(std::string_view bytes) {
  if (reconnecting()) {
    // The frames are kept for a resend: each Send carries whole frames.
    Frame f;
    size_t consumed = 0;
    std::string_view rest = bytes;
    while (NextFrame(rest, std::numeric_limits<uint32_t>::max(), &f, &consumed) ==
           FrameStatus::kFrame) {
      rest.remove_prefix(consumed);
    }
    if (!rest.empty()) {
      return util::Status::Error(fmt::format(
          "Send of {} bytes ends inside a frame (its last {} bytes): a client that reconnects "
          "takes whole frames",
          bytes.size(), rest.size()));
    }
  }
  if (obey_credit_ && credit_ > 0) {
    // The whole batch must fit the credit (a batch larger than the credit waits until
    // nothing is unacknowledged).
    if (uint64_t n = CountWrites(bytes); unacked_.size() + n > credit_) {
      if (auto st = WaitForCredit(n); !st.ok()) return st;
    }
  }
  NoteSent(bytes);
  while (!bytes.empty()) {
    ssize_t n = transport_.Write(bytes.data(), bytes.size());
    if (n >= 0) {
      bytes.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      std::string why = transport_.error().empty() ? std::strerror(errno) : transport_.error();
      // The write ops of `bytes` are among the unacknowledged ones Reconnect resends;
      // a request is sent again by the one waiting for its reply.
      if (reconnecting() && !in_reconnect_) return Reconnect("send failed: " + why);
      return util::Status::Error(fmt::format("send failed: {}", why));
    }
    // The socket buffer is full: wait for room, at most the timeout.
    uint64_t deadline = util::MonoNanos() + static_cast<uint64_t>(timeout_.count()) * 1'000'000;
    for (;;) {
      pollfd p{fd_, transport_.Events(POLLOUT), 0};
      int rc = ::poll(&p, 1, MillisLeft(deadline));
      if (rc > 0) break;
      if (rc == 0) {
        return util::Status::Error(fmt::format(
            "send made no progress within {} ms ({} bytes unsent): the server is not reading",
            timeout_.count(), bytes.size()));
      }
      if (errno != EINTR) {
        return util::Status::Error(fmt::format("poll failed: {}", std::strerror(errno)));
      }
    }
  }
  return util::Status::Ok();
}

void Client::NoteSent(std::string_view bytes) {
  if (reconnecting()) {
    // Whole frames (Send checked): keep each write op's frame for a resend.
    Frame f;
    size_t consumed = 0;
    while (NextFrame(bytes, std::numeric_limits<uint32_t>::max(), &f, &consumed) ==
           FrameStatus::kFrame) {
      util::Reader r(f.payload);
      uint64_t v;
      if (f.type != static_cast<uint8_t>(FrameType::kHello) && r.Varint(&v)) {
        max_sent_ = std::max(max_sent_, v);
        auto type = static_cast<FrameType>(f.type);
        if (type == FrameType::kAssert || type == FrameType::kPatch ||
            type == FrameType::kRetract) {
          unacked_.push_back({v, std::string(bytes.substr(0, consumed))});
        }
      }
      bytes.remove_prefix(consumed);
    }
    return;
  }
  constexpr size_t kHead = kFrameHeader + 1 + util::kMaxVarintBytes;
  while (!bytes.empty()) {
    if (out_skip_ > 0) {
      size_t k = static_cast<size_t>(std::min<uint64_t>(out_skip_, bytes.size()));
      out_skip_ -= k;
      bytes.remove_prefix(k);
      continue;
    }
    // The head is the length, then (when the frame is that long) the type and up to
    // a varint's worth of payload.
    uint64_t total = kFrameHeader;
    if (out_head_.size() >= kFrameHeader) {
      total += util::DecodeFixed32(reinterpret_cast<const uint8_t*>(out_head_.data()));
    }
    size_t head = static_cast<size_t>(std::min<uint64_t>(total, kHead));
    if (out_head_.size() < head) {
      size_t k = std::min(head - out_head_.size(), bytes.size());
      out_head_.append(bytes.substr(0, k));
      bytes.remove_prefix(k);
      if (out_head_.size() == kFrameHeader && total == kFrameHeader) continue;  // length known now
      if (out_head_.size() < head) continue;
    }
    if (out_head_.size() > kFrameHeader &&
        static_cast<uint8_t>(out_head_[kFrameHeader]) != static_cast<uint8_t>(FrameType::kHello)) {
      util::Reader r(std::string_view(out_head_).substr(kFrameHeader + 1));
      uint64_t v;
      if (r.Varint(&v)) {
        max_sent_ = std::max(max_sent_, v);
        auto type = static_cast<FrameType>(out_head_[kFrameHeader]);
        if (type == FrameType::kAssert || type == FrameType::kPatch ||
            type == FrameType::kRetract) {
          unacked_.push_back({v, {}});
        }
      }
    }
    out_skip_ = total - head;
    out_head_.clear();
  }
}

util::Result<uint64_t> Client::NextReq() {
  if (max_sent_ == UINT64_MAX) {
    return util::Status::Error(
        "no request id is left above the numbers this connection has sent (a frame carried "
        "18446744073709551615)");
  }
  next_req_ = std::max(next_req_, max_sent_ + 1);
  return next_req_++;
}

std::string Client::TakeBuffered() {
  std::string rest;
  for (const OwnedFrame& f : held_) {
    size_t b = BeginFrame(rest, static_cast<FrameType>(f.type));
    rest.append(f.payload);
    EndFrame(rest, b);
  }
  held_.clear();
  rest.append(in_, in_pos_);
  in_.clear();
  in_pos_ = 0;
  return rest;
}

bool Client::HasBufferedFrame() const {
  if (!held_.empty()) return true;
  Frame f;
  size_t consumed;
  return NextFrame(std::string_view(in_).substr(in_pos_), max_frame_, &f, &consumed) ==
         FrameStatus::kFrame;
}

util::Result<OwnedFrame> Client::ReadFrame() {
  uint64_t deadline = util::MonoNanos() + static_cast<uint64_t>(timeout_.count()) * 1'000'000;
  OwnedFrame frame;
  auto r = ReadUntil(deadline, false, &frame);
  if (!r.ok()) return r.status();
  if (*r != ReadOutcome::kFrame) {
    return util::Status::Error(fmt::format("no reply within {} ms", timeout_.count()));
  }
  return frame;
}

util::Result<bool> Client::TryReadFrame(std::chrono::milliseconds wait, OwnedFrame* frame) {
  uint64_t deadline = util::MonoNanos() + static_cast<uint64_t>(wait.count()) * 1'000'000;
  auto r = ReadUntil(deadline, true, frame);
  if (!r.ok()) return r.status();
  return *r == ReadOutcome::kFrame;
}

void Client::NoteReceived(const OwnedFrame& f) {
  uint64_t v;
  if (f.type == static_cast<uint8_t>(FrameType::kAck) && DecodeAck(f.payload, &v)) {
    while (!unacked_.empty() && unacked_.front().seq <= v)
      unacked_.pop_front();
  } else if (f.type == static_cast<uint8_t>(FrameType::kCredit) && DecodeCredit(f.payload, &v)) {
    credit_ = v;
  } else if (f.type == static_cast<uint8_t>(FrameType::kError) && reconnecting()) {
    // A deposed owner names its successor before it closes: reconnect there first.
    Error e;
    if (DecodeError(f.payload, &e) && e.seq_or_req == 0 &&
        e.code == static_cast<uint64_t>(ErrorCode::kNotOwner)) {
      redirect_ = OwnerInNotOwnerMessage(e.message);
    }
  }
}

uint64_t Client::CountWrites(std::string_view bytes) const {
  if (out_skip_ > 0 || !out_head_.empty()) return 1;
  uint64_t n = 0;
  Frame f;
  size_t consumed = 0;
  while (NextFrame(bytes, std::numeric_limits<uint32_t>::max(), &f, &consumed) ==
         FrameStatus::kFrame) {
    auto t = static_cast<FrameType>(f.type);
    if (t == FrameType::kAssert || t == FrameType::kPatch || t == FrameType::kRetract) ++n;
    bytes.remove_prefix(consumed);
  }
  return bytes.empty() ? n : n + 1;
}

util::Status Client::WaitForCredit(uint64_t sending) {
  uint64_t deadline = util::MonoNanos() + static_cast<uint64_t>(timeout_.count()) * 1'000'000;
  while (!unacked_.empty() && unacked_.size() + sending > credit_) {
    OwnedFrame f;
    auto r = ReadSocket(deadline, false, &f);
    if (!r.ok()) return r.status();
    if (*r != ReadOutcome::kFrame) {
      return util::Status::Error(
          fmt::format("no ACK within {} ms with {} ops unacknowledged, the connection's credit",
                      timeout_.count(), unacked_.size()));
    }
    held_.push_back(std::move(f));
  }
  return util::Status::Ok();
}

util::Result<Client::ReadOutcome> Client::ReadUntil(uint64_t deadline_ns, bool return_on_signal,
                                                    OwnedFrame* frame) {
  if (!held_.empty()) {
    *frame = std::move(held_.front());
    held_.pop_front();
    return ReadOutcome::kFrame;
  }
  return ReadSocket(deadline_ns, return_on_signal, frame);
}

util::Result<Client::ReadOutcome> Client::ReadSocket(uint64_t deadline_ns, bool return_on_signal,
                                                     OwnedFrame* frame) {
  for (;;) {
    Frame f;
    size_t consumed = 0;
    FrameStatus st = NextFrame(std::string_view(in_).substr(in_pos_), max_frame_, &f, &consumed);
    if (st == FrameStatus::kFrame) {
      frame->type = f.type;
      frame->payload.assign(f.payload);
      in_pos_ += consumed;
      if (in_pos_ == in_.size()) {
        in_.clear();
        in_pos_ = 0;
      }
      NoteReceived(*frame);
      return ReadOutcome::kFrame;
    }
    if (st == FrameStatus::kEmpty) return util::Status::Error("server sent a frame of length 0");
    if (st == FrameStatus::kTooLarge) {
      uint32_t len = util::DecodeFixed32(reinterpret_cast<const uint8_t*>(in_.data() + in_pos_));
      return util::Status::Error(fmt::format(
          "server sent a frame of {} bytes, over the client's limit of {} bytes", len, max_frame_));
    }
    if (closed_) return util::Status::Error("the server closed the connection");
    if (in_pos_ > 0) {
      in_.erase(0, in_pos_);
      in_pos_ = 0;
    }
    pollfd p{fd_, transport_.Events(POLLIN), 0};
    // TLS may hold received bytes already: then read without waiting.
    int rc = transport_.Buffered() ? 1 : ::poll(&p, 1, MillisLeft(deadline_ns));
    if (rc == 0) return ReadOutcome::kTimeout;
    if (rc < 0) {
      if (errno == EINTR) {
        if (return_on_signal) return ReadOutcome::kInterrupted;
        continue;
      }
      return util::Status::Error(fmt::format("poll failed: {}", std::strerror(errno)));
    }
    char buf[64 * 1024];
    ssize_t n = transport_.Read(buf, sizeof(buf));
    if (n == 0) {
      closed_ = true;
      if (reconnecting() && !in_reconnect_) {
        if (auto st = Reconnect("the server closed the connection"); !st.ok()) return st;
        continue;
      }
      return util::Status::Error("the server closed the connection");
    }
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      std::string why = transport_.error().empty() ? std::strerror(errno) : transport_.error();
      if (reconnecting() && !in_reconnect_) {
        if (auto st = Reconnect("receive failed: " + why); !st.ok()) return st;
        continue;
      }
      if (errno == ECONNRESET) closed_ = true;
      return util::Status::Error(fmt::format("receive failed: {}", why));
    }
    in_.append(buf, static_cast<size_t>(n));
  }
}

util::Result<OwnedFrame> Client::WaitFor(FrameType type, uint64_t req, std::string_view request) {
  for (;;) {
    uint64_t reconnects = reconnects_;
    auto f = ReadFrame();
    if (reconnects_ != reconnects) {
      // A new connection: the request went with the old one.
      if (auto st = Send(request); !st.ok()) return st;
    }
    if (!f.ok()) return f;
    if (f->type == static_cast<uint8_t>(FrameType::kError)) {
      Error e;
      if (!DecodeError(f->payload, &e)) return util::Status::Error("malformed ERROR from server");
      // A server that stops or was deposed closes next: the reply comes from the
      // server Reconnect finds.
      if (e.seq_or_req == 0 && reconnecting() && RetryableRefusal(e.code)) continue;
      // `req` is above every op seq and sub this connection sent (NextReq), so an
      // ERROR carrying it is this request's; any other number is an op's or an
      // earlier request's.
      if (e.seq_or_req == 0 || e.seq_or_req == req) {
        last_error_code_ = e.code;
        return util::Status::Error(fmt::format("{} ({})", e.message, ErrorCodeName(e.code)));
      }
      continue;
    }
    if (f->type != static_cast<uint8_t>(type)) continue;
    util::Reader r(f->payload);
    uint64_t got;
    if (r.Varint(&got) && got == req) return f;
  }
}

util::Result<Result> Client::Query(const engine::Schema& schema, std::string_view id,
                                   bool with_claims) {
  auto req = NextReq();
  if (!req.ok()) return req.status();
  net::Query q;
  q.req = *req;
  q.schema_id = schema.id;
  q.id = id;
  q.flags = with_claims ? kQueryIncludeClaims : 0;
  std::string frame;
  EncodeQuery(frame, q);
  if (auto st = Send(frame); !st.ok()) return st;
  auto f = WaitFor(FrameType::kResult, q.req, frame);
  if (!f.ok()) return f.status();
  Result r;
  if (!DecodeResult(f->payload, schema, with_claims, &r)) {
    return util::Status::Error("malformed RESULT from server");
  }
  return r;
}

util::Result<StatList> Client::Stats() {
  auto req = NextReq();
  if (!req.ok()) return req.status();
  std::string frame;
  EncodeReq(frame, FrameType::kStats, *req);
  if (auto st = Send(frame); !st.ok()) return st;
  auto f = WaitFor(FrameType::kStatsReply, *req, frame);
  if (!f.ok()) return f.status();
  StatList stats;
  uint64_t got;
  if (!DecodeStatsReply(f->payload, &got, &stats)) {
    return util::Status::Error("malformed STATS_REPLY from server");
  }
  return stats;
}

util::Status Client::Sync() {
  auto req = NextReq();
  if (!req.ok()) return req.status();
  std::string frame;
  EncodeReq(frame, FrameType::kSync, *req);
  if (auto st = Send(frame); !st.ok()) return st;
  auto f = WaitFor(FrameType::kSynced, *req, frame);
  return f.ok() ? util::Status::Ok() : f.status();
}

util::Status Client::Subscribe(const net::Subscribe& s) {
  std::string frame;
  EncodeSubscribe(frame, s);
  return Send(frame);
}

}  // namespace conv::net
