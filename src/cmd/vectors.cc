#include "cmd/vectors.h"

#include <fmt/format.h>

#include <bit>
#include <deque>
#include <iterator>
#include <limits>
#include <set>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "engine/record.h"
#include "util/json.h"

namespace conv::cmd {

using engine::FieldType;
using engine::Schema;
using engine::Value;
using net::FrameType;

namespace {

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};

const Schema* FindSchema(const std::vector<Schema>& schemas, uint64_t id) {
  for (const auto& s : schemas) {
    if (s.id == id) return &s;
  }
  return nullptr;
}

std::string Hex(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes)
    fmt::format_to(std::back_inserter(out), "{:02x}", static_cast<uint8_t>(c));
  return out;
}

// JSON writer for one object on one line: `{"a": 1, "b": "x"}`.
class Obj {
 public:
  Obj& Raw(std::string_view key, std::string_view json) {
    out_ += out_.empty() ? "{" : ", ";
    util::AppendJsonString(out_, key);
    out_ += ": ";
    out_ += json;
    return *this;
  }
  Obj& U64(std::string_view key, uint64_t v) { return Raw(key, fmt::format("\"{}\"", v)); }
  Obj& Num(std::string_view key, uint64_t v) { return Raw(key, fmt::format("{}", v)); }
  Obj& Str(std::string_view key, std::string_view s) {
    std::string j;
    util::AppendJsonString(j, s);
    return Raw(key, j);
  }
  // Bytes meant as text (ids, names): a JSON string when valid UTF-8, else {"hex": ...}.
  Obj& Text(std::string_view key, std::string_view s) {
    if (util::IsValidUtf8(s)) return Str(key, s);
    return Raw(key, Obj().Str("hex", Hex(s)).Done());
  }
  std::string Done() const { return out_.empty() ? "{}" : out_ + "}"; }

 private:
  std::string out_;
};

std::string Array(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ", ";
    out += items[i];
  }
  return out + "]";
}

std::string ValueJson(const Value& v) {
  return std::visit(
      Overloaded{
          [](bool b) { return Obj().Raw("bool", b ? "true" : "false").Done(); },
          [](int64_t i) { return Obj().Str("i64", fmt::format("{}", i)).Done(); },
          [](double d) {
            return Obj().Str("f64", fmt::format("{:016x}", std::bit_cast<uint64_t>(d))).Done();
          },
          [](const std::string& s) { return Obj().Str("string", s).Done(); },
          [](const engine::Bytes& b) { return Obj().Str("bytes", Hex(b.data)).Done(); },
      },
      v);
}

