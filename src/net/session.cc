#include "net/session.h"

#include <fmt/format.h>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "engine/record.h"
#include "net/server.h"
#include "util/clock.h"
#include "util/coding.h"

namespace conv::net {

namespace {

constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);
constexpr size_t kReadChunk = 64 * 1024;
// Largest frame before HELLO: version, a source name of at most 255 bytes, a token and
// a lease fit in far less; the server's own token may make it larger.
constexpr size_t kHelloFrameBytes = 4096;
// Seconds of silence before TCP keepalive probes start, between probes, and probes
// unanswered before the kernel ends the connection: a peer that vanished (half-open
// connection) is noticed within about two minutes.
constexpr int kKeepIdleSeconds = 60;
constexpr int kKeepIntervalSeconds = 10;
constexpr int kKeepProbes = 6;
constexpr auto kCloseGrace = std::chrono::seconds(2);
// Largest HTTP request head a WebSocket listener reads.
constexpr size_t kMaxHttpHead = 8192;

}  // namespace

Session::Session(asio::ip::tcp::socket socket, IoThread& io, Server& server, bool adopted,
                 SslPtr tls, std::unique_ptr<WsConnection> ws)
    : socket_(std::move(socket)),
      tls_(std::move(tls)),
      tls_ready_(adopted),
      ws_(std::move(ws)),
      io_(io),
      server_(server),
      write_signal_(io.ctx, std::chrono::steady_clock::time_point::max()),
      resume_signal_(io.ctx, std::chrono::steady_clock::time_point::max()),
      drain_signal_(io.ctx),
      watchdog_(io.ctx),
      in_(kHelloFrameBytes + kFrameHeader, '\0'),
      connected_at_(std::chrono::steady_clock::now()),
      last_activity_(connected_at_) {
  // `connections` was counted by the accept loop; the destructor gives it back.
  if (!adopted) server_.counters().connections_total.fetch_add(1, std::memory_order_relaxed);
}

Session::~Session() {
  if (!handed_off_) server_.counters().connections.fetch_sub(1, std::memory_order_relaxed);
}

asio::io_context& Session::context() {
  return io_.ctx;
}

void Session::Start() {
  asio::error_code ec;
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  socket_.set_option(asio::socket_base::keep_alive(true), ec);
  int fd = socket_.native_handle();
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &kKeepIdleSeconds, sizeof(int));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &kKeepIntervalSeconds, sizeof(int));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &kKeepProbes, sizeof(int));
  // TLS reads and writes the descriptor itself (net/tls.h) and must never block.
  if (tls_ != nullptr) socket_.non_blocking(true, ec);
  auto self = shared_from_this();
  asio::co_spawn(
      io_.ctx, [self] { return self->ReadLoop(); }, asio::detached);
  asio::co_spawn(
      io_.ctx, [self] { return self->WriteLoop(); }, asio::detached);
  asio::co_spawn(
      io_.ctx, [self] { return self->Watchdog(); }, asio::detached);
}

