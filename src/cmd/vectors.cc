#include "cmd/vectors.h"

#include <fmt/format.h>

#include <bit>
#include <deque>
#include <limits>
#include <optional>
#include <set>
#include <stdexcept>
#include <utility>

#include "cmd/vector_messages.h"
#include "engine/record.h"
#include "util/json.h"

namespace conv::cmd {

using engine::FieldType;
using engine::Schema;
using engine::Value;
using net::FrameType;

namespace {

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();

// Builds the vectors: records from named values, frames from messages. The text has
// one schema and one frame per line, so that a change to one vector is a one-line diff.
class VectorSet {
 public:
  VectorSet() : schemas_(VectorSchemas()) {
    w_.BeginObject()
        .Key("protocol_version")
        .Uint(net::kProtocolVersion)
        .Key("schemas")
        .BeginArray();
    for (const auto& s : schemas_) {
      w_.BeginObject().Key("id").Uint(s.id).Field("name", s.name).Key("fields").BeginArray();
      for (const auto& f : s.fields) {
        w_.BeginObject().Field("name", f.name).Field("type", FieldTypeName(f.type)).EndObject();
      }
      w_.EndArray().EndObject();
    }
    w_.EndArray().Key("frames").BeginArray();
  }

  const std::vector<Schema>& schemas() const { return schemas_; }

  // Keeps `s` alive for the WriteOps and Querys that point into it.
  std::string_view Keep(std::string s) { return arena_.emplace_back(std::move(s)); }

  std::string Record(uint64_t schema_id, const std::vector<std::pair<std::string, Value>>& fields) {
    engine::RecordBuilder b(*FindVectorSchema(schemas_, schema_id));
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
    w_.BeginObject()
        .Field("name", name)
        .Field("type", net::FrameTypeName(static_cast<uint8_t>(type)))
        .Key("code")
        .Uint(static_cast<uint8_t>(type))
        .Field("direction", IsClientFrame(type) ? "c2s" : "s2c")
        .Field("hex", VectorHex(frame));
    if (ctx) {
      w_.Key("context").BeginObject().Key("schema_id").Uint(c.schema_id);
      if (type == FrameType::kNotify) w_.Field("include_prev", c.include_prev);
      if (type == FrameType::kResult) w_.Field("include_claims", c.include_claims);
      w_.EndObject();
    }
    w_.Key("fields");
    if (!WriteFields(w_, m, schemas_, c)) {
      throw std::logic_error("vector " + name + ": a record does not parse");
    }
    w_.EndObject();
  }

  // The whole text; the set is spent.
  std::string Take() {
    w_.EndArray().EndObject();
    return w_.Take() + "\n";
  }

 private:
  std::vector<Schema> schemas_;
  std::deque<std::string> arena_;
  std::set<std::string> names_;
  // The root object and the schemas and frames arrays on lines, each schema and frame
  // on one.
  util::JsonWriter w_ = util::JsonWriter::Readable(2);
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
      "this server is a read replica; the owner is at 10.0.0.7:3727",
  };
  // Connection-level codes carry 0; the others the op's seq or the request's req/sub.
  static constexpr uint64_t kSeqOrReq[] = {0, 0, 0, 0, 0, 17, 3, 42, 43, 4, 0, 0, 0, 0, 0};
  for (uint64_t code = 1; code <= 14; ++code) {
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
  return v.Take();
}

}  // namespace conv::cmd
