#include "cmd/load_worker.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "net/address.h"
#include "net/messages.h"
#include "util/clock.h"
#include "util/coding.h"

namespace conv::cmd {

namespace {
constexpr size_t kChunkBytes = 64 * 1024;
constexpr size_t kMaxUnsentBytes = 256 * 1024;
// Ops generated ahead of their ACK when the server announced no credit.
constexpr uint64_t kMaxInflightOps = 1 << 20;
// Ops generated per reading of the clocks: they share one ts and one generation
// time (for the ACK latency). A clock reading per op cost ~10% of a writer's CPU;
// 64 ops take a few microseconds to generate.
constexpr uint64_t kOpsPerClockReading = 64;
// How long a writer that lost its connection tries the servers of --server.
constexpr std::chrono::milliseconds kReconnectFor{10'000};
}  // namespace

LoadWorker::LoadWorker(const LoadOptions& options, const engine::Schema& schema, std::string source,
                       std::string token, net::SslCtxPtr tls, uint64_t rate, uint64_t seed)
    : options_(options),
      schema_(schema),
      token_(std::move(token)),
      tls_(std::move(tls)),
      rate_(rate),
      workload_(schema, options.entities, options.hot_pct, *ParseMix(options.mix), seed),
      max_inflight_(kMaxInflightOps) {
  report_.source = std::move(source);
}

util::Status LoadWorker::Connect(std::chrono::milliseconds retry_for) {
  net::Hello hello;
  hello.source = report_.source;
  hello.auth_token = token_;
  auto servers = net::ParseAddressList(options_.server);
  if (!servers.ok()) return servers.status();
  net::ClientOptions co;
  co.servers = std::move(servers).value();
  co.tls = tls_;
  co.retry_for = retry_for;
  auto c = net::Client::Connect(co, hello);
  if (!c.ok()) return c.status();
  client_ = std::move(c).value();
  conn_ = &client_->transport();
  in_ = client_->TakeBuffered();
  int fd = conn_->fd();
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL, 0) | O_NONBLOCK);
  uint64_t applied = client_->welcome().last_applied_seq;
  // Generated and unacknowledged ops stay within the connection's credit
  // (docs/protocol.md, "Flow control").
  max_inflight_ = client_->credit() != 0 ? client_->credit() : kMaxInflightOps;
  if (seq_ == 0) {
    // First connection: continue the source's sequence where an earlier run left it.
    seq_ = acked_ = acked_base_ = applied;
  }
  // Resend everything not acknowledged, from the first kept chunk.
  send_chunk_ = 0;
  send_off_ = 0;
  // The server may have made durable more than it acknowledged before the loss.
  if (applied > acked_) OnAck(applied, util::MonoNanos());
  while (!chunks_.empty() && chunks_.front().last_seq <= acked_)
    chunks_.pop_front();
  uint64_t kept = 0;
  for (const Chunk& c : chunks_)
    kept += c.bytes.size();
  sent_ = appended_ - kept;
  return util::Status::Ok();
}

void LoadWorker::Generate(std::chrono::steady_clock::time_point now) {
  if (rate_ != 0) {
    double elapsed = std::chrono::duration<double>(now - last_refill_).count();
    last_refill_ = now;
    tokens_ = std::min(tokens_ + elapsed * static_cast<double>(rate_),
                       std::max(1.0, static_cast<double>(rate_) / 100.0));
  }
  // Only the back chunk grows; at most one unsent chunk's worth is generated ahead.
  uint64_t ts = 0;
  uint64_t left = 0;  // ops still to stamp with `ts` and stamps_.back()
  while (InflightOps() < max_inflight_ && (rate_ == 0 || tokens_ >= 1.0)) {
    if (UnsentBytes() >= kMaxUnsentBytes) break;
    if (chunks_.empty() || chunks_.back().bytes.size() >= kChunkBytes) {
      chunks_.push_back({});
      chunks_.back().bytes.reserve(kChunkBytes + 512);
    }
    Chunk& c = chunks_.back();
    size_t before = c.bytes.size();
    if (left == 0) {
      ts = util::WallMicros();
      stamps_.push_back({seq_ + 1, util::MonoNanos()});
      left = kOpsPerClockReading;
    }
    --left;
    net::WriteOp op;
    op.seq = ++seq_;
    op.ts = ts;
    stamps_.back().last_seq = op.seq;
    op.schema_id = schema_.id;
    op.id = workload_.Id(workload_.NextEntity());
    switch (workload_.NextKind()) {
      case Workload::Kind::kAssert:
        op.type = net::FrameType::kAssert;
        op.record = workload_.FullRecord();
        break;
      case Workload::Kind::kPatch:
        op.type = net::FrameType::kPatch;
        op.record = workload_.PartialRecord();
        break;
      case Workload::Kind::kRetract:
        op.type = net::FrameType::kRetract;
        break;
    }
    net::EncodeWriteOp(c.bytes, op);
    appended_ += c.bytes.size() - before;
    c.last_seq = op.seq;
    ++report_.sent;
    if (rate_ != 0) tokens_ -= 1.0;
  }
}