asio::awaitable<void> Session::ReadLoop() {
  auto self = shared_from_this();
  bool peer_gone = false;
  if (tls_ != nullptr && !tls_ready_ && !co_await AcceptTls()) {
    peer_gone = tls_ != nullptr;  // in clear: drain what the client sent, as below
  }
  if (ws_ != nullptr && ws_->raw.empty()) ws_->raw.resize(kReadChunk);
  while (!closing_ && !reading_stopped_) {
    if (!held_) {
      if (in_.size() - in_len_ < kReadChunk / 4) {
        // Grow only as far as one maximal frame needs; whole frames are consumed below.
        size_t limit = FrameLimit() + kFrameHeader;
        if (hello_done_) limit = std::max(limit, kReadChunk);
        in_.resize(std::min(limit, std::max(in_.size() * 2, in_len_ + kReadChunk)));
      }
      if (ws_ != nullptr && !ws_->data.empty()) {
        TakeWsData();  // decoded earlier, did not fit then
      } else if (ws_ != nullptr && ws_->decoder.closed()) {
        break;  // the peer's close frame, after everything it sent before was handled
      } else {
        // WebSocket: read into the connection's buffer, decode into in_.
        auto into = ws_ != nullptr ? asio::buffer(ws_->raw)
                                   : asio::buffer(in_.data() + in_len_, in_.size() - in_len_);
        auto [ec, n] = co_await ReadSome(into);
        if (ec) peer_gone = true;
        if (ec || closing_ || reading_stopped_) break;
        server_.counters().bytes_in.fetch_add(n, std::memory_order_relaxed);
        if (ws_ == nullptr) {
          in_len_ += n;
        } else {
          if (!FeedWs(std::string_view(ws_->raw.data(), n))) continue;  // closing
          TakeWsData();
        }
      }
    }
    // else a pause left whole frames unhandled: handle them before reading more.
    now_us_ = util::WallMicros();
    now_mono_us_ = util::MonoNanos() / 1000;
    ProcessInput();
    if (hand_off_) {
      hand_off_ = false;
      if (HandOff()) co_return;  // the read thread's session carries on
      SendWelcome();             // stays here after all
      held_ = in_len_ > 0;
      Kick();
      continue;
    }
    if (io_.lane != nullptr) io_.lane->Flush();
    Kick();
    if (in_.size() > 2 * kReadChunk && in_len_ <= kReadChunk / 2) {
      // Give back what one large frame needed.
      in_.resize(kReadChunk);
      in_.shrink_to_fit();
    }
    while (!closing_ && !reading_stopped_ && ShouldPause()) {
      reader_paused_ = true;
      resume_signal_.expires_at(std::chrono::steady_clock::time_point::max());
      co_await resume_signal_.async_wait(kNoThrow);
      reader_paused_ = false;
      last_activity_ = std::chrono::steady_clock::now();  // paused by us, not idle
    }
  }
  if (!reading_stopped_) Close();
  // Drop what the peer still sends until it closes its side (or the writer gives up
  // after the close grace period and closes the socket): closing with unread input
  // would send a reset, which can cost the peer the last frames written to it.
  while (!peer_gone) {
    auto [ec, n] = co_await socket_.async_read_some(asio::buffer(in_), kNoThrow);
    if (ec) peer_gone = true;
  }
  peer_closed_ = true;
  drain_signal_.cancel();
}

asio::awaitable<std::tuple<asio::error_code, size_t>> Session::ReadSome(asio::mutable_buffer into) {
  if (tls_ == nullptr) co_return co_await socket_.async_read_some(into, kNoThrow);
  co_return co_await TlsReadSome(tls_.get(), socket_, into);
}

bool Session::FeedWs(std::string_view raw) {
  WsConnection& ws = *ws_;
  if (!ws.open) {
    ws.head.append(raw);
    HttpRequest req;
    HttpParse st = ParseHttpRequest(ws.head, kMaxHttpHead, &req);
    if (st == HttpParse::kNeedMore) return true;
    WsHttpAnswer answer;
    if (st == HttpParse::kOk) {
      answer = AnswerWsHttp(req, ws.policy);
    } else {
      answer.status = st == HttpParse::kTooLarge ? 431 : 400;
      answer.why = st == HttpParse::kTooLarge
                       ? fmt::format("no complete request head within {} bytes", kMaxHttpHead)
                       : std::string("malformed HTTP request");
      answer.response =
          FormatHttpResponse(answer.status, "text/plain; charset=utf-8", answer.why + "\n");
    }
    ws.control += answer.response;
    if (!answer.upgrade) {
      if (answer.status != 200) {
        asio::error_code ignored;
        auto peer = socket_.remote_endpoint(ignored);
        server_.log().Info("WebSocket request from {}:{} refused with {}: {}",
                           peer.address().to_string(), peer.port(), answer.status, answer.why);
      }
      Close();
      return false;
    }
    ws.open = true;
    // Bytes the client sent after its request head (without waiting for the 101)
    // are frames already.
    std::string rest = ws.head.substr(HttpHeadLength(ws.head));
    std::string().swap(ws.head);
    ws.decoder.Feed(rest, &ws.data, &ws.control);
  } else {
    ws.decoder.Feed(raw, &ws.data, &ws.control);
  }
  if (ws.decoder.failure() != 0) {
    asio::error_code ignored;
    auto peer = socket_.remote_endpoint(ignored);
    server_.log().Info("WebSocket connection from {}:{} failed: {}", peer.address().to_string(),
                       peer.port(), ws.decoder.why());
    SetWsClose(static_cast<WsCloseCode>(ws.decoder.failure()), ws.decoder.why());
    Close();
    return false;
  }
  if (ws.decoder.closed()) {
    // Echoes the peer's code (RFC 6455 §5.5.1) once the frames it sent before the
    // close are handled (the reader stops then).
    uint16_t code = ws.decoder.peer_code();
    SetWsClose(static_cast<WsCloseCode>(code == 1005 ? 1000 : code), "");
  }
  Kick();  // a PONG to send
  return true;
}