// {"mask": "...", "values": {...}}, or empty when `bytes` is not a whole record of
// `schema` (or there is no schema).
std::string RecordJson(const Schema* schema, std::string_view bytes) {
  if (schema == nullptr) return {};
  engine::RecordView view;
  if (!engine::ParseRecord(*schema, bytes, &view).ok()) return {};
  std::vector<std::string_view> slices(schema->fields.size());
  engine::SliceFields(*schema, view.mask, view.values, slices.data());
  Obj values;
  for (size_t i = 0; i < schema->fields.size(); ++i) {
    if ((view.mask >> i & 1) == 0) continue;
    values.Raw(schema->fields[i].name,
               ValueJson(engine::DecodeValue(schema->fields[i].type, slices[i])));
  }
  return Obj().U64("mask", view.mask).Raw("values", values.Done()).Done();
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

// Builds the vectors: records from named values, frames from messages.
class VectorSet {
 public:
  VectorSet() : schemas_(VectorSchemas()) {}

  const std::vector<Schema>& schemas() const { return schemas_; }

  // Keeps `s` alive for the WriteOps and Querys that point into it.
  std::string_view Keep(std::string s) { return arena_.emplace_back(std::move(s)); }

  std::string Record(uint64_t schema_id, const std::vector<std::pair<std::string, Value>>& fields) {
    engine::RecordBuilder b(*FindSchema(schemas_, schema_id));
    for (const auto& [name, value] : fields) {
      auto st = b.Set(name, value);
      if (!st.ok()) throw std::logic_error("vector record: " + st.message());
    }
    return b.Encode();
  }

  void Add(std::string name, const Message& m, std::optional<VectorContext> ctx = std::nullopt) {
    if (!names_.insert(name).second) throw std::logic_error("duplicate vector name " + name);
    const VectorContext c = ctx.value_or(VectorContext{});
    FrameType type = MessageType(m);
    std::string frame;
    EncodeMessage(frame, m, c);
    std::string fields = FieldsJson(m, schemas_, c);
    if (fields.empty()) throw std::logic_error("vector " + name + ": a record does not parse");
    Obj o;
    o.Str("name", name)
        .Str("type", net::FrameTypeName(static_cast<uint8_t>(type)))
        .Num("code", static_cast<uint8_t>(type))
        .Str("direction", IsClientFrame(type) ? "c2s" : "s2c")
        .Str("hex", Hex(frame));
    if (ctx) {
      Obj co;
      co.Num("schema_id", c.schema_id);
      if (type == FrameType::kNotify) co.Raw("include_prev", c.include_prev ? "true" : "false");
      if (type == FrameType::kResult) {
        co.Raw("include_claims", c.include_claims ? "true" : "false");
      }
      o.Raw("context", co.Done());
    }
    o.Raw("fields", fields);
    frames_.push_back(o.Done());
  }

  std::string Json() const {
    std::string out = "{\n  \"protocol_version\": 1,\n  \"schemas\": [\n";
    for (size_t i = 0; i < schemas_.size(); ++i) {
      std::vector<std::string> fields;
      for (const auto& f : schemas_[i].fields) {
        fields.push_back(Obj().Str("name", f.name).Str("type", FieldTypeName(f.type)).Done());
      }
      out += "    " +
             Obj()
                 .Num("id", schemas_[i].id)
                 .Str("name", schemas_[i].name)
                 .Raw("fields", Array(fields))
                 .Done() +
             (i + 1 < schemas_.size() ? ",\n" : "\n");
    }
    out += "  ],\n  \"frames\": [\n";
    for (size_t i = 0; i < frames_.size(); ++i) {
      out += "    " + frames_[i] + (i + 1 < frames_.size() ? ",\n" : "\n");
    }
    out += "  ]\n}\n";
    return out;
  }

 private:
  std::vector<Schema> schemas_;
  std::deque<std::string> arena_;
  std::set<std::string> names_;
  std::vector<std::string> frames_;
};

constexpr uint64_t kPlayer = 1;
constexpr uint64_t kKitchen = 2;
constexpr uint64_t kWide = 3;

double F64Bits(uint64_t bits) {
  return std::bit_cast<double>(bits);
}

void AddHandshake(VectorSet& v) {
  v.Add("hello: writer with token and lease",
        net::Hello{.source = "sensor-7", .auth_token = "s3cret", .lease_ms = 30000});
  v.Add("hello: reader, no token, no lease", net::Hello{});
  v.Add("hello: 255-byte source name, largest lease varint",
        net::Hello{.source = std::string(255, 's'), .lease_ms = kU64Max});
  v.Add("hello: version 2", net::Hello{.version = 2, .source = "w"});

  v.Add("welcome: writer, credit 1024, three schemas", net::Welcome{.server_name = "convergence",
                                                                    .last_applied_seq = 41,
                                                                    .window_us = 2000,
                                                                    .partitions = 2,
                                                                    .credit = 1024,
                                                                    .schemas = v.schemas()});
  v.Add("welcome: reader (credit 0), one schema", net::Welcome{.server_name = "convergence",
                                                               .window_us = 2000,
                                                               .partitions = 1,
                                                               .schemas = {v.schemas()[0]}});
  v.Add("welcome: largest varints, no schemas", net::Welcome{.version = 1,
                                                             .server_name = "",
                                                             .last_applied_seq = kU64Max,
                                                             .window_us = kU64Max,
                                                             .partitions = kU64Max,
                                                             .credit = 1048576});

  static constexpr const char* kMessages[] = {
      "",
      "frame type 0x7f is not a client frame",
      "frame length 2000000 is over --max-frame 1048576",
      "protocol version 2 is not supported (this server speaks 1)",
      "wrong or missing auth token",
      "write on a connection without a source name",
      "unknown schema id 9",
      "field 'count' at offset 1: value runs past the end of the record",
      "entity id is 256 bytes (limit 255)",
      "subscription 4 is not live",
      "too many connections (limit 1024)",
      "server is shutting down",
      "another connection took over source 'sensor-7'",
      "the first frame must be HELLO",
  };
  // Connection-level codes carry 0; the others the op's seq or the request's req/sub.
  static constexpr uint64_t kSeqOrReq[] = {0, 0, 0, 0, 0, 17, 3, 42, 43, 4, 0, 0, 0, 0};
  for (uint64_t code = 1; code <= 13; ++code) {
    v.Add(fmt::format("error: {} ({})", net::ErrorCodeName(code), code),
          net::Error{.seq_or_req = kSeqOrReq[code], .code = code, .message = kMessages[code]});
  }
  v.Add(
      "error: largest seq_or_req, overloaded for a full disk",
      net::Error{.seq_or_req = kU64Max,
                 .code = 10,
                 .message = "op 18446744073709551615 was refused for a full disk: resend from it"});
  v.Add("error: a code this version does not know, empty message",
        net::Error{.seq_or_req = 0, .code = 99, .message = ""});
}

void AddWrites(VectorSet& v) {
  auto op = [&](FrameType t, uint64_t seq, uint64_t ts, uint64_t schema, std::string id,
                std::string record) {
    return net::WriteOp{.type = t,
                        .seq = seq,
                        .ts = ts,
                        .schema_id = schema,
                        .id = v.Keep(std::move(id)),
                        .record = v.Keep(std::move(record))};
  };
  std::string every = v.Record(kKitchen, {{"flag", true},
                                          {"count", int64_t{-42}},
                                          {"ratio", 1.5},
                                          {"label", std::string("h\xc3\xa9llo \xe2\x9c\x93")},
                                          {"blob", engine::Bytes{std::string("\x00\xff\x10", 3)}}});
  v.Add("assert: every field type (all-field mask)",
        op(FrameType::kAssert, 1, 1700000000000000, kKitchen, "k-1", every));
  v.Add("assert: i64 min (zigzag extreme)",
        op(FrameType::kAssert, 2, 1700000000000001, kKitchen, "k-1",
           v.Record(kKitchen, {{"count", std::numeric_limits<int64_t>::min()}})));
  v.Add("assert: i64 max (zigzag extreme)",
        op(FrameType::kAssert, 3, 1700000000000002, kKitchen, "k-1",
           v.Record(kKitchen, {{"count", std::numeric_limits<int64_t>::max()}})));
  v.Add("assert: NaN, -0.0 and infinity",
        op(FrameType::kAssert, 4, 0, kPlayer, "p-1",
           v.Record(kPlayer, {{"x", F64Bits(engine::kCanonicalNaN)},
                              {"y", F64Bits(0x8000000000000000ull)},
                              {"z", std::numeric_limits<double>::infinity()}})));
  v.Add("assert: empty record (mask 0)",
        op(FrameType::kAssert, 5, 1700000000000003, kKitchen, "k-2", v.Record(kKitchen, {})));
  v.Add("assert: empty string and empty bytes, false, zero",
        op(FrameType::kAssert, 6, 1700000000000004, kKitchen, "k-3",
           v.Record(kKitchen, {{"flag", false},
                               {"count", int64_t{0}},
                               {"ratio", 0.0},
                               {"label", std::string()},
                               {"blob", engine::Bytes{}}})));
  v.Add("assert: 255-byte id",
        op(FrameType::kAssert, 7, 1700000000000005, kPlayer, std::string(255, 'i'),
           v.Record(kPlayer, {{"name", std::string("long")}})));
  v.Add("assert: empty id", op(FrameType::kAssert, 8, 1700000000000006, kPlayer, "",
                               v.Record(kPlayer, {{"online", true}})));
  v.Add("assert: id that is not UTF-8",
        op(FrameType::kAssert, 9, 1700000000000007, kPlayer, std::string("\xff\x00\x80", 3),
           v.Record(kPlayer, {{"level", int64_t{3}}})));
  std::vector<std::pair<std::string, Value>> all64;
  for (int i = 0; i < 64; ++i)
    all64.emplace_back(fmt::format("b{}", i), i % 3 == 0);
  v.Add("assert: 64 fields (mask u64 max)",
        op(FrameType::kAssert, 10, 1700000000000008, kWide, "w-1", v.Record(kWide, all64)));

  v.Add("patch: two fields", op(FrameType::kPatch, 11, 1700000000000009, kPlayer, "p-17",
                                v.Record(kPlayer, {{"x", 12.25}, {"health", int64_t{-5}}})));
  v.Add("patch: largest varint seq and ts", op(FrameType::kPatch, kU64Max, kU64Max, kKitchen, "k-1",
                                               v.Record(kKitchen, {{"count", int64_t{1}}})));
  v.Add("retract: one entity", op(FrameType::kRetract, 12, 1700000000000010, kPlayer, "p-17", ""));
  v.Add("retract: largest varints (seq, ts, schema_id)",
        op(FrameType::kRetract, kU64Max, kU64Max, kU64Max, "x", ""));

  v.Add("ack: seq 1", SingleVarint{FrameType::kAck, 1});
  v.Add("ack: largest seq", SingleVarint{FrameType::kAck, kU64Max});
  v.Add("credit: 256 (the least)", SingleVarint{FrameType::kCredit, 256});
  v.Add("credit: 1048576 (the most)", SingleVarint{FrameType::kCredit, 1048576});
  v.Add("credit: largest varint", SingleVarint{FrameType::kCredit, kU64Max});
}

void AddRequests(VectorSet& v) {
  v.Add("query: without claims",
        net::Query{.req = 1, .schema_id = kPlayer, .id = v.Keep("p-17"), .flags = 0});
  v.Add(
      "query: with claims",
      net::Query{
          .req = 2, .schema_id = kKitchen, .id = v.Keep("k-1"), .flags = net::kQueryIncludeClaims});
  v.Add("query: largest req, 255-byte id",
        net::Query{.req = kU64Max, .schema_id = kPlayer, .id = v.Keep(std::string(255, 'q'))});

  VectorContext player{.schema_id = kPlayer};
  VectorContext kitchen_claims{.schema_id = kKitchen, .include_claims = true};
  v.Add("result: not found", net::Result{.req = 1, .found = false}, player);
  v.Add("result: found, without claims",
        net::Result{.req = 1,
                    .found = true,
                    .record = v.Record(kPlayer, {{"name", std::string("ann")},
                                                 {"x", 1.0},
                                                 {"score", int64_t{100}},
                                                 {"online", true}})},
        player);
  v.Add("result: not found, claims asked for", net::Result{.req = 5, .found = false},
        kitchen_claims);
  v.Add("result: found, with two claims",
        net::Result{
            .req = 2,
            .found = true,
            .record = v.Record(kKitchen, {{"flag", true}, {"count", int64_t{7}}, {"ratio", -0.0}}),
            .has_claims = true,
            .claims = {{.source = "a",
                        .ts_max = 1700000000000000,
                        .record = v.Record(kKitchen, {{"flag", true}, {"count", int64_t{1}}})},
                       {.source = "b",
                        .ts_max = kU64Max,
                        .record = v.Record(kKitchen, {{"count", int64_t{7}}, {"ratio", -0.0}})}}},
        kitchen_claims);
  v.Add("result: found, empty record, one claim with no fields",
        net::Result{.req = kU64Max,
                    .found = true,
                    .record = v.Record(kKitchen, {}),
                    .has_claims = true,
                    .claims = {{.source = std::string(255, 'c'),
                                .ts_max = 0,
                                .record = v.Record(kKitchen, {})}}},
        kitchen_claims);

  v.Add("sync: req 1", SingleVarint{FrameType::kSync, 1});
  v.Add("sync: largest req", SingleVarint{FrameType::kSync, kU64Max});
  v.Add("synced: req 1", SingleVarint{FrameType::kSynced, 1});
  v.Add("synced: largest req", SingleVarint{FrameType::kSynced, kU64Max});
  v.Add("stats: req 3", SingleVarint{FrameType::kStats, 3});
  v.Add("stats_reply: three counters",
        StatsReply{.req = 3,
                   .stats = {{"ops_applied", 123456}, {"duplicates", 0}, {"windows", kU64Max}}});
  v.Add("stats_reply: no counters", StatsReply{.req = kU64Max});
  v.Add("ping: req 4", SingleVarint{FrameType::kPing, 4});
  v.Add("ping: largest req", SingleVarint{FrameType::kPing, kU64Max});
  v.Add("pong: req 4", SingleVarint{FrameType::kPong, 4});
}

net::ChangeEntry Entry(uint8_t kind, std::string id, std::string record) {
  return {.kind = kind, .id = std::move(id), .record = std::move(record)};
}

net::ChangeEntry Change(uint8_t kind, std::string id, uint64_t changed_mask, uint64_t ts,
                        std::string record, bool had_prev = false, std::string prev = {}) {
  return {.kind = kind,
          .id = std::move(id),
          .changed_mask = changed_mask,
          .ts = ts,
          .record = std::move(record),
          .had_prev = had_prev,
          .prev = std::move(prev)};
}

void AddSubscriptions(VectorSet& v) {
  using net::kChangeDelete;
  using net::kChangeUpsert;
  v.Add("subscribe: bootstrap and include_prev",
        net::Subscribe{.sub = 1,
                       .schema_id = kPlayer,
                       .id_prefix = "p-",
                       .flags = net::kSubscribeBootstrap | net::kSubscribeIncludePrev});
  v.Add("subscribe: resume, field mask, interval", net::Subscribe{.sub = 2,
                                                                  .schema_id = kKitchen,
                                                                  .field_mask = 0b10110,
                                                                  .flags = net::kSubscribeBootstrap,
                                                                  .resume_window = 981,
                                                                  .interval_ms = 250});
  v.Add("subscribe: live only, empty prefix, no flags",
        net::Subscribe{.sub = 3, .schema_id = kPlayer});
  v.Add("subscribe: largest varints, 255-byte prefix",
        net::Subscribe{.sub = kU64Max,
                       .schema_id = kWide,
                       .id_prefix = std::string(255, 'w'),
                       .field_mask = kU64Max,
                       .flags = 0,
                       .resume_window = kU64Max,
                       .interval_ms = kU64Max});
  v.Add("unsubscribe: sub 1", SingleVarint{FrameType::kUnsubscribe, 1});
  v.Add("unsubscribe: largest sub", SingleVarint{FrameType::kUnsubscribe, kU64Max});

  VectorContext kitchen{.schema_id = kKitchen};
  v.Add("snapshot: upserts and a delete",
        net::Snapshot{.sub = 2,
                      .entries = {Entry(kChangeUpsert, "k-1",
                                        v.Record(kKitchen, {{"flag", true},
                                                            {"count", int64_t{-1}},
                                                            {"label", std::string("one")}})),
                                  Entry(kChangeUpsert, "k-2", v.Record(kKitchen, {})),
                                  Entry(kChangeDelete, "k-3", v.Record(kKitchen, {}))}},
        kitchen);
  v.Add("snapshot: 255-byte id, id that is not UTF-8, zigzag extremes",
        net::Snapshot{
            .sub = kU64Max,
            .entries = {Entry(kChangeUpsert, std::string(255, 'k'),
                              v.Record(kKitchen, {{"count", std::numeric_limits<int64_t>::min()}})),
                        Entry(kChangeUpsert, std::string("k\xc0\xaf", 3),
                              v.Record(kKitchen, {{"count", std::numeric_limits<int64_t>::max()},
                                                  {"ratio", F64Bits(engine::kCanonicalNaN)}}))}},
        kitchen);
  std::vector<std::pair<std::string, Value>> all64;
  for (int i = 0; i < 64; ++i)
    all64.emplace_back(fmt::format("b{}", i), i % 2 == 1);
  v.Add("snapshot: 64 fields (mask u64 max)",
        net::Snapshot{.sub = 9, .entries = {Entry(kChangeUpsert, "w-1", v.Record(kWide, all64))}},
        VectorContext{.schema_id = kWide});
  v.Add("snapshot: no entries", net::Snapshot{.sub = 2}, kitchen);

  v.Add("snapshot_end: bootstrap (reset 1)",
        net::SnapshotEnd{.sub = 2, .total = 3, .window = 981, .reset = true});
  v.Add("snapshot_end: resume (reset 0)",
        net::SnapshotEnd{.sub = 2, .total = 1, .window = 1200, .reset = false});
  v.Add("snapshot_end: largest varints",
        net::SnapshotEnd{.sub = kU64Max, .total = kU64Max, .window = kU64Max, .reset = true});

  VectorContext plain{.schema_id = kKitchen, .include_prev = false};
  VectorContext prev{.schema_id = kKitchen, .include_prev = true};
  v.Add(
      "notify: an upsert and a delete",
      net::Notify{.sub = 2,
                  .window = 982,
                  .changes = {Change(kChangeUpsert, "k-1", 0b00110, 1700000000000100,
                                     v.Record(kKitchen, {{"flag", true},
                                                         {"count", int64_t{2}},
                                                         {"ratio", F64Bits(0x8000000000000000ull)},
                                                         {"label", std::string("one")}})),
                              Change(kChangeDelete, "k-3", 0b11111, 1700000000000101,
                                     v.Record(kKitchen, {}))}},
      plain);
  v.Add("notify: include_prev, with and without a previous record",
        net::Notify{.sub = 1,
                    .window = 983,
                    .changes = {Change(kChangeUpsert, "k-1", 0b00010, 1700000000000200,
                                       v.Record(kKitchen, {{"count", int64_t{3}}}), true,
                                       v.Record(kKitchen, {{"count", int64_t{2}}})),
                                Change(kChangeUpsert, "k-4", 0b01000, 1700000000000201,
                                       v.Record(kKitchen, {{"label", std::string("new")}}), false),
                                Change(kChangeDelete, "k-2", 0b11111, 1700000000000202,
                                       v.Record(kKitchen, {}), true,
                                       v.Record(kKitchen, {{"blob", engine::Bytes{"\x01"}}})),
                                Change(kChangeUpsert, "k-5", 0b00001, 1700000000000203,
                                       v.Record(kKitchen, {{"flag", true}}), true,
                                       v.Record(kKitchen, {}))}},
        prev);
  v.Add("notify: largest varints (sub, window, changed_mask, ts)",
        net::Notify{
            .sub = kU64Max,
            .window = kU64Max,
            .changes = {Change(kChangeUpsert, "w-1", kU64Max, kU64Max, v.Record(kWide, all64))}},
        VectorContext{.schema_id = kWide});

  // One window (991) split over three NOTIFY frames after a SNAPSHOT_END at 990: the
  // first two carry the previous window, the last the new one.
  v.Add("window split: snapshot_end before it (window 990)",
        net::SnapshotEnd{.sub = 7, .total = 0, .window = 990, .reset = false});
  for (int part = 1; part <= 3; ++part) {
    std::vector<net::ChangeEntry> changes;
    for (int k = 0; k < 2; ++k) {
      int n = (part - 1) * 2 + k;
      changes.push_back(Change(kChangeUpsert, fmt::format("k-{}", 10 + n), 0b00010,
                               1700000000000300 + n, v.Record(kKitchen, {{"count", int64_t{n}}})));
    }
    v.Add(fmt::format("window split: notify {} of 3 (window {})", part, part < 3 ? 990 : 991),
          net::Notify{.sub = 7, .window = part < 3 ? 990u : 991u, .changes = std::move(changes)},
          plain);
  }
}

}  // namespace