bool LoadWorker::SendSome() {
  while (send_chunk_ < chunks_.size()) {
    const std::string& b = chunks_[send_chunk_].bytes;
    if (send_off_ == b.size()) {
      if (send_chunk_ + 1 == chunks_.size()) break;  // the back chunk may still grow
      ++send_chunk_;
      send_off_ = 0;
      continue;
    }
    ssize_t n = conn_->Write(b.data() + send_off_, b.size() - send_off_);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      if (errno == EINTR) continue;
      return false;
    }
    send_off_ += static_cast<size_t>(n);
    sent_ += static_cast<uint64_t>(n);
  }
  return true;
}

void LoadWorker::OnAck(uint64_t seq, uint64_t now_ns) {
  if (seq <= acked_) return;
  // Every op newly acknowledged, a stamp (a batch of ops generated together) at a time.
  uint64_t done = acked_;
  while (!stamps_.empty() && done < seq) {
    const Stamp& s = stamps_.front();
    uint64_t upto = std::min(s.last_seq, seq);
    if (upto > done) {
      ack_latency_ns_.Record(now_ns > s.mono_ns ? now_ns - s.mono_ns : 0, upto - done);
      done = upto;
    }
    if (s.last_seq > seq) break;
    stamps_.pop_front();
  }
  acked_ = seq;
  acked_live_.store(acked_ - acked_base_, std::memory_order_relaxed);
  while (!chunks_.empty() && chunks_.front().last_seq <= acked_ &&
         (send_chunk_ > 0 || send_off_ == chunks_.front().bytes.size())) {
    chunks_.pop_front();
    if (send_chunk_ > 0) {
      --send_chunk_;
    } else {
      send_off_ = 0;
    }
  }
}

bool LoadWorker::ReceiveSome() {
  char buf[16 * 1024];
  for (;;) {
    ssize_t n = conn_->Read(buf, sizeof(buf));
    if (n == 0) return false;
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      return false;
    }
    in_.append(buf, static_cast<size_t>(n));
  }
  size_t pos = 0;
  bool alive = true;
  uint64_t now_ns = 0;  // read once, at the first ACK of this read
  for (;;) {
    net::Frame f;
    size_t consumed;
    if (net::NextFrame(std::string_view(in_).substr(pos), UINT32_MAX, &f, &consumed) !=
        net::FrameStatus::kFrame) {
      break;
    }
    pos += consumed;
    if (f.type == static_cast<uint8_t>(net::FrameType::kAck)) {
      uint64_t seq;
      if (net::DecodeAck(f.payload, &seq)) {
        if (now_ns == 0) now_ns = util::MonoNanos();
        OnAck(seq, now_ns);
      }
    } else if (f.type == static_cast<uint8_t>(net::FrameType::kCredit)) {
      uint64_t credit;
      if (net::DecodeCredit(f.payload, &credit) && credit != 0) max_inflight_ = credit;
    } else if (f.type == static_cast<uint8_t>(net::FrameType::kError)) {
      net::Error e;
      if (net::DecodeError(f.payload, &e)) {
        if (e.seq_or_req == 0) alive = false;  // the server closes after this
        // A deposed owner names its successor: the reconnect finds it (not an op error).
        if (e.seq_or_req == 0 && e.code == static_cast<uint64_t>(net::ErrorCode::kNotOwner)) {
          continue;
        }
        ++report_.errors;
        if (report_.first_error.empty()) {
          report_.first_error =
              fmt::format("{} (seq {}): {}", net::ErrorCodeName(e.code), e.seq_or_req, e.message);
        }
      }
    }
  }
  in_.erase(0, pos);
  return alive;
}

