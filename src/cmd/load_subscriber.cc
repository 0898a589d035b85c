#include "cmd/load_subscriber.h"

#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "net/messages.h"
#include "util/clock.h"
#include "util/coding.h"

namespace conv::cmd {

namespace {

// The subscription id each load subscriber uses on its own connection.
constexpr uint64_t kSubId = 1;
// How long one wait for a frame lasts before the stop flag is looked at again.
constexpr std::chrono::milliseconds kPoll{20};
// Bytes asked of one recv.
constexpr size_t kReadBytes = 256 * 1024;

// A cursor over a NOTIFY payload for the load generator's hot loop: inline, no
// allocation, no value checks (the server validated the records). `ok` turns false
// at the first read past the end.
struct Scan {
  const uint8_t* p;
  const uint8_t* end;
  bool ok = true;

  uint64_t Varint() {
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
      if (p == end) {
        ok = false;
        return 0;
      }
      uint8_t b = *p++;
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (b < 0x80) return v;
    }
    ok = false;
    return 0;
  }
  void SkipVarint() {
    while (p != end && (*p & 0x80) != 0)
      ++p;
    if (p == end) {
      ok = false;
      return;
    }
    ++p;
  }
  void Skip(uint64_t n) {
    if (static_cast<uint64_t>(end - p) < n) {
      ok = false;
      p = end;
      return;
    }
    p += n;
  }
  uint8_t U8() {
    if (p == end) {
      ok = false;
      return 0;
    }
    return *p++;
  }
  std::string_view Str() {
    uint64_t n = Varint();
    const uint8_t* at = p;
    Skip(n);
    return ok ? std::string_view(reinterpret_cast<const char*>(at), n) : std::string_view();
  }
  // Steps over a record (mask + values).
  void SkipRecord(const std::vector<engine::FieldType>& types) {
    uint64_t mask = Varint();
    while (ok && mask != 0) {
      unsigned i = static_cast<unsigned>(__builtin_ctzll(mask));
      mask &= mask - 1;
      if (i >= types.size()) {
        ok = false;
        return;
      }
      switch (types[i]) {
        case engine::FieldType::kBool:
          Skip(1);
          break;
        case engine::FieldType::kI64:
          SkipVarint();
          break;
        case engine::FieldType::kF64:
          Skip(8);
          break;
        case engine::FieldType::kString:
        case engine::FieldType::kBytes:
          Skip(Varint());
          break;
      }
    }
  }
};

}  // namespace

LoadSubscriber::LoadSubscriber(const LoadOptions& options, const engine::Schema& schema,
                               std::string token, net::SslCtxPtr tls, const SubscriberClock& clock,
                               bool measure_latency)
    : options_(options),
      schema_(schema),
      token_(std::move(token)),
      tls_(std::move(tls)),
      clock_(clock),
      include_prev_(options.include_prev),
      measure_latency_(measure_latency) {
  for (const auto& f : schema.fields)
    types_.push_back(f.type);
}

void LoadSubscriber::Fail(std::string message) {
  ++report_.errors;
  if (report_.first_error.empty()) report_.first_error = std::move(message);
  failed_.store(true, std::memory_order_release);
}

void LoadSubscriber::Run() {
  net::Hello hello;
  hello.auth_token = token_;
  auto c = net::Client::Connect(options_.server, hello, std::chrono::seconds(5), tls_);
  if (!c.ok()) {
    Fail(c.message());
    return;
  }
  std::unique_ptr<net::Client> client = std::move(c).value();
  net::Subscribe s;
  s.sub = kSubId;
  s.schema_id = schema_.id;
  s.flags = static_cast<uint8_t>((options_.bootstrap ? net::kSubscribeBootstrap : 0) |
                                 (options_.include_prev ? net::kSubscribeIncludePrev : 0));
  std::string frame;
  net::EncodeSubscribe(frame, s);
  subscribe_ns_ = util::MonoNanos();
  if (auto st = client->Send(frame); !st.ok()) {
    Fail(st.message());
    return;
  }
  // From here on the socket is read directly: frames are handled where they were
  // received, without a copy per frame. buf[begin, end) holds unhandled bytes.
  net::Transport& conn = client->transport();
  std::string first = client->TakeBuffered();
  std::vector<char> buf(std::max(kReadBytes * 4, first.size()));
  std::memcpy(buf.data(), first.data(), first.size());
  size_t begin = 0;
  size_t end = first.size();
  while (!clock_.stop.load(std::memory_order_relaxed) && !failed()) {
    net::Frame frame_view;
    size_t consumed = 0;
    auto st = net::NextFrame(std::string_view(buf.data() + begin, end - begin), UINT32_MAX,
                             &frame_view, &consumed);
    if (st == net::FrameStatus::kFrame) {
      OnFrame(frame_view.type, frame_view.payload);
      begin += consumed;
      continue;
    }
    if (st != net::FrameStatus::kNeedMore) {
      Fail("the server sent a malformed frame");
      break;
    }
    // Room for one more read: move the partial frame to the front, grow for a frame
    // larger than the buffer.
    if (buf.size() - end < kReadBytes) {
      std::memmove(buf.data(), buf.data() + begin, end - begin);
      end -= begin;
      begin = 0;
      if (buf.size() - end < kReadBytes) buf.resize(end + kReadBytes);
    }
    pollfd p{conn.fd(), conn.Events(POLLIN), 0};
    // TLS may hold received bytes already: then read without waiting.
    int rc = conn.Buffered() ? 1 : ::poll(&p, 1, static_cast<int>(kPoll.count()));
    if (rc == 0 || (rc < 0 && errno == EINTR)) continue;
    if (rc < 0) {
      Fail(fmt::format("poll failed: {}", std::strerror(errno)));
      break;
    }
    ssize_t n = conn.Read(buf.data() + end, buf.size() - end);
    if (n == 0) {
      Fail("the server closed the connection");
      break;
    }
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      Fail(fmt::format("receive failed: {}",
                       conn.error().empty() ? std::strerror(errno) : conn.error()));
      break;
    }
    end += static_cast<size_t>(n);
  }
}