void Session::TakeWsData() {
  size_t n = std::min(in_.size() - in_len_, ws_->data.size());
  std::memcpy(in_.data() + in_len_, ws_->data.data(), n);
  in_len_ += n;
  ws_->data.erase(0, n);
}

void Session::SetWsClose(WsCloseCode code, std::string reason) {
  if (ws_ == nullptr || ws_->close_code != 0) return;
  ws_->close_code = static_cast<uint16_t>(code);
  ws_->close_reason = std::move(reason);
}

uint32_t Session::FrameLimit() const {
  const ServerOptions& opt = server_.options();
  if (hello_done_) return opt.max_frame;
  return static_cast<uint32_t>(
      std::min<size_t>(opt.max_frame, std::max(kHelloFrameBytes, opt.auth_token.size() + 512)));
}

bool Session::ShouldPause() const {
  return welcome_pending_ || out_.size() > server_.options().output_high_water ||
         (source_ != 0 && (credit_.over_limit() || io_.lane->Congested()));  // writers have a lane
}

void Session::Resume() {
  if (reader_paused_ && !ShouldPause()) resume_signal_.cancel();
}

asio::awaitable<void> Session::WriteLoop() {
  auto self = shared_from_this();
  bool write_failed = false;
  std::vector<asio::const_buffer> buffers;
  for (;;) {
    if (handed_off_) {
      // Nothing was written yet (HELLO is the first frame and got no reply here).
      io_.sessions.erase(this);
      co_return;
    }
    if (sink_ != nullptr) {
      sink_->Take(&feeding_, &ended_subs_);
      // Ended by the server (their ERROR is among the pieces): the ids are free, and
      // no longer count against the connection's limit.
      for (uint64_t sub : ended_subs_)
        subs_.erase(sub);
      ended_subs_.clear();
    }
    if (out_.empty() && feeding_.empty() && !WsControlPending()) {
      if (closing_) {
        if (ws_ != nullptr && ws_->open && !ws_->close_sent) {
          // The last frame of a WebSocket connection: its close.
          ws_->close_sent = true;
          SetWsClose(WsCloseCode::kNormal, "");
          ws_->control += WsCloseFrame(ws_->close_code, ws_->close_reason);
          continue;
        }
        break;
      }
      writer_idle_ = true;
      write_signal_.expires_at(std::chrono::steady_clock::time_point::max());
      co_await write_signal_.async_wait(kNoThrow);
      writer_idle_ = false;
      continue;
    }
    // Replies first, then subscription frames: each piece's header and its body,
    // which it may share with other subscribers, gathered into one write.
    std::swap(out_, writing_);
    buffers.clear();
    size_t feed_bytes = 0;
    for (const auto& p : feeding_)
      feed_bytes += p.bytes();
    // WebSocket: control frames (or the HTTP answer) first, then everything else as
    // one binary message; no message before the upgrade or after the close frame
    // (which is queued only once nothing else is left).
    bool send_data = true;
    if (ws_ != nullptr) {
      send_data = ws_->open && !ws_->close_sent;
      ws_out_.clear();
      std::swap(ws_out_, ws_->control);
      if (send_data && writing_.size() + feed_bytes > 0) {
        WsAppendHeader(ws_out_, WsOpcode::kBinary, writing_.size() + feed_bytes);
      }
    }
    if (!ws_out_.empty()) buffers.push_back(asio::buffer(ws_out_));
    if (send_data) {
      if (!writing_.empty()) buffers.push_back(asio::buffer(writing_));
      for (const auto& p : feeding_) {
        buffers.push_back(asio::buffer(p.header));
        if (p.body) buffers.push_back(asio::buffer(*p.body));
      }
    }
    if (tls_ != nullptr && !tls_ready_) {
      // A deadline or a stop before the TLS handshake finished: nothing can be sent.
      out_.clear();
      writing_.clear();
      feeding_.clear();
      write_failed = true;
      break;
    }
    asio::error_code ec;
    size_t n = 0;
    if (buffers.empty()) {
      // WebSocket: only data that may not be sent.
    } else if (tls_ == nullptr) {
      std::tie(ec, n) = co_await asio::async_write(socket_, buffers, kNoThrow);
    } else {
      std::tie(ec, n) = co_await WriteTls(buffers);
    }
    server_.counters().bytes_out.fetch_add(n, std::memory_order_relaxed);
    writing_.clear();
    feeding_.clear();
    if (sink_ != nullptr && feed_bytes > 0) {
      sink_->Written(feed_bytes);
      if (sink_->backlog() < server_.fanout().backlog_limit() / 2 &&
          sink_->drain_wanted.exchange(false)) {
        server_.fanout().Drained(sink_.get());
      }
    }
    if (ec) {
      out_.clear();
      closing_ = true;
      write_failed = true;
      break;
    }
    Resume();
  }
  watchdog_.cancel();
  resume_signal_.cancel();
  writer_done_ = true;
  if (sink_ != nullptr) server_.fanout().CloseSink(sink_.get());
  StopConsuming();
  // Only the source's last session starts its lease: a taken-over one's lease is
  // replaced by its successor's.
  if (source_ != 0 && server_.ReleaseSource(source_, this) && lease_ms_ > 0) {
    server_.StartLease(source_, std::chrono::milliseconds(lease_ms_), io_);
  }
  // Everything is written: end our side, then close once the peer has closed its
  // own (the reader drops its input meanwhile) or the close grace period passed.
  asio::error_code ignored;
  if (tls_ != nullptr && tls_ready_ && !write_failed) TlsClose(tls_.get());
  socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
  if (!peer_closed_ && !write_failed) {
    drain_signal_.expires_after(kCloseGrace);
    co_await drain_signal_.async_wait(kNoThrow);
  }
  socket_.close(ignored);
  io_.sessions.erase(this);  // may drop the last reference but for `self`
}

