#include "net/messages.h"

#include <fmt/format.h>

#include "engine/record.h"
#include "util/coding.h"

namespace conv::net {

using util::PutStr;
using util::PutU8;
using util::PutVarint;
using util::Reader;

std::string_view FrameTypeName(uint8_t type) {
  switch (static_cast<FrameType>(type)) {
    case FrameType::kHello:
      return "HELLO";
    case FrameType::kWelcome:
      return "WELCOME";
    case FrameType::kError:
      return "ERROR";
    case FrameType::kAssert:
      return "ASSERT";
    case FrameType::kPatch:
      return "PATCH";
    case FrameType::kRetract:
      return "RETRACT";
    case FrameType::kAck:
      return "ACK";
    case FrameType::kCredit:
      return "CREDIT";
    case FrameType::kQuery:
      return "QUERY";
    case FrameType::kResult:
      return "RESULT";
    case FrameType::kSubscribe:
      return "SUBSCRIBE";
    case FrameType::kUnsubscribe:
      return "UNSUBSCRIBE";
    case FrameType::kSnapshot:
      return "SNAPSHOT";
    case FrameType::kSnapshotEnd:
      return "SNAPSHOT_END";
    case FrameType::kNotify:
      return "NOTIFY";
    case FrameType::kSync:
      return "SYNC";
    case FrameType::kSynced:
      return "SYNCED";
    case FrameType::kStats:
      return "STATS";
    case FrameType::kStatsReply:
      return "STATS_REPLY";
    case FrameType::kPing:
      return "PING";
    case FrameType::kPong:
      return "PONG";
  }
  return "unknown";
}

namespace {
constexpr std::string_view kOwnerIsAt = "the owner is at ";
}  // namespace

std::string NotOwnerMessage(std::string_view owner) {
  if (owner.empty()) return "this server is a read replica; the owner is not known yet";
  return fmt::format("this server is a read replica; {}{}", kOwnerIsAt, owner);
}

std::string DeposedMessage(std::string_view owner) {
  if (owner.empty()) return "this server is no longer the owner; the owner is not known yet";
  return fmt::format("this server is no longer the owner; {}{}", kOwnerIsAt, owner);
}

std::string OwnerInNotOwnerMessage(std::string_view message) {
  size_t at = message.find(kOwnerIsAt);
  if (at == std::string_view::npos) return "";
  return std::string(message.substr(at + kOwnerIsAt.size()));
}

std::string_view ErrorCodeName(uint64_t code) {
  static constexpr std::string_view kNames[] = {"none",
                                                "bad_frame",
                                                "frame_too_large",
                                                "unsupported_version",
                                                "auth_failed",
                                                "not_a_source",
                                                "unknown_schema",
                                                "bad_value",
                                                "bad_id",
                                                "unknown_subscription",
                                                "overloaded",
                                                "shutting_down",
                                                "source_taken_over",
                                                "handshake_required",
                                                "not_owner"};
  return code < std::size(kNames) ? kNames[code] : "unknown";
}

FrameStatus NextFrame(std::string_view buf, uint32_t max_frame, Frame* frame, size_t* consumed) {
  if (buf.size() < kFrameHeader) return FrameStatus::kNeedMore;
  uint32_t len = util::DecodeFixed32(reinterpret_cast<const uint8_t*>(buf.data()));
  if (len == 0) return FrameStatus::kEmpty;
  if (len > max_frame) return FrameStatus::kTooLarge;
  if (buf.size() - kFrameHeader < len) return FrameStatus::kNeedMore;
  frame->type = static_cast<uint8_t>(buf[kFrameHeader]);
  frame->payload = buf.substr(kFrameHeader + 1, len - 1);
  *consumed = kFrameHeader + len;
  return FrameStatus::kFrame;
}

size_t BeginFrame(std::string& out, FrameType type) {
  size_t begin = out.size();
  out.append(kFrameHeader, '\0');
  PutU8(out, static_cast<uint8_t>(type));
  return begin;
}

void EndFrame(std::string& out, size_t begin) {
  auto len = static_cast<uint32_t>(out.size() - begin - kFrameHeader);
  util::EncodeFixed32(reinterpret_cast<uint8_t*>(out.data() + begin), len);
}

void EncodeHello(std::string& out, const Hello& m) {
  size_t b = BeginFrame(out, FrameType::kHello);
  PutVarint(out, m.version);
  PutStr(out, m.source);
  PutStr(out, m.auth_token);
  PutVarint(out, m.lease_ms);
  EndFrame(out, b);
}

void EncodeWelcome(std::string& out, const Welcome& m) {
  size_t b = BeginFrame(out, FrameType::kWelcome);
  PutVarint(out, m.version);
  PutStr(out, m.server_name);
  PutVarint(out, m.last_applied_seq);
  PutVarint(out, m.window_us);
  PutVarint(out, m.partitions);
  PutVarint(out, m.credit);
  PutVarint(out, m.schemas.size());
  for (const auto& s : m.schemas) {
    PutVarint(out, s.id);
    PutStr(out, s.name);
    PutVarint(out, s.fields.size());
    for (const auto& f : s.fields) {
      PutStr(out, f.name);
      PutU8(out, static_cast<uint8_t>(f.type));
    }
  }
  EndFrame(out, b);
}

void EncodeError(std::string& out, const Error& m) {
  size_t b = BeginFrame(out, FrameType::kError);
  PutVarint(out, m.seq_or_req);
  PutVarint(out, m.code);
  PutStr(out, m.message);
  EndFrame(out, b);
}

void EncodeWriteOp(std::string& out, const WriteOp& m) {
  size_t b = BeginFrame(out, m.type);
  PutVarint(out, m.seq);
  PutVarint(out, m.ts);
  PutVarint(out, m.schema_id);
  PutStr(out, m.id);
  if (m.type != FrameType::kRetract) out.append(m.record);
  EndFrame(out, b);
}

void EncodeAck(std::string& out, uint64_t seq) {
  EncodeReq(out, FrameType::kAck, seq);
}

void EncodeCredit(std::string& out, uint64_t credit) {
  EncodeReq(out, FrameType::kCredit, credit);
}

void EncodeQuery(std::string& out, const Query& m) {
  size_t b = BeginFrame(out, FrameType::kQuery);
  PutVarint(out, m.req);
  PutVarint(out, m.schema_id);
  PutStr(out, m.id);
  PutU8(out, m.flags);
  EndFrame(out, b);
}

void EncodeResult(std::string& out, const Result& m) {
  size_t b = BeginFrame(out, FrameType::kResult);
  PutVarint(out, m.req);
  PutU8(out, m.found ? 1 : 0);
  if (m.found) {
    out.append(m.record);
    if (m.has_claims) {
      PutVarint(out, m.claims.size());
      for (const auto& c : m.claims) {
        PutStr(out, c.source);
        PutVarint(out, c.ts_max);
        out.append(c.record);
      }
    }
  }
  EndFrame(out, b);
}

void EncodeResult(std::string& out, uint64_t req, const engine::QueryResult& r, bool with_claims,
                  const engine::SourceTable& sources) {
  size_t b = BeginFrame(out, FrameType::kResult);
  PutVarint(out, req);
  PutU8(out, r.found ? 1 : 0);
  if (r.found) {
    PutVarint(out, r.record.mask);
    out.append(r.record.values);
    if (with_claims) {
      PutVarint(out, r.claims.size());
      for (const auto& c : r.claims) {
        PutStr(out, sources.Name(c.source));
        PutVarint(out, c.ts_max);
        PutVarint(out, c.mask);
        out.append(c.values);
      }
    }
  }
  EndFrame(out, b);
}

void EncodeReq(std::string& out, FrameType type, uint64_t req) {
  size_t b = BeginFrame(out, type);
  PutVarint(out, req);
  EndFrame(out, b);
}

void EncodeStatsReply(std::string& out, uint64_t req, const StatList& stats) {
  size_t b = BeginFrame(out, FrameType::kStatsReply);
  PutVarint(out, req);
  PutVarint(out, stats.size());
  for (const auto& [name, value] : stats) {
    PutStr(out, name);
    PutVarint(out, value);
  }
  EndFrame(out, b);
}

void EncodeSubscribe(std::string& out, const Subscribe& m) {
  size_t b = BeginFrame(out, FrameType::kSubscribe);
  PutVarint(out, m.sub);
  PutVarint(out, m.schema_id);
  PutStr(out, m.id_prefix);
  PutVarint(out, m.field_mask);
  PutU8(out, m.flags);
  PutVarint(out, m.resume_window);
  PutVarint(out, m.interval_ms);
  EndFrame(out, b);
}

void EncodeSnapshotEnd(std::string& out, const SnapshotEnd& m) {
  size_t b = BeginFrame(out, FrameType::kSnapshotEnd);
  PutVarint(out, m.sub);
  PutVarint(out, m.total);
  PutVarint(out, m.window);
  PutU8(out, m.reset ? 1 : 0);
  EndFrame(out, b);
}

void AppendSnapshotEntry(std::string& body, uint8_t kind, std::string_view id, uint64_t mask,
                         std::string_view values) {
  PutU8(body, kind);
  PutStr(body, id);
  PutVarint(body, mask);
  body.append(values);
}

void AppendNotifyChange(std::string& body, uint8_t kind, std::string_view id, uint64_t changed_mask,
                        uint64_t ts, uint64_t mask, std::string_view values, bool include_prev,
                        bool had_prev, uint64_t prev_mask, std::string_view prev_values) {
  PutU8(body, kind);
  PutStr(body, id);
  PutVarint(body, changed_mask);
  PutVarint(body, ts);
  PutVarint(body, mask);
  body.append(values);
  if (!include_prev) return;
  PutU8(body, had_prev ? 1 : 0);
  if (!had_prev) return;
  PutVarint(body, prev_mask);
  body.append(prev_values);
}

namespace {

// Writes u32 length and the type of a frame whose payload is `payload_bytes` long.
void PutFrameHeader(std::string& out, FrameType type, size_t payload_bytes) {
  util::PutFixed32(out, static_cast<uint32_t>(1 + payload_bytes));
  PutU8(out, static_cast<uint8_t>(type));
}

// A record held as mask + values; an empty string stands for the empty record.
void PutRecord(std::string& out, std::string_view record) {
  if (record.empty()) {
    PutVarint(out, 0);
  } else {
    out.append(record);
  }
}

}  // namespace

void EncodeSnapshotHeader(std::string& out, uint64_t sub, uint64_t n, size_t body_bytes) {
  PutFrameHeader(out, FrameType::kSnapshot,
                 util::VarintLength(sub) + util::VarintLength(n) + body_bytes);
  PutVarint(out, sub);
  PutVarint(out, n);
}

void EncodeNotifyHeader(std::string& out, uint64_t sub, uint64_t window, uint64_t n,
                        size_t body_bytes) {
  PutFrameHeader(
      out, FrameType::kNotify,
      util::VarintLength(sub) + util::VarintLength(window) + util::VarintLength(n) + body_bytes);
  PutVarint(out, sub);
  PutVarint(out, window);
  PutVarint(out, n);
}

// The whole-frame encoders write the entries' records as they are (mask + values),
// which is what Append* write from a mask and its values.
void EncodeSnapshot(std::string& out, const Snapshot& m) {
  size_t b = BeginFrame(out, FrameType::kSnapshot);
  PutVarint(out, m.sub);
  PutVarint(out, m.entries.size());
  for (const auto& e : m.entries) {
    PutU8(out, e.kind);
    PutStr(out, e.id);
    PutRecord(out, e.record);
  }
  EndFrame(out, b);
}

void EncodeNotify(std::string& out, const Notify& m, bool include_prev) {
  size_t b = BeginFrame(out, FrameType::kNotify);
  PutVarint(out, m.sub);
  PutVarint(out, m.window);
  PutVarint(out, m.changes.size());
  for (const auto& c : m.changes) {
    PutU8(out, c.kind);
    PutStr(out, c.id);
    PutVarint(out, c.changed_mask);
    PutVarint(out, c.ts);
    PutRecord(out, c.record);
    if (include_prev) {
      PutU8(out, c.had_prev ? 1 : 0);
      if (c.had_prev) PutRecord(out, c.prev);
    }
  }
  EndFrame(out, b);
}

namespace {

bool GetString(Reader& r, std::string* s) {
  std::string_view v;
  if (!r.Str(&v)) return false;
  s->assign(v);
  return true;
}

// Counts read from the wire are checked against what the remaining bytes could
// hold before anything is reserved.
bool GetCount(Reader& r, size_t min_item_bytes, uint64_t* n) {
  return r.Varint(n) && *n <= r.remaining() / min_item_bytes;
}

}  // namespace

bool DecodeHello(std::string_view payload, Hello* m) {
  Reader r(payload);
  return r.Varint(&m->version) && GetString(r, &m->source) && GetString(r, &m->auth_token) &&
         r.Varint(&m->lease_ms) && r.done();
}

bool DecodeWelcome(std::string_view payload, Welcome* m) {
  Reader r(payload);
  uint64_t n_schemas;
  if (!r.Varint(&m->version) || !GetString(r, &m->server_name) || !r.Varint(&m->last_applied_seq) ||
      !r.Varint(&m->window_us) || !r.Varint(&m->partitions) || !r.Varint(&m->credit) ||
      !GetCount(r, 3, &n_schemas)) {
    return false;
  }
  m->schemas.clear();
  for (uint64_t i = 0; i < n_schemas; ++i) {
    engine::Schema s;
    uint64_t id, n_fields;
    if (!r.Varint(&id) || id > UINT32_MAX || !GetString(r, &s.name) || !GetCount(r, 2, &n_fields) ||
        n_fields > engine::kMaxFields) {
      return false;
    }
    s.id = static_cast<uint32_t>(id);
    for (uint64_t k = 0; k < n_fields; ++k) {
      engine::FieldDef f;
      uint8_t type;
      if (!GetString(r, &f.name) || !r.U8(&type) || type > 4) return false;
      f.type = static_cast<engine::FieldType>(type);
      s.fields.push_back(std::move(f));
    }
    m->schemas.push_back(std::move(s));
  }
  return r.done();
}

bool DecodeError(std::string_view payload, Error* m) {
  Reader r(payload);
  return r.Varint(&m->seq_or_req) && r.Varint(&m->code) && GetString(r, &m->message) && r.done();
}

bool DecodeWriteOp(FrameType type, std::string_view payload, WriteOp* m) {
  Reader r(payload);
  m->type = type;
  if (!r.Varint(&m->seq) || !r.Varint(&m->ts) || !r.Varint(&m->schema_id) || !r.Str(&m->id)) {
    return false;
  }
  if (type == FrameType::kRetract) {
    m->record = {};
    return r.done();
  }
  m->record = r.rest();
  return true;
}

bool DecodeAck(std::string_view payload, uint64_t* seq) {
  return DecodeReq(payload, seq);
}

bool DecodeCredit(std::string_view payload, uint64_t* credit) {
  return DecodeReq(payload, credit);
}

bool DecodeQuery(std::string_view payload, Query* m) {
  Reader r(payload);
  return r.Varint(&m->req) && r.Varint(&m->schema_id) && r.Str(&m->id) && r.U8(&m->flags) &&
         r.done();
}

namespace {

bool GetRecord(Reader& r, const engine::Schema& schema, std::string* out,
               uint64_t* mask = nullptr) {
  engine::RecordView view;
  size_t consumed = 0;
  if (!engine::ParseRecordPrefix(schema, r.rest(), &view, &consumed).ok()) return false;
  std::string_view bytes;
  if (!r.Bytes(consumed, &bytes)) return false;
  out->assign(bytes);
  if (mask != nullptr) *mask = view.mask;
  return true;
}

// A SNAPSHOT entry's or NOTIFY change's kind, id and record: the kind is upsert or
// delete, and a delete carries the empty record (mask 0).
bool GetKindIdRecord(Reader& r, const engine::Schema& schema, bool with_change, ChangeEntry* e) {
  if (!r.U8(&e->kind) || (e->kind != kChangeUpsert && e->kind != kChangeDelete) ||
      !GetString(r, &e->id)) {
    return false;
  }
  e->changed_mask = 0;
  e->ts = 0;
  if (with_change) {
    if (!r.Varint(&e->changed_mask) || !r.Varint(&e->ts)) return false;
    // A change names fields of the schema only.
    size_t n = schema.fields.size();
    if (n < 64 && (e->changed_mask >> n) != 0) return false;
  }
  uint64_t mask = 0;
  if (!GetRecord(r, schema, &e->record, &mask)) return false;
  return e->kind == kChangeUpsert || mask == 0;
}

}  // namespace

bool DecodeResult(std::string_view payload, const engine::Schema& schema, bool with_claims,
                  Result* m) {
  Reader r(payload);
  uint8_t found;
  if (!r.Varint(&m->req) || !r.U8(&found) || found > 1) return false;
  m->found = found == 1;
  m->has_claims = false;
  m->claims.clear();
  m->record.clear();
  if (!m->found) return r.done();
  if (!GetRecord(r, schema, &m->record)) return false;
  if (with_claims) {
    m->has_claims = true;
    uint64_t n;
    if (!GetCount(r, 3, &n)) return false;
    for (uint64_t i = 0; i < n; ++i) {
      ResultClaim c;
      if (!GetString(r, &c.source) || !r.Varint(&c.ts_max) || !GetRecord(r, schema, &c.record)) {
        return false;
      }
      m->claims.push_back(std::move(c));
    }
  }
  return r.done();
}

bool DecodeReq(std::string_view payload, uint64_t* req) {
  Reader r(payload);
  return r.Varint(req) && r.done();
}

bool DecodeStatsReply(std::string_view payload, uint64_t* req, StatList* stats) {
  Reader r(payload);
  uint64_t n;
  if (!r.Varint(req) || !GetCount(r, 2, &n)) return false;
  stats->clear();
  for (uint64_t i = 0; i < n; ++i) {
    std::string name;
    uint64_t v;
    if (!GetString(r, &name) || !r.Varint(&v)) return false;
    stats->emplace_back(std::move(name), v);
  }
  return r.done();
}

bool DecodeSubscribe(std::string_view payload, Subscribe* m) {
  Reader r(payload);
  if (!r.Varint(&m->sub) || !r.Varint(&m->schema_id) || !GetString(r, &m->id_prefix) ||
      !r.Varint(&m->field_mask) || !r.U8(&m->flags) || !r.Varint(&m->resume_window) ||
      !r.Varint(&m->interval_ms) || !r.done()) {
    return false;
  }
  // Bits this version does not know are reserved for extensions: ignored.
  m->flags &= kSubscribeBootstrap | kSubscribeIncludePrev;
  return true;
}

bool DecodeSnapshotEnd(std::string_view payload, SnapshotEnd* m) {
  Reader r(payload);
  uint8_t reset;
  if (!r.Varint(&m->sub) || !r.Varint(&m->total) || !r.Varint(&m->window) || !r.U8(&reset) ||
      reset > 1) {
    return false;
  }
  m->reset = reset == 1;
  return r.done();
}

bool DecodeSnapshot(std::string_view payload, const engine::Schema& schema, Snapshot* m) {
  Reader r(payload);
  uint64_t n;
  // An entry is at least kind, an empty id and an empty record: 3 bytes.
  if (!r.Varint(&m->sub) || !GetCount(r, 3, &n)) return false;
  m->entries.clear();
  for (uint64_t i = 0; i < n; ++i) {
    ChangeEntry e;
    if (!GetKindIdRecord(r, schema, false, &e)) return false;
    m->entries.push_back(std::move(e));
  }
  return r.done();
}

bool DecodeNotify(std::string_view payload, const engine::Schema& schema, bool include_prev,
                  Notify* m) {
  Reader r(payload);
  uint64_t n;
  // A change is at least kind, an empty id, changed_mask, ts and an empty record (5
  // bytes), and had_prev with include_prev.
  if (!r.Varint(&m->sub) || !r.Varint(&m->window) || !GetCount(r, include_prev ? 6 : 5, &n)) {
    return false;
  }
  m->changes.clear();
  for (uint64_t i = 0; i < n; ++i) {
    ChangeEntry c;
    if (!GetKindIdRecord(r, schema, true, &c)) return false;
    if (include_prev) {
      uint8_t had_prev;
      if (!r.U8(&had_prev) || had_prev > 1) return false;
      c.had_prev = had_prev == 1;
      if (c.had_prev && !GetRecord(r, schema, &c.prev)) return false;
    }
    m->changes.push_back(std::move(c));
  }
  return r.done();
}

}  // namespace conv::net
