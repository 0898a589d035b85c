#include "cmd/vector_messages.h"

#include <fmt/format.h>

#include <bit>
#include <iterator>

#include "engine/record.h"

namespace conv::cmd {

using engine::Schema;
using engine::Value;
using net::FrameType;

namespace {

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};

std::string_view SingleVarintName(FrameType t) {
  switch (t) {
    case FrameType::kAck:
      return "seq";
    case FrameType::kCredit:
      return "credit";
    case FrameType::kUnsubscribe:
      return "sub";
    default:
      return "req";
  }
}

bool IsSingleVarint(uint8_t type) {
  switch (static_cast<FrameType>(type)) {
    case FrameType::kAck:
    case FrameType::kCredit:
    case FrameType::kUnsubscribe:
    case FrameType::kSync:
    case FrameType::kSynced:
    case FrameType::kStats:
    case FrameType::kPing:
    case FrameType::kPong:
      return true;
    default:
      return false;
  }
}

// The vectors' conventions (tests/vectors/README.md "Values") over a JsonWriter:
// varints as decimal strings, u8 values as numbers, text as a string or {"hex"},
// records as {"mask", "values"}. Remembers whether a record did not parse.
class FieldWriter {
 public:
  FieldWriter(util::JsonWriter& w, const std::vector<Schema>& schemas) : w_(w), schemas_(schemas) {}

  FieldWriter& Begin() {
    w_.BeginObject();
    return *this;
  }
  FieldWriter& End() {
    w_.EndObject();
    return *this;
  }
  FieldWriter& BeginList(std::string_view key) {
    w_.Key(key).BeginArray();
    return *this;
  }
  FieldWriter& EndList() {
    w_.EndArray();
    return *this;
  }
  // A varint, as a decimal string.
  FieldWriter& U64(std::string_view key, uint64_t v) {
    w_.Key(key).String(fmt::format("{}", v));
    return *this;
  }
  // A u8, as a number.
  FieldWriter& Num(std::string_view key, uint64_t v) {
    w_.Key(key).Uint(v);
    return *this;
  }
  // Bytes meant as text (ids, names): a string when valid UTF-8, else {"hex": ...}.
  FieldWriter& Text(std::string_view key, std::string_view s) {
    w_.Key(key);
    if (util::IsValidUtf8(s)) {
      w_.String(s);
    } else {
      w_.BeginObject().Field("hex", VectorHex(s)).EndObject();
    }
    return *this;
  }
  // {"mask": "...", "values": {...}}; null, and ok() false, when `bytes` is not a
  // whole record of the schema `schema_id` names.
  FieldWriter& Record(std::string_view key, uint64_t schema_id, std::string_view bytes) {
    w_.Key(key);
    const Schema* schema = FindVectorSchema(schemas_, schema_id);
    engine::RecordView view;
    if (schema == nullptr || !engine::ParseRecord(*schema, bytes, &view).ok()) {
      ok_ = false;
      w_.Null();
      return *this;
    }
    std::vector<std::string_view> slices(schema->fields.size());
    engine::SliceFields(*schema, view.mask, view.values, slices.data());
    Begin().U64("mask", view.mask);
    w_.Key("values").BeginObject();
    for (size_t i = 0; i < schema->fields.size(); ++i) {
      if ((view.mask >> i & 1) == 0) continue;
      w_.Key(schema->fields[i].name);
      TypedValue(engine::DecodeValue(schema->fields[i].type, slices[i]));
    }
    w_.EndObject();
    return End();
  }

  bool ok() const { return ok_; }

 private:
  // {"<type>": <value>}, as tests/vectors/README.md "Values" gives them.
  void TypedValue(const Value& v) {
    w_.BeginObject();
    std::visit(
        Overloaded{
            [&](bool b) { w_.Field("bool", b); },
            [&](int64_t i) { w_.Field("i64", fmt::format("{}", i)); },
            [&](double d) { w_.Field("f64", fmt::format("{:016x}", std::bit_cast<uint64_t>(d))); },
            [&](const std::string& s) { w_.Field("string", s); },
            [&](const engine::Bytes& b) { w_.Field("bytes", VectorHex(b.data)); },
        },
        v);
    w_.EndObject();
  }

  util::JsonWriter& w_;
  const std::vector<Schema>& schemas_;
  bool ok_ = true;
};

}  // namespace

const Schema* FindVectorSchema(const std::vector<Schema>& schemas, uint64_t id) {
  for (const auto& s : schemas) {
    if (s.id == id) return &s;
  }
  return nullptr;
}

std::string VectorHex(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes)
    fmt::format_to(std::back_inserter(out), "{:02x}", static_cast<uint8_t>(c));
  return out;
}