asio::awaitable<bool> Session::AcceptTls() {
  auto self = shared_from_this();
  bool plain = false;
  std::string why;
  asio::error_code ec = co_await TlsAccept(tls_.get(), socket_, &plain, &why);
  if (!ec) {
    tls_ready_ = true;
    co_return true;
  }
  asio::error_code ignored;
  auto peer = socket_.remote_endpoint(ignored);
  server_.log().Info("TLS handshake with {}:{} failed: {}", peer.address().to_string(), peer.port(),
                     why.empty() ? ec.message() : why);
  if (plain) {
    // Answer in clear, which a client that did not start TLS can read.
    tls_.reset();
    Fail(ErrorCode::kHandshakeRequired,
         "this server accepts TLS connections only: connect with TLS (--tls)");
  } else {
    Close();
  }
  co_return false;
}

asio::awaitable<std::tuple<asio::error_code, size_t>> Session::WriteTls(
    const std::vector<asio::const_buffer>& buffers) {
  if (buffers.size() == 1) co_return co_await TlsWrite(tls_.get(), socket_, buffers.front());
  // One TLS record per piece would cost a header, a MAC and a write(2) each: gather.
  tls_out_.clear();
  for (const auto& b : buffers)
    tls_out_.append(static_cast<const char*>(b.data()), b.size());
  auto result = co_await TlsWrite(tls_.get(), socket_, asio::buffer(tls_out_));
  if (tls_out_.capacity() > 2 * kReadChunk) std::string().swap(tls_out_);
  co_return result;
}