bool LoadWorker::Begin(std::chrono::steady_clock::time_point now) {
  last_refill_ = now;
  if (auto st = Connect(std::chrono::milliseconds(0)); !st.ok()) {
    ++report_.errors;
    report_.first_error = st.message();
    return false;
  }
  return true;
}

bool LoadWorker::Prepare(std::chrono::steady_clock::time_point now,
                         std::chrono::steady_clock::time_point end,
                         std::chrono::steady_clock::time_point drain_end, pollfd* p,
                         int* timeout_ms) {
  if (!stopping_ && now >= end) {
    stopping_ = true;
    report_.acked_in_time = acked_ - acked_base_;
  }
  if (stopping_ && (acked_ >= seq_ || now >= drain_end)) return false;
  if (!stopping_) Generate(now);
  want_out_ = UnsentBytes() > 0;
  // TLS may need the other direction first (net::Transport::Events).
  *p = {conn_->fd(), static_cast<short>(POLLIN | (want_out_ ? POLLOUT : 0) | conn_->Events(0)), 0};
  auto until = stopping_ ? drain_end : end;
  int ms =
      static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count());
  ms = std::clamp(ms, 0, 100);
  if (rate_ != 0 && !stopping_) ms = std::min(ms, 1);
  *timeout_ms = std::min(*timeout_ms, ms);
  return true;
}

bool LoadWorker::Serve(short revents, std::chrono::steady_clock::time_point drain_end) {
  bool ok = true;
  if (revents & POLLIN) ok = ReceiveSome();
  if (ok && (revents & (POLLERR | POLLHUP)) && !(revents & POLLIN)) ok = false;
  if (ok && want_out_) ok = SendSome();
  if (ok) return true;
  // Lost the connection: reconnect (bounded) and resend what is unacknowledged.
  ++report_.reconnects;
  client_.reset();
  // The servers of --server in turn (an owner's standby takes a few seconds to
  // take over), not past the end of the drain.
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      drain_end - std::chrono::steady_clock::now());
  auto st = Connect(std::clamp(left, std::chrono::milliseconds(0), kReconnectFor));
  if (st.ok()) return true;
  if (report_.first_error.empty()) {
    report_.first_error = fmt::format("lost the connection: {}", st.message());
  }
  ++report_.errors;
  return false;
}

void LoadWorker::Finish() {
  if (!stopping_) report_.acked_in_time = acked_ - acked_base_;
  report_.acked = acked_ - acked_base_;
  report_.ack_p99_ns = ack_latency_ns_.Percentile(0.99);
}

void LoadWorker::RunGroup(const std::vector<LoadWorker*>& workers,
                          std::chrono::steady_clock::time_point end,
                          std::chrono::milliseconds drain) {
  using clock = std::chrono::steady_clock;
  std::vector<LoadWorker*> active;
  for (LoadWorker* w : workers) {
    if (w->Begin(clock::now())) {
      active.push_back(w);
    } else {
      w->Finish();
    }
  }
  const auto drain_end = end + drain;
  std::vector<pollfd> fds;
  std::vector<LoadWorker*> polled;
  while (!active.empty()) {
    auto now = clock::now();
    fds.clear();
    polled.clear();
    int timeout_ms = 100;
    for (LoadWorker* w : active) {
      pollfd p{};
      if (w->Prepare(now, end, drain_end, &p, &timeout_ms)) {
        fds.push_back(p);
        polled.push_back(w);
      } else {
        w->Finish();
      }
    }
    active.clear();
    if (polled.empty()) break;
    int rc = ::poll(fds.data(), fds.size(), timeout_ms);
    if (rc < 0 && errno != EINTR) {
      for (LoadWorker* w : polled)
        w->Finish();
      break;
    }
    for (size_t i = 0; i < polled.size(); ++i) {
      if (polled[i]->Serve(rc > 0 ? fds[i].revents : 0, drain_end)) {
        active.push_back(polled[i]);
      } else {
        polled[i]->Finish();
      }
    }
  }
}

}  // namespace conv::cmd