bool IsClientFrame(FrameType t) {
  switch (t) {
    case FrameType::kHello:
    case FrameType::kAssert:
    case FrameType::kPatch:
    case FrameType::kRetract:
    case FrameType::kQuery:
    case FrameType::kSubscribe:
    case FrameType::kUnsubscribe:
    case FrameType::kSync:
    case FrameType::kStats:
    case FrameType::kPing:
      return true;
    default:
      return false;
  }
}

FrameType MessageType(const Message& m) {
  return std::visit(Overloaded{
                        [](const net::Hello&) { return FrameType::kHello; },
                        [](const net::Welcome&) { return FrameType::kWelcome; },
                        [](const net::Error&) { return FrameType::kError; },
                        [](const net::WriteOp& w) { return w.type; },
                        [](const SingleVarint& s) { return s.type; },
                        [](const net::Query&) { return FrameType::kQuery; },
                        [](const net::Result&) { return FrameType::kResult; },
                        [](const net::Subscribe&) { return FrameType::kSubscribe; },
                        [](const net::Snapshot&) { return FrameType::kSnapshot; },
                        [](const net::SnapshotEnd&) { return FrameType::kSnapshotEnd; },
                        [](const net::Notify&) { return FrameType::kNotify; },
                        [](const StatsReply&) { return FrameType::kStatsReply; },
                    },
                    m);
}

void EncodeMessage(std::string& out, const Message& m, const VectorContext& ctx) {
  std::visit(Overloaded{
                 [&](const net::Hello& x) { net::EncodeHello(out, x); },
                 [&](const net::Welcome& x) { net::EncodeWelcome(out, x); },
                 [&](const net::Error& x) { net::EncodeError(out, x); },
                 [&](const net::WriteOp& x) { net::EncodeWriteOp(out, x); },
                 [&](const SingleVarint& x) { net::EncodeReq(out, x.type, x.value); },
                 [&](const net::Query& x) { net::EncodeQuery(out, x); },
                 [&](const net::Result& x) { net::EncodeResult(out, x); },
                 [&](const net::Subscribe& x) { net::EncodeSubscribe(out, x); },
                 [&](const net::Snapshot& x) { net::EncodeSnapshot(out, x); },
                 [&](const net::SnapshotEnd& x) { net::EncodeSnapshotEnd(out, x); },
                 [&](const net::Notify& x) { net::EncodeNotify(out, x, ctx.include_prev); },
                 [&](const StatsReply& x) { net::EncodeStatsReply(out, x.req, x.stats); },
             },
             m);
}

std::optional<Message> DecodeMessage(uint8_t type, std::string_view payload,
                                     const std::vector<Schema>& schemas, const VectorContext& ctx) {
  const Schema* schema = FindVectorSchema(schemas, ctx.schema_id);
  auto ok = [](bool decoded, auto&& m) -> std::optional<Message> {
    if (!decoded) return std::nullopt;
    return Message(std::move(m));
  };
  if (IsSingleVarint(type)) {
    SingleVarint s{static_cast<FrameType>(type), 0};
    return ok(net::DecodeReq(payload, &s.value), s);
  }
  switch (static_cast<FrameType>(type)) {
    case FrameType::kHello: {
      net::Hello m;
      return ok(net::DecodeHello(payload, &m), m);
    }
    case FrameType::kWelcome: {
      net::Welcome m;
      return ok(net::DecodeWelcome(payload, &m), m);
    }
    case FrameType::kError: {
      net::Error m;
      return ok(net::DecodeError(payload, &m), m);
    }
    case FrameType::kAssert:
    case FrameType::kPatch:
    case FrameType::kRetract: {
      net::WriteOp m;
      return ok(net::DecodeWriteOp(static_cast<FrameType>(type), payload, &m), m);
    }
    case FrameType::kQuery: {
      net::Query m;
      return ok(net::DecodeQuery(payload, &m), m);
    }
    case FrameType::kResult: {
      net::Result m;
      return ok(schema && net::DecodeResult(payload, *schema, ctx.include_claims, &m), m);
    }
    case FrameType::kSubscribe: {
      net::Subscribe m;
      return ok(net::DecodeSubscribe(payload, &m), m);
    }
    case FrameType::kSnapshot: {
      net::Snapshot m;
      return ok(schema && net::DecodeSnapshot(payload, *schema, &m), m);
    }
    case FrameType::kSnapshotEnd: {
      net::SnapshotEnd m;
      return ok(net::DecodeSnapshotEnd(payload, &m), m);
    }
    case FrameType::kNotify: {
      net::Notify m;
      return ok(schema && net::DecodeNotify(payload, *schema, ctx.include_prev, &m), m);
    }
    case FrameType::kStatsReply: {
      StatsReply m;
      return ok(net::DecodeStatsReply(payload, &m.req, &m.stats), m);
    }
    default:
      return std::nullopt;
  }
}