std::vector<Schema> VectorSchemas() {
  std::vector<Schema> out;
  out.push_back(engine::PlayerSchema());
  Schema kitchen;
  kitchen.id = kKitchen;
  kitchen.name = "kitchen";
  kitchen.fields = {{"flag", FieldType::kBool},
                    {"count", FieldType::kI64},
                    {"ratio", FieldType::kF64},
                    {"label", FieldType::kString},
                    {"blob", FieldType::kBytes}};
  out.push_back(std::move(kitchen));
  Schema wide;
  wide.id = kWide;
  wide.name = "wide";
  for (int i = 0; i < 64; ++i)
    wide.fields.push_back({fmt::format("b{}", i), FieldType::kBool});
  out.push_back(std::move(wide));
  return out;
}

std::string FrameVectorsJson() {
  VectorSet v;
  AddHandshake(v);
  AddWrites(v);
  AddRequests(v);
  AddSubscriptions(v);
  return v.Json();
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
  const Schema* schema = FindSchema(schemas, ctx.schema_id);
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

std::string FieldsJson(const Message& m, const std::vector<Schema>& schemas,
                       const VectorContext& ctx) {
  const Schema* ctx_schema = FindSchema(schemas, ctx.schema_id);
  bool bad_record = false;
  auto record = [&](const Schema* schema, std::string_view bytes) {
    std::string j = RecordJson(schema, bytes);
    if (j.empty()) bad_record = true;
    return j;
  };
  std::string out = std::visit(
      Overloaded{
          [&](const net::Hello& x) {
            return Obj()
                .U64("version", x.version)
                .Text("source_name", x.source)
                .Text("auth_token", x.auth_token)
                .U64("lease_ms", x.lease_ms)
                .Done();
          },
          [&](const net::Welcome& x) {
            std::vector<std::string> schemas_json;
            for (const auto& s : x.schemas) {
              std::vector<std::string> fields;
              for (const auto& f : s.fields) {
                fields.push_back(
                    Obj().Text("name", f.name).Num("type", static_cast<uint8_t>(f.type)).Done());
              }
              schemas_json.push_back(
                  Obj().U64("id", s.id).Text("name", s.name).Raw("fields", Array(fields)).Done());
            }
            return Obj()
                .U64("version", x.version)
                .Text("server_name", x.server_name)
                .U64("last_applied_seq", x.last_applied_seq)
                .U64("window_us", x.window_us)
                .U64("partitions", x.partitions)
                .U64("credit", x.credit)
                .Raw("schemas", Array(schemas_json))
                .Done();
          },
          [&](const net::Error& x) {
            return Obj()
                .U64("seq_or_req", x.seq_or_req)
                .U64("code", x.code)
                .Text("message", x.message)
                .Done();
          },
          [&](const net::WriteOp& x) {
            Obj o;
            o.U64("seq", x.seq).U64("ts", x.ts).U64("schema_id", x.schema_id).Text("id", x.id);
            if (x.type != FrameType::kRetract) {
              o.Raw("record", record(FindSchema(schemas, x.schema_id), x.record));
            }
            return o.Done();
          },
          [&](const SingleVarint& x) {
            return Obj().U64(SingleVarintName(x.type), x.value).Done();
          },
          [&](const net::Query& x) {
            return Obj()
                .U64("req", x.req)
                .U64("schema_id", x.schema_id)
                .Text("id", x.id)
                .Num("flags", x.flags)
                .Done();
          },
          [&](const net::Result& x) {
            Obj o;
            o.U64("req", x.req).Num("found", x.found ? 1 : 0);
            if (x.found) o.Raw("record", record(ctx_schema, x.record));
            if (x.found && x.has_claims) {
              std::vector<std::string> claims;
              for (const auto& c : x.claims) {
                claims.push_back(Obj()
                                     .Text("source", c.source)
                                     .U64("ts_max", c.ts_max)
                                     .Raw("record", record(ctx_schema, c.record))
                                     .Done());
              }
              o.Raw("claims", Array(claims));
            }
            return o.Done();
          },
          [&](const net::Subscribe& x) {
            return Obj()
                .U64("sub", x.sub)
                .U64("schema_id", x.schema_id)
                .Text("id_prefix", x.id_prefix)
                .U64("field_mask", x.field_mask)
                .Num("flags", x.flags)
                .U64("resume_window", x.resume_window)
                .U64("interval_ms", x.interval_ms)
                .Done();
          },
          [&](const net::Snapshot& x) {
            std::vector<std::string> entries;
            for (const auto& e : x.entries) {
              entries.push_back(Obj()
                                    .Num("kind", e.kind)
                                    .Text("id", e.id)
                                    .Raw("record", record(ctx_schema, e.record))
                                    .Done());
            }
            return Obj().U64("sub", x.sub).Raw("entries", Array(entries)).Done();
          },
          [&](const net::SnapshotEnd& x) {
            return Obj()
                .U64("sub", x.sub)
                .U64("total", x.total)
                .U64("window", x.window)
                .Num("reset", x.reset ? 1 : 0)
                .Done();
          },
          [&](const net::Notify& x) {
            std::vector<std::string> changes;
            for (const auto& c : x.changes) {
              Obj o;
              o.Num("kind", c.kind)
                  .Text("id", c.id)
                  .U64("changed_mask", c.changed_mask)
                  .U64("ts", c.ts)
                  .Raw("record", record(ctx_schema, c.record));
              if (ctx.include_prev) {
                o.Num("had_prev", c.had_prev ? 1 : 0);
                if (c.had_prev) o.Raw("prev", record(ctx_schema, c.prev));
              }
              changes.push_back(o.Done());
            }
            return Obj()
                .U64("sub", x.sub)
                .U64("window", x.window)
                .Raw("changes", Array(changes))
                .Done();
          },
          [&](const StatsReply& x) {
            std::vector<std::string> stats;
            for (const auto& [name, value] : x.stats) {
              stats.push_back(Obj().Text("name", name).U64("value", value).Done());
            }
            return Obj().U64("req", x.req).Raw("stats", Array(stats)).Done();
          },
      },
      m);
  return bad_record ? std::string() : out;
}

}  // namespace conv::cmd