asio::awaitable<void> Session::Watchdog() {
  auto self = shared_from_this();
  const auto& opt = server_.options();
  while (!writer_done_ && !handed_off_) {
    auto now = std::chrono::steady_clock::now();
    std::chrono::steady_clock::time_point deadline;
    if (closing_) {
      deadline = last_activity_ + kCloseGrace;
    } else if (!hello_done_) {
      deadline = connected_at_ + opt.handshake_timeout;
    } else if (opt.idle_timeout.count() > 0) {
      // A subscriber only listens, and a reader the server paused cannot send: they
      // are not idle.
      if (!subs_.empty() || reader_paused_ || held_) last_activity_ = now;
      deadline = last_activity_ + opt.idle_timeout;
    } else {
      deadline = std::chrono::steady_clock::time_point::max();
    }
    if (now >= deadline) {
      if (closing_) {
        // The peer is not reading what is left to send; drop it.
        asio::error_code ignored;
        socket_.close(ignored);
        break;
      }
      if (!hello_done_) {
        Fail(ErrorCode::kHandshakeRequired,
             fmt::format("no HELLO within {} ms of connecting", opt.handshake_timeout.count()));
      } else {
        Fail(ErrorCode::kOverloaded,
             fmt::format("connection idle for {} ms (--idle-timeout)", opt.idle_timeout.count()));
      }
      continue;
    }
    watchdog_.expires_at(deadline);
    co_await watchdog_.async_wait(kNoThrow);
  }
}

void Session::Kick() {
  // A subscription piece may be waiting in sink_: waking an idle writer is cheap.
  if (writer_idle_ && (!out_.empty() || closing_ || sink_ != nullptr || WsControlPending())) {
    write_signal_.cancel();
  }
}

void Session::Close() {
  if (closing_) return;
  closing_ = true;
  StopConsuming();
  last_activity_ = std::chrono::steady_clock::now();  // starts the close grace period
  watchdog_.cancel();
  resume_signal_.cancel();
  Kick();
}

void Session::StopReading() {
  reading_stopped_ = true;
  resume_signal_.cancel();
}

void Session::Fail(ErrorCode code, std::string message) {
  if (closing_) return;
  server_.counters().CountError(code);
  SetWsClose(
      code == ErrorCode::kShuttingDown ? WsCloseCode::kGoingAway : WsCloseCode::kPolicyViolation,
      std::string(ErrorCodeName(static_cast<uint64_t>(code))));
  EncodeError(out_, {0, static_cast<uint64_t>(code), std::move(message)});
  Close();
}

void Session::OpError(uint64_t seq_or_req, ErrorCode code, std::string message) {
  server_.counters().op_errors.fetch_add(1, std::memory_order_relaxed);
  server_.counters().CountError(code);
  EncodeError(out_, {seq_or_req, static_cast<uint64_t>(code), std::move(message)});
}

