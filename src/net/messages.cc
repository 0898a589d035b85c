#include "net/messages.h"

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
    case FrameType::kQuery:
      return "QUERY";
    case FrameType::kResult:
      return "RESULT";
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
                                                "handshake_required"};
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
      !r.Varint(&m->window_us) || !r.Varint(&m->partitions) || !GetCount(r, 3, &n_schemas)) {
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

bool DecodeQuery(std::string_view payload, Query* m) {
  Reader r(payload);
  return r.Varint(&m->req) && r.Varint(&m->schema_id) && r.Str(&m->id) && r.U8(&m->flags) &&
         r.done();
}

namespace {

bool GetRecord(Reader& r, const engine::Schema& schema, std::string* out) {
  engine::RecordView view;
  size_t consumed = 0;
  if (!engine::ParseRecordPrefix(schema, r.rest(), &view, &consumed).ok()) return false;
  std::string_view bytes;
  if (!r.Bytes(consumed, &bytes)) return false;
  out->assign(bytes);
  return true;
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

}  // namespace conv::net