bool WriteFields(util::JsonWriter& w, const Message& m, const std::vector<Schema>& schemas,
                 const VectorContext& ctx) {
  FieldWriter f(w, schemas);
  f.Begin();
  std::visit(
      Overloaded{
          [&](const net::Hello& x) {
            f.U64("version", x.version)
                .Text("source_name", x.source)
                .Text("auth_token", x.auth_token)
                .U64("lease_ms", x.lease_ms);
          },
          [&](const net::Welcome& x) {
            f.U64("version", x.version)
                .Text("server_name", x.server_name)
                .U64("last_applied_seq", x.last_applied_seq)
                .U64("window_us", x.window_us)
                .U64("partitions", x.partitions)
                .U64("credit", x.credit)
                .BeginList("schemas");
            for (const auto& s : x.schemas) {
              f.Begin().U64("id", s.id).Text("name", s.name).BeginList("fields");
              for (const auto& field : s.fields) {
                f.Begin()
                    .Text("name", field.name)
                    .Num("type", static_cast<uint8_t>(field.type))
                    .End();
              }
              f.EndList().End();
            }
            f.EndList();
          },
          [&](const net::Error& x) {
            f.U64("seq_or_req", x.seq_or_req).U64("code", x.code).Text("message", x.message);
          },
          [&](const net::WriteOp& x) {
            f.U64("seq", x.seq).U64("ts", x.ts).U64("schema_id", x.schema_id).Text("id", x.id);
            if (x.type != FrameType::kRetract) f.Record("record", x.schema_id, x.record);
          },
          [&](const SingleVarint& x) { f.U64(SingleVarintName(x.type), x.value); },
          [&](const net::Query& x) {
            f.U64("req", x.req)
                .U64("schema_id", x.schema_id)
                .Text("id", x.id)
                .Num("flags", x.flags);
          },
          [&](const net::Result& x) {
            f.U64("req", x.req).Num("found", x.found ? 1 : 0);
            if (x.found) f.Record("record", ctx.schema_id, x.record);
            if (x.found && x.has_claims) {
              f.BeginList("claims");
              for (const auto& c : x.claims) {
                f.Begin()
                    .Text("source", c.source)
                    .U64("ts_max", c.ts_max)
                    .Record("record", ctx.schema_id, c.record)
                    .End();
              }
              f.EndList();
            }
          },
          [&](const net::Subscribe& x) {
            f.U64("sub", x.sub)
                .U64("schema_id", x.schema_id)
                .Text("id_prefix", x.id_prefix)
                .U64("field_mask", x.field_mask)
                .Num("flags", x.flags)
                .U64("resume_window", x.resume_window)
                .U64("interval_ms", x.interval_ms);
          },
          [&](const net::Snapshot& x) {
            f.U64("sub", x.sub).BeginList("entries");
            for (const auto& e : x.entries) {
              f.Begin()
                  .Num("kind", e.kind)
                  .Text("id", e.id)
                  .Record("record", ctx.schema_id, e.record)
                  .End();
            }
            f.EndList();
          },
          [&](const net::SnapshotEnd& x) {
            f.U64("sub", x.sub)
                .U64("total", x.total)
                .U64("window", x.window)
                .Num("reset", x.reset ? 1 : 0);
          },
          [&](const net::Notify& x) {
            f.U64("sub", x.sub).U64("window", x.window).BeginList("changes");
            for (const auto& c : x.changes) {
              f.Begin()
                  .Num("kind", c.kind)
                  .Text("id", c.id)
                  .U64("changed_mask", c.changed_mask)
                  .U64("ts", c.ts)
                  .Record("record", ctx.schema_id, c.record);
              if (ctx.include_prev) {
                f.Num("had_prev", c.had_prev ? 1 : 0);
                if (c.had_prev) f.Record("prev", ctx.schema_id, c.prev);
              }
              f.End();
            }
            f.EndList();
          },
          [&](const StatsReply& x) {
            f.U64("req", x.req).BeginList("stats");
            for (const auto& [name, value] : x.stats) {
              f.Begin().Text("name", name).U64("value", value).End();
            }
            f.EndList();
          },
      },
      m);
  f.End();
  return f.ok();
}

std::string FieldsJson(const Message& m, const std::vector<Schema>& schemas,
                       const VectorContext& ctx) {
  util::JsonWriter w;
  if (!WriteFields(w, m, schemas, ctx)) return {};
  return w.Take();
}

}  // namespace conv::cmd