void Session::ProcessInput() {
  std::string_view buf(in_.data(), in_len_);
  size_t pos = 0;
  const size_t out_limit = server_.options().output_high_water;
  held_ = false;
  while (!closing_) {
    // A WELCOME waiting for the hand-over, or replies the client has not read yet
    // (one read of small QUERYs can ask for gigabytes): the rest waits in in_.
    if (welcome_pending_ || out_.size() > out_limit) {
      held_ = pos < in_len_;
      break;
    }
    // A writer past its credit (docs/protocol.md, "Flow control") waits for ACKs;
    // what it sent meanwhile stays unread.
    if (source_ != 0 && credit_.over_limit()) {
      held_ = pos < in_len_;
      if (held_) server_.counters().credit_waits.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    Frame frame;
    size_t consumed = 0;
    const uint32_t max_frame = FrameLimit();
    FrameStatus st = NextFrame(buf.substr(pos), max_frame, &frame, &consumed);
    if (st == FrameStatus::kNeedMore) break;
    if (st == FrameStatus::kTooLarge) {
      uint32_t len = util::DecodeFixed32(reinterpret_cast<const uint8_t*>(buf.data() + pos));
      Fail(ErrorCode::kFrameTooLarge,
           fmt::format("frame at stream offset {} declares {} bytes; the limit is {}{}", pos, len,
                       max_frame, hello_done_ ? " (--max-frame)" : " before HELLO"));
      break;
    }
    if (st == FrameStatus::kEmpty) {
      Fail(ErrorCode::kBadFrame, "frame declares length 0: every frame has a type byte");
      break;
    }
    server_.counters().frames_in.fetch_add(1, std::memory_order_relaxed);
    pos += consumed;
    if (!HandleFrame(frame)) break;
  }
  if (pos > 0) last_activity_ = std::chrono::steady_clock::now();  // idle counts whole frames
  if (dup_ack_due_) {
    dup_ack_due_ = false;
    if (last_seq_ == acked_seq_) EncodeAck(out_, acked_seq_);
  }
  if (pos > 0) {
    std::memmove(in_.data(), in_.data() + pos, in_len_ - pos);
    in_len_ -= pos;
  }
}

bool Session::HandOff() {
  asio::error_code ec;
  auto protocol = socket_.local_endpoint(ec).protocol();
  if (ec) return false;
  int fd = socket_.release(ec);
  if (ec) return false;
  handed_off_ = true;
  write_signal_.cancel();
  watchdog_.cancel();
  server_.Adopt(fd, protocol, std::string(in_.data(), in_len_), connected_at_, std::move(tls_),
                std::move(ws_));
  return true;
}

void Session::StartAdopted(std::string_view input,
                           std::chrono::steady_clock::time_point connected_at) {
  hello_done_ = true;
  connected_at_ = last_activity_ = connected_at;
  in_.assign(std::max(input.size(), kReadChunk), '\0');
  input.copy(in_.data(), input.size());
  in_len_ = input.size();
  held_ = in_len_ > 0;  // pipelined after HELLO: handled before reading more
  SendWelcome();
  Start();
}

void Session::OnCut(uint64_t window) {
  if (last_seq_ > cut_seq_) {
    pending_acks_.push_back({window, last_seq_, credit_.consumed()});
    cut_seq_ = last_seq_;
  }
  for (auto& s : pending_syncs_) {
    if (s.window == 0) s.window = window;
  }
  Resume();
}

uint64_t Session::OnDurable(uint64_t window) {
  if (writer_done_) return 0;
  uint64_t ack = 0, ops = credit_.acked();
  while (!pending_acks_.empty() && pending_acks_.front().window <= window) {
    ack = pending_acks_.front().seq;
    ops = pending_acks_.front().ops;
    pending_acks_.pop_front();
  }
  uint64_t acked_now = ops - credit_.acked();
  credit_.Acked(acked_now);
  if (ack > acked_seq_) {
    acked_seq_ = ack;
    EncodeAck(out_, ack);
  }
  while (!pending_syncs_.empty() && pending_syncs_.front().window != 0 &&
         pending_syncs_.front().window <= window) {
    EncodeReq(out_, FrameType::kSynced, pending_syncs_.front().req);
    pending_syncs_.pop_front();
  }
  if (welcome_pending_) CheckWelcome();
  // A reader paused because a partition was congested (by any lane) may have nothing
  // to write, so no write completion would wake it; the partitions have just caught up
  // with a window, so check now. Without this it could wait for unrelated activity.
  Resume();
  Kick();
  return acked_now;
}

bool Session::credit_constrained() const {
  return source_ != 0 && !writer_done_ && credit_.constrained();
}

uint64_t Session::rtt_us() const {
  tcp_info info{};
  socklen_t len = sizeof(info);
  if (::getsockopt(const_cast<asio::ip::tcp::socket&>(socket_).native_handle(), IPPROTO_TCP,
                   TCP_INFO, &info, &len) != 0) {
    return 0;
  }
  return info.tcpi_rtt;
}

void Session::OfferCredit(uint64_t share) {
  if (uint64_t c = credit_.Offer(share)) {
    EncodeCredit(out_, c);
    Resume();  // a raise may end a pause
    Kick();
  }
}

}  // namespace conv::net
