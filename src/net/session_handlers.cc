// A session's handlers: one per frame type a client may send, HELLO and the
// hand-over between connections of one source, and WELCOME. The socket loops, the
// output buffer and acknowledgements are in session.cc.

#include <fmt/format.h>

#include <algorithm>

#include "engine/record.h"
#include "net/server.h"
#include "net/session.h"
#include "util/clock.h"
#include "util/coding.h"

namespace conv::net {

namespace {

constexpr size_t kMaxSubscriptions = 1024;
constexpr uint64_t kMaxIntervalMs = 3'600'000;
constexpr uint64_t kMaxLeaseMs = 7 * 24 * 3'600'000ull;
// The largest step between two seqs of a source: a seq of 2^64-1 (or a timestamp in
// ns) would otherwise leave no seq above it, and the source name unusable for good.
constexpr uint64_t kMaxSeqStep = uint64_t{1} << 32;

// Compares without an early exit, so the time taken does not reveal how much of
// the token matched.
bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

}  // namespace

bool Session::HandleFrame(const Frame& frame) {
  auto type = static_cast<FrameType>(frame.type);
  if (!hello_done_) {
    if (type != FrameType::kHello) {
      Fail(ErrorCode::kHandshakeRequired,
           fmt::format("the first frame must be HELLO, got {} (0x{:02x})",
                       FrameTypeName(frame.type), frame.type));
      return false;
    }
    return HandleHello(frame.payload);
  }
  auto bad = [&](std::string_view what) {
    Fail(ErrorCode::kBadFrame,
         fmt::format("{} (0x{:02x}): {}", FrameTypeName(frame.type), frame.type, what));
    return false;
  };
  switch (type) {
    case FrameType::kAssert:
    case FrameType::kPatch:
    case FrameType::kRetract:
      return HandleWrite(type, frame.payload);
    case FrameType::kQuery:
      return HandleQuery(frame.payload);
    case FrameType::kSubscribe:
      return HandleSubscribe(frame.payload);
    case FrameType::kUnsubscribe:
      return HandleUnsubscribe(frame.payload);
    case FrameType::kSync: {
      uint64_t req;
      if (!DecodeReq(frame.payload, &req)) return bad("payload is not a single varint req");
      pending_syncs_.push_back({0, req});
      server_.engine().RequestWindow();
      return true;
    }
    case FrameType::kStats: {
      uint64_t req;
      if (!DecodeReq(frame.payload, &req)) return bad("payload is not a single varint req");
      EncodeStatsReply(out_, req, server_.Stats());
      return true;
    }
    case FrameType::kPing: {
      uint64_t req;
      if (!DecodeReq(frame.payload, &req)) return bad("payload is not a single varint req");
      EncodeReq(out_, FrameType::kPong, req);
      return true;
    }
    case FrameType::kHello:
      return bad("HELLO was already received on this connection");
    default:
      return bad("not a frame type a client may send");
  }
}

bool Session::HandleHello(std::string_view payload) {
  Hello hello;
  if (!DecodeHello(payload, &hello)) {
    Fail(ErrorCode::kBadFrame, "HELLO (0x01): payload is malformed");
    return false;
  }
  if (hello.version != kProtocolVersion) {
    Fail(ErrorCode::kUnsupportedVersion,
         fmt::format("protocol version {} is not supported; this server speaks {}", hello.version,
                     kProtocolVersion));
    return false;
  }
  const std::string& token = server_.options().auth_token;
  if (!token.empty() && !ConstantTimeEquals(hello.auth_token, token)) {
    Fail(ErrorCode::kAuthFailed, hello.auth_token.empty()
                                     ? "this server requires an auth token in HELLO"
                                     : "the auth token in HELLO is wrong");
    return false;
  }
  if (!hello.source.empty() && server_.options().owner_address) {
    Fail(ErrorCode::kNotOwner, NotOwnerMessage(server_.options().owner_address()));
    return false;
  }
  if (!hello.source.empty()) {
    if (auto owner = server_.fenced_owner(); owner.has_value()) {
      Fail(ErrorCode::kNotOwner, DeposedMessage(*owner));
      return false;
    }
  }
  hello_done_ = true;
  watchdog_.cancel();  // re-arm for the idle deadline
  if (!hello.source.empty()) {
    if (hello.source.size() > engine::kMaxSourceNameBytes) {
      Fail(ErrorCode::kBadId, fmt::format("source name is {} bytes; the limit is {}",
                                          hello.source.size(), engine::kMaxSourceNameBytes));
      return false;
    }
    if (hello.lease_ms > kMaxLeaseMs) {
      Fail(ErrorCode::kBadValue, fmt::format("lease_ms {} is over the limit of {} (7 days)",
                                             hello.lease_ms, kMaxLeaseMs));
      return false;
    }
    bool reused = false;
    auto id = server_.ClaimSource(hello.source, shared_from_this(), &reused);
    if (!id.ok()) {
      Fail(ErrorCode::kOverloaded, id.message());
      return false;
    }
    source_ = *id;
    consuming_ = true;
    // A forgotten source's id: the partitions still hold its seq mark until told.
    if (reused) io_.lane->ResetSource(source_);
    lease_ms_ = hello.lease_ms;
    // Logged with the next window (a window is asked for), so it survives a restart.
    if (server_.engine().sources().SetLease(source_, lease_ms_)) server_.engine().RequestWindow();
    if (!HandoverDone()) {
      // An earlier connection of the source may still send, or what it sent is not
      // durable yet: WELCOME (and every frame after HELLO) waits for that.
      welcome_pending_ = true;
      return true;
    }
  } else if (server_.read_thread() != nullptr && &io_ != server_.read_thread()) {
    // Not a writer: this connection is served by the read thread from now on (the
    // reader loop hands it over once this read is handled).
    hand_off_ = true;
    return false;
  }
  SendWelcome();
  return true;
}

bool Session::HandoverDone() {
  uint64_t sent;
  if (!server_.HandoverSeq(source_, &sent)) return false;
  if (server_.engine().sources().durable_seq(source_) >= sent) return true;
  server_.engine().RequestWindow();
  return false;
}

void Session::CheckWelcome() {
  if (!welcome_pending_ || closing_ || !HandoverDone()) return;
  welcome_pending_ = false;
  SendWelcome();
  Kick();
  Resume();  // the reader handles the frames held since HELLO
}

void Session::SendWelcome() {
  if (source_ != 0) {
    // Nothing of the source is in flight any more: this is the mark every partition
    // de-duplicates against, and all of it is durable.
    last_seq_ = cut_seq_ = acked_seq_ = server_.engine().sources().durable_seq(source_);
  }
  Welcome w;
  w.server_name = server_.options().server_name;
  w.last_applied_seq = last_seq_;
  w.window_us = static_cast<uint64_t>(server_.engine().options().window.count());
  w.partitions = server_.engine().options().partitions;
  w.credit = source_ != 0 ? credit_.credit() : 0;
  for (const auto& s : server_.engine().schemas().all())
    w.schemas.push_back(*s);
  EncodeWelcome(out_, w);
}

void Session::StopConsuming() {
  if (!consuming_) return;
  consuming_ = false;
  server_.StopConsuming(source_, sent_seq_);
}

bool Session::HandleWrite(FrameType type, std::string_view payload) {
  WriteOp op;
  if (!DecodeWriteOp(type, payload, &op)) {
    Fail(ErrorCode::kBadFrame,
         fmt::format("{} (0x{:02x}): payload is malformed",
                     FrameTypeName(static_cast<uint8_t>(type)), static_cast<uint8_t>(type)));
    return false;
  }
  if (source_ == 0) {
    OpError(op.seq, ErrorCode::kNotASource,
            "this connection said HELLO without a source name, so it may not write");
    return true;
  }
  if (op.seq == 0) {
    // Its ERROR would read as connection-level, and no ACK can cover it.
    Fail(ErrorCode::kBadFrame,
         fmt::format("{} (0x{:02x}): seq 0; seqs start at 1",
                     FrameTypeName(static_cast<uint8_t>(type)), static_cast<uint8_t>(type)));
    return false;
  }
  if (op.seq <= last_seq_) {
    server_.counters().duplicates.fetch_add(1, std::memory_order_relaxed);
    // Acknowledged with the next cumulative ACK, or at once when everything this
    // connection sent is acknowledged already (a resend after reconnecting).
    if (last_seq_ == acked_seq_) dup_ack_due_ = true;
    return true;
  }
  if (server_.engine().disk_full()) {
    // Not consumed: the op must be sent again once space is back.
    if (refused_seq_ == 0) refused_seq_ = op.seq;
    OpError(op.seq, ErrorCode::kOverloaded,
            "the disk is full: the write-ahead log cannot take writes; resend this op and "
            "everything after it later");
    return true;
  }
  if (op.seq - last_seq_ > kMaxSeqStep) {
    // Not consumed: the writer may send it again with a seq within the step.
    OpError(op.seq, ErrorCode::kBadValue,
            fmt::format("seq {} is more than 2^32 above {}, the last seq of this source: a "
                        "seq may step at most 2^32 past the previous one",
                        op.seq, last_seq_));
    return true;
  }
  if (refused_seq_ != 0 && op.seq > refused_seq_) {
    // Pipelined behind a refused op: taking it would make the resent refused op a
    // "duplicate", acknowledged and never applied.
    OpError(op.seq, ErrorCode::kOverloaded,
            fmt::format("op {} was refused for a full disk: resend from it", refused_seq_));
    return true;
  }
  refused_seq_ = 0;
  last_seq_ = op.seq;
  credit_.Consumed();
  const engine::Schema* schema = SchemaOrError(op.seq, op.schema_id, "");
  if (schema == nullptr || !IdOrError(op.seq, op.id)) {
    server_.engine().RequestWindow();  // the ERROR's op is acknowledged with its window
    return true;
  }
  const uint64_t max_ahead = static_cast<uint64_t>(server_.options().max_future_ts.count());
  if (max_ahead != 0 && op.ts > now_us_ && op.ts - now_us_ > max_ahead) {
    OpError(op.seq, ErrorCode::kBadValue,
            fmt::format("{} {} '{}': ts {} is {:.1f} s ahead of the server's clock; the limit "
                        "is {} s (--max-future-ts)",
                        FrameTypeName(static_cast<uint8_t>(type)), schema->name, op.id, op.ts,
                        static_cast<double>(op.ts - now_us_) / 1e6, max_ahead / 1'000'000.0));
    server_.engine().RequestWindow();
    return true;
  }
  engine::OpView view;
  view.source = source_;
  view.schema = schema->id;
  view.seq = op.seq;
  view.ts = op.ts != 0 ? op.ts : now_us_;
  view.id = op.id;
  view.mask = 0;
  if (type == FrameType::kRetract) {
    view.kind = engine::OpKind::kRetract;
  } else {
    engine::RecordView rec;
    util::Status st = engine::ParseRecord(*schema, op.record, &rec);
    if (!st.ok()) {
      OpError(op.seq, ErrorCode::kBadValue,
              fmt::format("{} {} '{}': {}", FrameTypeName(static_cast<uint8_t>(type)), schema->name,
                          op.id, st.message()));
      server_.engine().RequestWindow();
      return true;
    }
    if (!rec.canonical) engine::CanonicalizeValues(*schema, &rec, &canonical_);
    view.kind = type == FrameType::kAssert ? engine::OpKind::kAssert : engine::OpKind::kPatch;
    view.mask = rec.mask;
    view.values = rec.values;
  }
  auto& engine = server_.engine();
  io_.lane->Add(engine.PartitionOf(schema->id, op.id), view);
  sent_seq_ = op.seq;
  return true;
}

bool Session::HandleQuery(std::string_view payload) {
  Query q;
  if (!DecodeQuery(payload, &q)) {
    Fail(ErrorCode::kBadFrame, "QUERY (0x20): payload is malformed");
    return false;
  }
  server_.counters().queries.fetch_add(1, std::memory_order_relaxed);
  auto& engine = server_.engine();
  const engine::Schema* schema = SchemaOrError(q.req, q.schema_id, "");
  if (schema == nullptr || !IdOrError(q.req, q.id)) return true;
  uint64_t t0 = util::MonoNanos();
  bool with_claims = (q.flags & kQueryIncludeClaims) != 0;
  engine::QueryResult& r = query_result_;
  engine.Query(*schema, q.id, with_claims, &r);
  EncodeResult(out_, q.req, r, with_claims, engine.sources());
  uint64_t dt = util::MonoNanos() - t0;
  std::lock_guard lock(io_.query_mu);
  io_.query_ns.Record(dt);
  return true;
}

bool Session::HandleSubscribe(std::string_view payload) {
  Subscribe s;
  if (!DecodeSubscribe(payload, &s)) {
    Fail(ErrorCode::kBadFrame, "SUBSCRIBE (0x30): payload is malformed");
    return false;
  }
  if (s.sub == 0) {
    Fail(ErrorCode::kBadFrame, "SUBSCRIBE (0x30): sub 0 is reserved; sub ids start at 1");
    return false;
  }
  const engine::Schema* schema =
      SchemaOrError(s.sub, s.schema_id, fmt::format("SUBSCRIBE {}: ", s.sub));
  if (schema == nullptr) return true;
  uint64_t all =
      schema->fields.size() >= 64 ? ~uint64_t{0} : (uint64_t{1} << schema->fields.size()) - 1;
  if ((s.field_mask & ~all) != 0) {
    OpError(s.sub, ErrorCode::kBadValue,
            fmt::format("SUBSCRIBE {}: field_mask 0x{:x} names fields past the {} of schema {}",
                        s.sub, s.field_mask, schema->fields.size(), schema->name));
    return true;
  }
  if (s.id_prefix.size() > engine::kMaxIdBytes) {
    OpError(s.sub, ErrorCode::kBadId,
            fmt::format("SUBSCRIBE {}: id_prefix is {} bytes; the limit is {}", s.sub,
                        s.id_prefix.size(), engine::kMaxIdBytes));
    return true;
  }
  if (s.interval_ms > kMaxIntervalMs) {
    OpError(s.sub, ErrorCode::kBadValue,
            fmt::format("SUBSCRIBE {}: interval_ms {} is over the limit of {}", s.sub,
                        s.interval_ms, kMaxIntervalMs));
    return true;
  }
  if (subs_.count(s.sub) != 0) {
    OpError(s.sub, ErrorCode::kBadValue,
            fmt::format("SUBSCRIBE {}: subscription {} is already live on this connection", s.sub,
                        s.sub));
    return true;
  }
  if (subs_.size() >= kMaxSubscriptions) {
    OpError(s.sub, ErrorCode::kOverloaded,
            fmt::format("SUBSCRIBE {}: this connection has {} subscriptions, the limit", s.sub,
                        kMaxSubscriptions));
    return true;
  }
  if (sink_ == nullptr) {
    std::weak_ptr<Session> weak = shared_from_this();
    asio::io_context* ctx = &io_.ctx;
    sink_ = std::make_shared<FeedSink>(
        [weak, ctx] {
          asio::post(*ctx, [weak] {
            if (auto self = weak.lock()) self->Kick();
          });
        },
        &server_.fanout().counters().backlog_bytes);
  }
  subs_.insert(s.sub);
  server_.fanout().Subscribe(sink_, s);
  return true;
}

const engine::Schema* Session::SchemaOrError(uint64_t seq_or_req, uint64_t schema_id,
                                             std::string_view context) {
  const engine::Schema* schema = server_.engine().schemas().Find(schema_id);
  if (schema == nullptr) {
    OpError(seq_or_req, ErrorCode::kUnknownSchema,
            fmt::format("{}schema id {} is not known to this server", context, schema_id));
  }
  return schema;
}

bool Session::IdOrError(uint64_t seq_or_req, std::string_view id) {
  if (!id.empty() && id.size() <= engine::kMaxIdBytes) return true;
  OpError(seq_or_req, ErrorCode::kBadId,
          fmt::format("entity id is {} bytes; it must be 1 to {}", id.size(), engine::kMaxIdBytes));
  return false;
}

bool Session::HandleUnsubscribe(std::string_view payload) {
  uint64_t sub;
  if (!DecodeReq(payload, &sub)) {
    Fail(ErrorCode::kBadFrame, "UNSUBSCRIBE (0x31): payload is not a single varint sub");
    return false;
  }
  if (subs_.erase(sub) == 0) {
    OpError(sub, ErrorCode::kUnknownSubscription,
            fmt::format("UNSUBSCRIBE {}: no such subscription on this connection", sub));
    return true;
  }
  server_.fanout().Unsubscribe(sink_.get(), sub);
  return true;
}

}  // namespace conv::net