void LoadSubscriber::OnFrame(uint8_t type, std::string_view payload) {
  switch (static_cast<net::FrameType>(type)) {
    case net::FrameType::kSnapshot: {
      // Only the entry count: the bootstrap is measured, not rebuilt.
      util::Reader r(payload);
      uint64_t sub, n;
      if (!r.Varint(&sub) || !r.Varint(&n)) return Fail("malformed SNAPSHOT");
      report_.snapshot_entries += n;
      ++report_.snapshot_frames;
      entities_live_.store(report_.snapshot_entries, std::memory_order_relaxed);
      break;
    }
    case net::FrameType::kSnapshotEnd: {
      net::SnapshotEnd e;
      if (!net::DecodeSnapshotEnd(payload, &e)) return Fail("malformed SNAPSHOT_END");
      if (live()) return Fail("a second SNAPSHOT_END");
      report_.snapshot_total = e.total;
      report_.snapshot_window = e.window;
      report_.subscribe_ms = static_cast<double>(util::MonoNanos() - subscribe_ns_) / 1e6;
      live_.store(true, std::memory_order_release);
      break;
    }
    case net::FrameType::kNotify: {
      uint64_t now_mono = util::MonoNanos();
      uint64_t now_wall = util::WallMicros();
      if (!live()) return Fail("NOTIFY before SNAPSHOT_END");
      if (!OnNotify(payload, now_mono, now_wall)) return Fail("malformed NOTIFY");
      break;
    }
    case net::FrameType::kError: {
      net::Error e;
      if (!net::DecodeError(payload, &e)) return Fail("malformed ERROR");
      Fail(fmt::format("{} ({}): {}", net::ErrorCodeName(e.code), e.seq_or_req, e.message));
      break;
    }
    default:
      break;
  }
}

bool LoadSubscriber::OnNotify(std::string_view payload, uint64_t now_mono, uint64_t now_wall) {
  const auto* begin = reinterpret_cast<const uint8_t*>(payload.data());
  Scan r{begin, begin + payload.size()};
  r.Varint();  // sub
  uint64_t window = r.Varint();
  uint64_t n = r.Varint();
  if (!r.ok) return false;
  ++report_.notify_frames;
  report_.last_window = window;
  bool armed = clock_.sentinel_armed.load(std::memory_order_acquire) && !got_sentinel();
  bool in_time = now_mono >= clock_.writers_start_ns.load(std::memory_order_relaxed) &&
                 now_mono < clock_.writers_end_ns.load(std::memory_order_relaxed);
  uint64_t counted = 0;
  if (!measure_latency_ && !armed) {
    // Counted from the header alone; the sentinel cannot be in this frame.
    counted = n;
    r.p = r.end;
  }
  for (uint64_t i = 0; i < n && r.ok && r.p != r.end; ++i) {
    r.U8();  // kind
    std::string_view id = r.Str();
    r.SkipVarint();  // changed mask
    uint64_t ts = r.Varint();
    r.SkipRecord(types_);
    if (include_prev_ && r.U8() == 1) {
      r.SkipRecord(types_);
      ++report_.with_prev;
    }
    if (armed && id == clock_.sentinel_id) {
      sentinel_ns_.store(now_mono, std::memory_order_release);
      armed = false;
      continue;  // the sentinel is not part of the load
    }
    latency_us_.Record(now_wall > ts ? now_wall - ts : 0);
    ++counted;
  }
  report_.changes += counted;
  if (in_time) report_.changes_in_time += counted;
  changes_live_.store(report_.changes, std::memory_order_relaxed);
  return r.ok && r.p == r.end;
}

}  // namespace conv::cmd
