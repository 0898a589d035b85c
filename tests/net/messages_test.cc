#include "net/messages.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "engine/record.h"
#include "engine/schema.h"
#include "net/protocol.h"
#include "util/coding.h"

// With AddressSanitizer, its malloc hooks let a test count the heap allocations a
// decoder makes. GCC has no <sanitizer/allocator_interface.h>, so it is declared here.
#if defined(__SANITIZE_ADDRESS__)
#define CONV_TEST_COUNT_ALLOCATIONS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CONV_TEST_COUNT_ALLOCATIONS 1
#endif
#endif
#ifdef CONV_TEST_COUNT_ALLOCATIONS
extern "C" int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void*,
                                                                             size_t),
                                                         void (*free_hook)(const volatile void*));
#endif

using namespace conv;
using net::FrameStatus;
using net::FrameType;

namespace {

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();

// Counts the heap allocations this thread makes while it is alive. available() is
// false in builds without AddressSanitizer, where nothing is counted.
class AllocationCounter {
 public:
  AllocationCounter() {
    count_ = 0;
    counting_ = true;
  }
  ~AllocationCounter() { counting_ = false; }
  static bool available() {
#ifdef CONV_TEST_COUNT_ALLOCATIONS
    static const bool installed = __sanitizer_install_malloc_and_free_hooks(&OnMalloc, &OnFree);
    return installed;
#else
    return false;
#endif
  }
  size_t count() const {
    return count_;
  }

 private:
  static void OnMalloc(const volatile void*, size_t) {
    if (counting_) ++count_;
  }
  static void OnFree(const volatile void*) {}
  static inline thread_local bool counting_ = false;
  static inline thread_local size_t count_ = 0;
};

const engine::Schema& Player() {
  static const engine::Schema schema = engine::PlayerSchema();
  return schema;
}

// A schema with one field of each type.
engine::Schema Things() {
  engine::Schema s;
  s.id = 2;
  s.name = "things";
  s.fields = {{"flag", engine::FieldType::kBool},
              {"count", engine::FieldType::kI64},
              {"ratio", engine::FieldType::kF64},
              {"label", engine::FieldType::kString},
              {"blob", engine::FieldType::kBytes}};
  return s;
}

std::string FullPlayerRecord() {
  engine::RecordBuilder b(Player());
  REQUIRE(b.Set("name", std::string("Ann \xc3\xa9")).ok());
  REQUIRE(b.Set("team", std::string("red")).ok());
  REQUIRE(b.Set("x", 1.5).ok());
  REQUIRE(b.Set("y", -0.25).ok());
  REQUIRE(b.Set("z", 1e300).ok());
  REQUIRE(b.Set("health", int64_t{90}).ok());
  REQUIRE(b.Set("score", std::numeric_limits<int64_t>::min()).ok());
  REQUIRE(b.Set("level", int64_t{-3}).ok());
  REQUIRE(b.Set("online", true).ok());
  return b.Encode();
}

std::string PartialPlayerRecord() {
  engine::RecordBuilder b(Player());
  REQUIRE(b.Set("health", int64_t{75}).ok());
  REQUIRE(b.Set("online", false).ok());
  return b.Encode();
}

// A heap buffer of exactly the input's size, so AddressSanitizer reports any read past
// its end.
std::vector<char> Exact(std::string_view s) {
  return std::vector<char>(s.begin(), s.end());
}
std::string_view View(const std::vector<char>& buf) {
  return {buf.data(), buf.size()};
}

bool Within(std::string_view v, const std::vector<char>& buf) {
  if (v.empty()) return true;
  return v.data() >= buf.data() && v.data() + v.size() <= buf.data() + buf.size();
}

// Cuts `bytes`, which must hold exactly one whole frame.
net::Frame Cut(const std::string& bytes) {
  net::Frame f;
  size_t consumed = 0;
  REQUIRE(net::NextFrame(bytes, net::kDefaultMaxFrame, &f, &consumed) == FrameStatus::kFrame);
  CHECK(consumed == bytes.size());
  return f;
}

net::Hello SampleHello() {
  return {1, "writer-1", "s3cret", 30000};
}

net::Welcome SampleWelcome() {
  net::Welcome w;
  w.version = 1;
  w.server_name = "conv-test";
  w.last_applied_seq = 123456789;
  w.window_us = 2000;
  w.partitions = 4;
  w.credit = 4096;
  w.schemas = {Player(), Things()};
  return w;
}

net::Error SampleError() {
  return {42, static_cast<uint64_t>(net::ErrorCode::kBadValue),
          "record: field 'online' (bool) at offset 2: bool must be 0 or 1, got 2"};
}

net::Result SampleResult(bool with_claims) {
  net::Result r;
  r.req = 7;
  r.found = true;
  r.record = FullPlayerRecord();
  r.has_claims = with_claims;
  if (with_claims) {
    r.claims.push_back({"writer-1", 1'700'000'000'000'000, FullPlayerRecord()});
    r.claims.push_back({"writer-2", 1'700'000'000'000'123, PartialPlayerRecord()});
  }
  return r;
}

net::StatList SampleStats() {
  return {{"ops_applied", 12345}, {"connections", 3}, {"", 0}, {"big", kU64Max}};
}

net::Subscribe SampleSubscribe() {
  net::Subscribe m;
  m.sub = 300;
  m.schema_id = 1;
  m.id_prefix = "p-\xc3\xa9";
  m.field_mask = 0b100100001;
  m.flags = net::kSubscribeBootstrap | net::kSubscribeIncludePrev;
  m.resume_window = 1'234'567;
  m.interval_ms = 1000;
  return m;
}

// An upsert of every field, an upsert of some, a delete.
net::Snapshot SampleSnapshot() {
  net::Snapshot m;
  m.sub = 1;
  m.entries.push_back({net::kChangeUpsert, "p-1", 0, 0, FullPlayerRecord(), false, {}});
  m.entries.push_back({net::kChangeUpsert, "p-2", 0, 0, PartialPlayerRecord(), false, {}});
  m.entries.push_back({net::kChangeDelete, "p-3", 0, 0, std::string(1, '\0'), false, {}});
  return m;
}

// With `include_prev`: a change with a previous record, a new entity (no previous
// record), a delete with its previous record.
net::Notify SampleNotify(bool include_prev) {
  net::Notify m;
  m.sub = 1;
  m.window = 4242;
  m.changes.push_back({net::kChangeUpsert, "p-1", 0b100100000, 1'700'000'000'000'000,
                       PartialPlayerRecord(), include_prev,
                       include_prev ? FullPlayerRecord() : ""});
  m.changes.push_back({net::kChangeUpsert,
                       "p-2",
                       0b111111111,
                       1'700'000'000'000'001,
                       FullPlayerRecord(),
                       false,
                       {}});
  m.changes.push_back({net::kChangeDelete, "p-3", 0b100100000, 1'700'000'000'000'002,
                       std::string(1, '\0'), include_prev,
                       include_prev ? PartialPlayerRecord() : ""});
  return m;
}

// One representative frame of each type.
struct Sample {
  std::string name;
  FrameType type;
  std::string frame;
  // RESULT: whether the QUERY asked for claims; NOTIFY: whether the SUBSCRIBE asked
  // for previous records (include_prev).
  bool flag = false;
};

std::vector<Sample> AllSamples() {
  static const std::string full = FullPlayerRecord();
  static const std::string partial = PartialPlayerRecord();
  std::vector<Sample> v;
  auto add = [&](std::string name, FrameType type, auto encode, bool flag = false) {
    std::string frame;
    encode(frame);
    v.push_back({std::move(name), type, std::move(frame), flag});
  };
  add("HELLO", FrameType::kHello, [](std::string& o) { net::EncodeHello(o, SampleHello()); });
  add("WELCOME", FrameType::kWelcome,
      [](std::string& o) { net::EncodeWelcome(o, SampleWelcome()); });
  add("ERROR", FrameType::kError, [](std::string& o) { net::EncodeError(o, SampleError()); });
  add("ASSERT", FrameType::kAssert, [&](std::string& o) {
    net::EncodeWriteOp(o, {FrameType::kAssert, 1, 1'700'000'000'000'000, 1, "p-1", full});
  });
  add("PATCH", FrameType::kPatch, [&](std::string& o) {
    net::EncodeWriteOp(o, {FrameType::kPatch, 2, 1'700'000'000'000'001, 1, "p-1", partial});
  });
  add("RETRACT", FrameType::kRetract, [](std::string& o) {
    net::EncodeWriteOp(o, {FrameType::kRetract, 3, 1'700'000'000'000'002, 1, "p-1", {}});
  });
  add("ACK", FrameType::kAck, [](std::string& o) { net::EncodeAck(o, kU64Max); });
  add("CREDIT", FrameType::kCredit, [](std::string& o) { net::EncodeCredit(o, 1u << 20); });
  add("QUERY", FrameType::kQuery, [](std::string& o) {
    net::EncodeQuery(o, {7, 1, "p-1", net::kQueryIncludeClaims});
  });
  add("RESULT without claims", FrameType::kResult,
      [](std::string& o) { net::EncodeResult(o, SampleResult(false)); });
  add(
      "RESULT with claims", FrameType::kResult,
      [](std::string& o) { net::EncodeResult(o, SampleResult(true)); }, true);
  add("RESULT not found", FrameType::kResult, [](std::string& o) {
    net::EncodeResult(o, net::Result{8, false, {}, false, {}});
  });
  add("SYNC", FrameType::kSync, [](std::string& o) { net::EncodeReq(o, FrameType::kSync, 9); });
  add("SYNCED", FrameType::kSynced,
      [](std::string& o) { net::EncodeReq(o, FrameType::kSynced, 9); });
  add("STATS", FrameType::kStats, [](std::string& o) { net::EncodeReq(o, FrameType::kStats, 10); });
  add("STATS_REPLY", FrameType::kStatsReply,
      [](std::string& o) { net::EncodeStatsReply(o, 10, SampleStats()); });
  add("PING", FrameType::kPing,
      [](std::string& o) { net::EncodeReq(o, FrameType::kPing, uint64_t{1} << 63); });
  add("PONG", FrameType::kPong,
      [](std::string& o) { net::EncodeReq(o, FrameType::kPong, uint64_t{1} << 63); });
  add("SUBSCRIBE", FrameType::kSubscribe,
      [](std::string& o) { net::EncodeSubscribe(o, SampleSubscribe()); });
  add("UNSUBSCRIBE", FrameType::kUnsubscribe,
      [](std::string& o) { net::EncodeReq(o, FrameType::kUnsubscribe, 300); });
  add("SNAPSHOT", FrameType::kSnapshot,
      [](std::string& o) { net::EncodeSnapshot(o, SampleSnapshot()); });
  add("SNAPSHOT empty", FrameType::kSnapshot, [](std::string& o) {
    net::EncodeSnapshot(o, net::Snapshot{5, {}});
  });
  add("SNAPSHOT_END", FrameType::kSnapshotEnd, [](std::string& o) {
    net::EncodeSnapshotEnd(o, {1, 3, 987654321, true});
  });
  add("NOTIFY without prev", FrameType::kNotify,
      [](std::string& o) { net::EncodeNotify(o, SampleNotify(false), false); });
  add(
      "NOTIFY with prev", FrameType::kNotify,
      [](std::string& o) { net::EncodeNotify(o, SampleNotify(true), true); }, true);
  return v;
}

// Checks a record a decoder accepted the way the server and the client use it.
void UseRecord(std::string_view record) {
  engine::RecordView view;
  util::Status s = engine::ParseRecord(Player(), record, &view);
  CHECK(s.ok());
  if (!s.ok()) return;
  std::string json;
  engine::AppendRecordJson(json, Player(), view.mask, view.values);
  CHECK(json.front() == '{');
}

// Runs the decoder for frame type `type` on `payload`, which must be a heap buffer of
// its exact size, the way the server or client would (for ASSERT and PATCH, that
// includes ParseRecord against the player schema). Returns whether it was accepted.
bool DecodeAs(uint8_t type, const std::vector<char>& payload, bool flag) {
  std::string_view p = View(payload);
  switch (static_cast<FrameType>(type)) {
    case FrameType::kHello: {
      net::Hello m;
      return net::DecodeHello(p, &m);
    }
    case FrameType::kWelcome: {
      net::Welcome m;
      if (!net::DecodeWelcome(p, &m)) return false;
      for (const auto& s : m.schemas)
        CHECK(s.fields.size() <= engine::kMaxFields);
      return true;
    }
    case FrameType::kError: {
      net::Error m;
      return net::DecodeError(p, &m);
    }
    case FrameType::kAssert:
    case FrameType::kPatch:
    case FrameType::kRetract: {
      net::WriteOp m;
      if (!net::DecodeWriteOp(static_cast<FrameType>(type), p, &m)) return false;
      CHECK(Within(m.id, payload));
      CHECK(Within(m.record, payload));
      if (static_cast<FrameType>(type) == FrameType::kRetract) return m.record.empty();
      engine::RecordView view;
      if (!engine::ParseRecord(Player(), m.record, &view).ok()) return false;
      CHECK(Within(view.values, payload));
      std::string json;
      engine::AppendRecordJson(json, Player(), view.mask, view.values);
      return true;
    }
    case FrameType::kAck: {
      uint64_t seq;
      return net::DecodeAck(p, &seq);
    }
    case FrameType::kCredit: {
      uint64_t credit;
      return net::DecodeCredit(p, &credit);
    }
    case FrameType::kQuery: {
      net::Query m;
      if (!net::DecodeQuery(p, &m)) return false;
      CHECK(Within(m.id, payload));
      return true;
    }
    case FrameType::kResult: {
      net::Result m;
      if (!net::DecodeResult(p, Player(), flag, &m)) return false;
      CHECK(m.has_claims == (flag && m.found));
      if (m.found) UseRecord(m.record);
      for (const auto& c : m.claims)
        UseRecord(c.record);
      return true;
    }
    case FrameType::kSync:
    case FrameType::kSynced:
    case FrameType::kStats:
    case FrameType::kPing:
    case FrameType::kPong:
    case FrameType::kUnsubscribe: {
      uint64_t req;
      return net::DecodeReq(p, &req);
    }
    case FrameType::kSubscribe: {
      net::Subscribe m;
      if (!net::DecodeSubscribe(p, &m)) return false;
      CHECK((m.flags & ~(net::kSubscribeBootstrap | net::kSubscribeIncludePrev)) == 0);
      return true;
    }
    case FrameType::kSnapshot: {
      net::Snapshot m;
      if (!net::DecodeSnapshot(p, Player(), &m)) return false;
      for (const auto& e : m.entries) {
        CHECK((e.kind == net::kChangeUpsert || e.kind == net::kChangeDelete));
        if (e.kind == net::kChangeDelete) CHECK(e.record == std::string(1, '\0'));
        UseRecord(e.record);
      }
      return true;
    }
    case FrameType::kSnapshotEnd: {
      net::SnapshotEnd m;
      return net::DecodeSnapshotEnd(p, &m);
    }
    case FrameType::kNotify: {
      net::Notify m;
      if (!net::DecodeNotify(p, Player(), flag, &m)) return false;
      for (const auto& c : m.changes) {
        CHECK((c.kind == net::kChangeUpsert || c.kind == net::kChangeDelete));
        if (c.kind == net::kChangeDelete) CHECK(c.record == std::string(1, '\0'));
        CHECK((c.changed_mask >> Player().fields.size()) == 0);
        UseRecord(c.record);
        if (c.had_prev) UseRecord(c.prev);
        if (!flag) CHECK_FALSE(c.had_prev);
      }
      return true;
    }
    case FrameType::kStatsReply: {
      uint64_t req;
      net::StatList stats;
      return net::DecodeStatsReply(p, &req, &stats);
    }
  }
  return false;  // a type this version does not serve: bad_frame
}

struct Outcome {
  size_t decoded = 0;
  size_t rejected = 0;
};

// Feeds `input` to NextFrame and, when a frame comes out, to the decoder its type
// byte names. Both see heap buffers of the exact size. Returns whether a frame was
// cut and decoded.
bool Feed(std::string_view input, bool flag, uint32_t max_frame = net::kDefaultMaxFrame) {
  std::vector<char> buf = Exact(input);
  net::Frame frame;
  size_t consumed = 0;
  FrameStatus st = net::NextFrame(View(buf), max_frame, &frame, &consumed);
  if (st != FrameStatus::kFrame) {
    CHECK((st == FrameStatus::kNeedMore || st == FrameStatus::kTooLarge ||
           st == FrameStatus::kEmpty));
    return false;
  }
  REQUIRE(consumed <= buf.size());
  REQUIRE(consumed >= net::kFrameHeader + 1);
  REQUIRE(Within(frame.payload, buf));
  CHECK(frame.payload.size() == consumed - net::kFrameHeader - 1);
  // The payload on its own, so that reading past the payload (not only past the
  // input) is caught too.
  std::vector<char> payload = Exact(frame.payload);
  bool ok = DecodeAs(frame.type, payload, flag);
  if (frame.type == static_cast<uint8_t>(FrameType::kResult) ||
      frame.type == static_cast<uint8_t>(FrameType::kNotify)) {
    (void)DecodeAs(frame.type, payload, !flag);
  }
  return ok;
}

// The encoding of a frame whose length field declares `len`.
std::string Header(uint32_t len) {
  std::string h;
  util::PutFixed32(h, len);
  return h;
}

void CheckSchemasEqual(const std::vector<engine::Schema>& got,
                       const std::vector<engine::Schema>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i].id == want[i].id);
    CHECK(got[i].name == want[i].name);
    REQUIRE(got[i].fields.size() == want[i].fields.size());
    for (size_t k = 0; k < got[i].fields.size(); ++k) {
      CHECK(got[i].fields[k].name == want[i].fields[k].name);
      CHECK(got[i].fields[k].type == want[i].fields[k].type);
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------
// Round trips

TEST_CASE("codec: a frame's length counts the type byte and the payload, little-endian") {
  std::string out;
  net::EncodeReq(out, FrameType::kPing, 5);
  CHECK(out == std::string("\x02\x00\x00\x00\x44\x05", 6));

  out.clear();
  net::EncodeHello(out, {1, "w", "", 0});
  CHECK(out == std::string("\x06\x00\x00\x00\x01\x01\x01w\x00\x00", 10));
}

TEST_CASE("codec: HELLO round-trips with every field") {
  std::string bytes;
  net::EncodeHello(bytes, SampleHello());
  net::Frame f = Cut(bytes);
  CHECK(f.type == static_cast<uint8_t>(FrameType::kHello));
  net::Hello m{0, "junk", "junk", 9};
  REQUIRE(net::DecodeHello(f.payload, &m));
  CHECK(m.version == 1);
  CHECK(m.source == "writer-1");
  CHECK(m.auth_token == "s3cret");
  CHECK(m.lease_ms == 30000);

  // Empty strings and the largest values.
  bytes.clear();
  net::EncodeHello(bytes, {kU64Max, "", "", kU64Max});
  REQUIRE(net::DecodeHello(Cut(bytes).payload, &m));
  CHECK(m.version == kU64Max);
  CHECK(m.source.empty());
  CHECK(m.auth_token.empty());
  CHECK(m.lease_ms == kU64Max);
}

TEST_CASE("codec: WELCOME round-trips with its schemas and every field type") {
  std::string bytes;
  net::EncodeWelcome(bytes, SampleWelcome());
  net::Frame f = Cut(bytes);
  CHECK(f.type == static_cast<uint8_t>(FrameType::kWelcome));
  net::Welcome m;
  m.schemas.push_back(Things());  // replaced, not appended to
  REQUIRE(net::DecodeWelcome(f.payload, &m));
  net::Welcome want = SampleWelcome();
  CHECK(m.version == want.version);
  CHECK(m.server_name == want.server_name);
  CHECK(m.last_applied_seq == want.last_applied_seq);
  CHECK(m.window_us == want.window_us);
  CHECK(m.partitions == want.partitions);
  CHECK(m.credit == want.credit);
  CheckSchemasEqual(m.schemas, want.schemas);

  bytes.clear();
  net::EncodeWelcome(bytes, net::Welcome{});
  REQUIRE(net::DecodeWelcome(Cut(bytes).payload, &m));
  CHECK(m.schemas.empty());
}

TEST_CASE("codec: ERROR round-trips") {
  std::string bytes;
  net::EncodeError(bytes, SampleError());
  net::Frame f = Cut(bytes);
  CHECK(f.type == static_cast<uint8_t>(FrameType::kError));
  net::Error m;
  REQUIRE(net::DecodeError(f.payload, &m));
  CHECK(m.seq_or_req == 42);
  CHECK(m.code == static_cast<uint64_t>(net::ErrorCode::kBadValue));
  CHECK(m.message == SampleError().message);
}

TEST_CASE("codec: ASSERT, PATCH and RETRACT round-trip and the record parses") {
  const std::string full = FullPlayerRecord();
  const std::string partial = PartialPlayerRecord();
  struct Case {
    FrameType type;
    std::string_view record;
  };
  for (const Case& c : {Case{FrameType::kAssert, full}, Case{FrameType::kPatch, partial},
                        Case{FrameType::kRetract, {}}}) {
    CAPTURE(net::FrameTypeName(static_cast<uint8_t>(c.type)));
    std::string bytes;
    net::EncodeWriteOp(bytes,
                       {c.type, kU64Max, 1'700'000'000'000'000, 1, "player-\xc3\xa9", c.record});
    net::Frame f = Cut(bytes);
    CHECK(f.type == static_cast<uint8_t>(c.type));
    net::WriteOp m;
    REQUIRE(net::DecodeWriteOp(c.type, f.payload, &m));
    CHECK(m.type == c.type);
    CHECK(m.seq == kU64Max);
    CHECK(m.ts == 1'700'000'000'000'000);
    CHECK(m.schema_id == 1);
    CHECK(m.id == "player-\xc3\xa9");
    CHECK(m.record == c.record);
    if (c.type != FrameType::kRetract) {
      engine::RecordView view;
      REQUIRE(engine::ParseRecord(Player(), m.record, &view).ok());
    }
  }
}

TEST_CASE("codec: a RETRACT with bytes after the id is rejected") {
  std::string bytes;
  net::EncodeWriteOp(bytes, {FrameType::kRetract, 1, 2, 1, "p-1", {}});
  std::string payload(Cut(bytes).payload);
  net::WriteOp m;
  REQUIRE(net::DecodeWriteOp(FrameType::kRetract, payload, &m));
  CHECK_FALSE(net::DecodeWriteOp(FrameType::kRetract, payload + '\0', &m));
}

TEST_CASE("codec: ACK round-trips") {
  for (uint64_t seq : {uint64_t{0}, uint64_t{1}, kU64Max}) {
    std::string bytes;
    net::EncodeAck(bytes, seq);
    net::Frame f = Cut(bytes);
    CHECK(f.type == static_cast<uint8_t>(FrameType::kAck));
    uint64_t got = 12345;
    REQUIRE(net::DecodeAck(f.payload, &got));
    CHECK(got == seq);
  }
}

TEST_CASE("codec: CREDIT round-trips and is one varint") {
  for (uint64_t credit : {uint64_t{1}, uint64_t{4096}, kU64Max}) {
    std::string bytes;
    net::EncodeCredit(bytes, credit);
    net::Frame f = Cut(bytes);
    CHECK(f.type == static_cast<uint8_t>(FrameType::kCredit));
    uint64_t got = 0;
    REQUIRE(net::DecodeCredit(f.payload, &got));
    CHECK(got == credit);
    CHECK_FALSE(net::DecodeCredit(std::string(f.payload) + '\0', &got));
  }
  CHECK(net::FrameTypeName(0x14) == "CREDIT");
}

TEST_CASE("codec: QUERY round-trips") {
  for (uint8_t flags : {uint8_t{0}, net::kQueryIncludeClaims, uint8_t{0xff}}) {
    std::string bytes;
    net::EncodeQuery(bytes, {77, 3, "p-1", flags});
    net::Frame f = Cut(bytes);
    CHECK(f.type == static_cast<uint8_t>(FrameType::kQuery));
    net::Query m;
    REQUIRE(net::DecodeQuery(f.payload, &m));
    CHECK(m.req == 77);
    CHECK(m.schema_id == 3);
    CHECK(m.id == "p-1");
    CHECK(m.flags == flags);
  }
}

TEST_CASE("codec: RESULT round-trips without claims, with claims, and when not found") {
  SUBCASE("found, without claims") {
    std::string bytes;
    net::EncodeResult(bytes, SampleResult(false));
    net::Frame f = Cut(bytes);
    CHECK(f.type == static_cast<uint8_t>(FrameType::kResult));
    net::Result m;
    m.claims.push_back({"stale", 1, "x"});
    REQUIRE(net::DecodeResult(f.payload, Player(), false, &m));
    CHECK(m.req == 7);
    CHECK(m.found);
    CHECK(m.record == FullPlayerRecord());
    CHECK_FALSE(m.has_claims);
    CHECK(m.claims.empty());
  }
  SUBCASE("found, with claims") {
    std::string bytes;
    net::EncodeResult(bytes, SampleResult(true));
    net::Result m;
    REQUIRE(net::DecodeResult(Cut(bytes).payload, Player(), true, &m));
    net::Result want = SampleResult(true);
    CHECK(m.req == want.req);
    CHECK(m.found);
    CHECK(m.record == want.record);
    CHECK(m.has_claims);
    REQUIRE(m.claims.size() == 2);
    for (size_t i = 0; i < 2; ++i) {
      CHECK(m.claims[i].source == want.claims[i].source);
      CHECK(m.claims[i].ts_max == want.claims[i].ts_max);
      CHECK(m.claims[i].record == want.claims[i].record);
    }
  }
  SUBCASE("found, with claims asked for but none held") {
    net::Result r = SampleResult(true);
    r.claims.clear();
    std::string bytes;
    net::EncodeResult(bytes, r);
    net::Result m;
    REQUIRE(net::DecodeResult(Cut(bytes).payload, Player(), true, &m));
    CHECK(m.has_claims);
    CHECK(m.claims.empty());
  }
  SUBCASE("not found") {
    std::string bytes;
    net::EncodeResult(bytes, net::Result{8, false, {}, false, {}});
    net::Result m;
    m.record = "stale";
    for (bool with_claims : {false, true}) {
      REQUIRE(net::DecodeResult(Cut(bytes).payload, Player(), with_claims, &m));
      CHECK(m.req == 8);
      CHECK_FALSE(m.found);
      CHECK(m.record.empty());
      CHECK(m.claims.empty());
    }
  }
}

TEST_CASE("codec: a RESULT decoded with the wrong claims flag is rejected") {
  std::string with, without;
  net::EncodeResult(with, SampleResult(true));
  net::EncodeResult(without, SampleResult(false));
  net::Result m;
  CHECK_FALSE(net::DecodeResult(Cut(with).payload, Player(), false, &m));
  CHECK_FALSE(net::DecodeResult(Cut(without).payload, Player(), true, &m));
}

TEST_CASE("codec: a RESULT whose found byte is not 0 or 1 is rejected") {
  std::string bytes;
  net::EncodeResult(bytes, net::Result{8, false, {}, false, {}});
  std::string payload(Cut(bytes).payload);
  payload[1] = 2;
  net::Result m;
  CHECK_FALSE(net::DecodeResult(payload, Player(), false, &m));
}

TEST_CASE("codec: SYNC, SYNCED, STATS, PING and PONG round-trip their req") {
  for (FrameType type : {FrameType::kSync, FrameType::kSynced, FrameType::kStats, FrameType::kPing,
                         FrameType::kPong}) {
    for (uint64_t req : {uint64_t{0}, uint64_t{300}, kU64Max}) {
      CAPTURE(net::FrameTypeName(static_cast<uint8_t>(type)));
      CAPTURE(req);
      std::string bytes;
      net::EncodeReq(bytes, type, req);
      net::Frame f = Cut(bytes);
      CHECK(f.type == static_cast<uint8_t>(type));
      uint64_t got = 1;
      REQUIRE(net::DecodeReq(f.payload, &got));
      CHECK(got == req);
      CHECK_FALSE(net::DecodeReq(std::string(f.payload) + '\0', &got));
    }
  }
}

TEST_CASE("codec: STATS_REPLY round-trips its stats in order") {
  std::string bytes;
  net::EncodeStatsReply(bytes, 10, SampleStats());
  net::Frame f = Cut(bytes);
  CHECK(f.type == static_cast<uint8_t>(FrameType::kStatsReply));
  uint64_t req = 0;
  net::StatList stats = {{"stale", 1}};
  REQUIRE(net::DecodeStatsReply(f.payload, &req, &stats));
  CHECK(req == 10);
  CHECK(stats == SampleStats());

  bytes.clear();
  net::EncodeStatsReply(bytes, 11, {});
  REQUIRE(net::DecodeStatsReply(Cut(bytes).payload, &req, &stats));
  CHECK(req == 11);
  CHECK(stats.empty());
}

namespace {

void CheckEntriesEqual(const std::vector<net::ChangeEntry>& got,
                       const std::vector<net::ChangeEntry>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    CHECK(got[i].kind == want[i].kind);
    CHECK(got[i].id == want[i].id);
    CHECK(got[i].changed_mask == want[i].changed_mask);
    CHECK(got[i].ts == want[i].ts);
    CHECK(got[i].record == want[i].record);
    CHECK(got[i].had_prev == want[i].had_prev);
    CHECK(got[i].prev == want[i].prev);
  }
}

// A record's mask and values, as the server holds them.
engine::RecordView Split(std::string_view record) {
  engine::RecordView view;
  REQUIRE(engine::ParseRecord(Player(), record, &view).ok());
  return view;
}

}  // namespace

TEST_CASE("codec: SUBSCRIBE round-trips with every field") {
  std::string bytes;
  net::EncodeSubscribe(bytes, SampleSubscribe());
  net::Frame f = Cut(bytes);
  CHECK(f.type == static_cast<uint8_t>(FrameType::kSubscribe));
  net::Subscribe m;
  REQUIRE(net::DecodeSubscribe(f.payload, &m));
  net::Subscribe want = SampleSubscribe();
  CHECK(m.sub == want.sub);
  CHECK(m.schema_id == want.schema_id);
  CHECK(m.id_prefix == want.id_prefix);
  CHECK(m.field_mask == want.field_mask);
  CHECK(m.flags == want.flags);
  CHECK(m.resume_window == want.resume_window);
  CHECK(m.interval_ms == want.interval_ms);

  // The defaults (every id, every field, no flags) and the largest values.
  for (uint8_t flags : {uint8_t{0}, net::kSubscribeBootstrap, net::kSubscribeIncludePrev}) {
    bytes.clear();
    net::EncodeSubscribe(bytes, {kU64Max, kU64Max, "", kU64Max, flags, kU64Max, kU64Max});
    REQUIRE(net::DecodeSubscribe(Cut(bytes).payload, &m));
    CHECK(m.sub == kU64Max);
    CHECK(m.schema_id == kU64Max);
    CHECK(m.id_prefix.empty());
    CHECK(m.field_mask == kU64Max);
    CHECK(m.flags == flags);
    CHECK(m.resume_window == kU64Max);
    CHECK(m.interval_ms == kU64Max);
  }
}

TEST_CASE("codec: a SUBSCRIBE's unknown flag bits are ignored, trailing bytes rejected") {
  net::Subscribe s = SampleSubscribe();
  std::string bytes;
  net::EncodeSubscribe(bytes, s);
  std::string payload(Cut(bytes).payload);
  net::Subscribe m;
  REQUIRE(net::DecodeSubscribe(payload, &m));
  CHECK_FALSE(net::DecodeSubscribe(payload + '\0', &m));
  for (int bit = 2; bit < 8; ++bit) {
    CAPTURE(bit);
    s.flags = static_cast<uint8_t>((1 << bit) | net::kSubscribeBootstrap);
    bytes.clear();
    net::EncodeSubscribe(bytes, s);
    REQUIRE(net::DecodeSubscribe(Cut(bytes).payload, &m));
    CHECK(m.flags == net::kSubscribeBootstrap);  // extensions this version lacks: ignored
  }
}

TEST_CASE("codec: UNSUBSCRIBE is a single varint sub") {
  std::string bytes;
  net::EncodeReq(bytes, FrameType::kUnsubscribe, 300);
  CHECK(bytes == std::string("\x03\x00\x00\x00\x31\xac\x02", 7));
  uint64_t sub = 0;
  REQUIRE(net::DecodeReq(Cut(bytes).payload, &sub));
  CHECK(sub == 300);
}

TEST_CASE("codec: SNAPSHOT round-trips upserts and deletes") {
  std::string bytes;
  net::EncodeSnapshot(bytes, SampleSnapshot());
  net::Frame f = Cut(bytes);
  CHECK(f.type == static_cast<uint8_t>(FrameType::kSnapshot));
  net::Snapshot m;
  m.entries.push_back({});  // replaced, not appended to
  REQUIRE(net::DecodeSnapshot(f.payload, Player(), &m));
  CHECK(m.sub == 1);
  CheckEntriesEqual(m.entries, SampleSnapshot().entries);

  bytes.clear();
  net::EncodeSnapshot(bytes, net::Snapshot{kU64Max, {}});
  REQUIRE(net::DecodeSnapshot(Cut(bytes).payload, Player(), &m));
  CHECK(m.sub == kU64Max);
  CHECK(m.entries.empty());

  // An empty record in the struct is encoded as mask 0.
  net::Snapshot del{2, {{net::kChangeDelete, "gone", 0, 0, "", false, {}}}};
  bytes.clear();
  net::EncodeSnapshot(bytes, del);
  REQUIRE(net::DecodeSnapshot(Cut(bytes).payload, Player(), &m));
  REQUIRE(m.entries.size() == 1);
  CHECK(m.entries[0].record == std::string(1, '\0'));
}

TEST_CASE("codec: a SNAPSHOT with a bad kind, a delete with fields or a bad record is rejected") {
  auto snapshot_with = [](uint8_t kind, std::string_view record) {
    std::string p;
    util::PutVarint(p, 1);  // sub
    util::PutVarint(p, 1);  // n
    util::PutU8(p, kind);
    util::PutStr(p, "p-1");
    p.append(record);
    return p;
  };
  const std::string full = FullPlayerRecord();
  const std::string empty(1, '\0');
  net::Snapshot m;
  CHECK(net::DecodeSnapshot(snapshot_with(net::kChangeUpsert, full), Player(), &m));
  CHECK(net::DecodeSnapshot(snapshot_with(net::kChangeUpsert, empty), Player(), &m));
  CHECK(net::DecodeSnapshot(snapshot_with(net::kChangeDelete, empty), Player(), &m));
  CHECK_FALSE(net::DecodeSnapshot(snapshot_with(net::kChangeDelete, full), Player(), &m));
  CHECK_FALSE(net::DecodeSnapshot(snapshot_with(0, full), Player(), &m));
  CHECK_FALSE(net::DecodeSnapshot(snapshot_with(3, full), Player(), &m));
  CHECK_FALSE(net::DecodeSnapshot(snapshot_with(net::kChangeUpsert, full + '\0'), Player(), &m));
  // A mask bit beyond the schema's nine fields.
  std::string beyond;
  util::PutVarint(beyond, uint64_t{1} << 9);
  util::PutU8(beyond, 1);
  CHECK_FALSE(net::DecodeSnapshot(snapshot_with(net::kChangeUpsert, beyond), Player(), &m));
  // A bool other than 0 or 1.
  std::string bad_bool;
  util::PutVarint(bad_bool, uint64_t{1} << 8);
  util::PutU8(bad_bool, 2);
  CHECK_FALSE(net::DecodeSnapshot(snapshot_with(net::kChangeUpsert, bad_bool), Player(), &m));
}

TEST_CASE("codec: SNAPSHOT_END round-trips and its reset byte is 0 or 1") {
  for (bool reset : {false, true}) {
    std::string bytes;
    net::EncodeSnapshotEnd(bytes, {7, kU64Max, 123456789, reset});
    net::Frame f = Cut(bytes);
    CHECK(f.type == static_cast<uint8_t>(FrameType::kSnapshotEnd));
    net::SnapshotEnd m{0, 0, 0, !reset};
    REQUIRE(net::DecodeSnapshotEnd(f.payload, &m));
    CHECK(m.sub == 7);
    CHECK(m.total == kU64Max);
    CHECK(m.window == 123456789);
    CHECK(m.reset == reset);
    std::string payload(f.payload);
    CHECK_FALSE(net::DecodeSnapshotEnd(payload + '\0', &m));
    payload.back() = 2;
    CHECK_FALSE(net::DecodeSnapshotEnd(payload, &m));
  }
}

TEST_CASE("codec: NOTIFY round-trips with and without previous records") {
  for (bool include_prev : {false, true}) {
    CAPTURE(include_prev);
    std::string bytes;
    net::EncodeNotify(bytes, SampleNotify(include_prev), include_prev);
    net::Frame f = Cut(bytes);
    CHECK(f.type == static_cast<uint8_t>(FrameType::kNotify));
    net::Notify m;
    m.changes.push_back({});  // replaced, not appended to
    REQUIRE(net::DecodeNotify(f.payload, Player(), include_prev, &m));
    CHECK(m.sub == 1);
    CHECK(m.window == 4242);
    CheckEntriesEqual(m.changes, SampleNotify(include_prev).changes);
    // Decoded with the other include_prev, these frames do not parse.
    CHECK_FALSE(net::DecodeNotify(f.payload, Player(), !include_prev, &m));
  }
  std::string bytes;
  net::EncodeNotify(bytes, net::Notify{kU64Max, kU64Max, {}}, true);
  net::Notify m;
  REQUIRE(net::DecodeNotify(Cut(bytes).payload, Player(), true, &m));
  CHECK(m.sub == kU64Max);
  CHECK(m.window == kU64Max);
  CHECK(m.changes.empty());
}

TEST_CASE("codec: a NOTIFY with a bad kind, had_prev, changed mask or delete record is rejected") {
  const std::string full = FullPlayerRecord();
  const std::string empty(1, '\0');
  auto notify_with = [](uint8_t kind, uint64_t changed, std::string_view record,
                        std::string_view prev_part) {
    std::string p;
    util::PutVarint(p, 1);  // sub
    util::PutVarint(p, 9);  // window
    util::PutVarint(p, 1);  // n
    util::PutU8(p, kind);
    util::PutStr(p, "p-1");
    util::PutVarint(p, changed);
    util::PutVarint(p, 1'700'000'000'000'000);  // ts
    p.append(record);
    p.append(prev_part);
    return p;
  };
  net::Notify m;
  const uint64_t all = (uint64_t{1} << 9) - 1;
  CHECK(net::DecodeNotify(notify_with(net::kChangeUpsert, all, full, ""), Player(), false, &m));
  CHECK(net::DecodeNotify(notify_with(net::kChangeDelete, all, empty, ""), Player(), false, &m));
  CHECK_FALSE(
      net::DecodeNotify(notify_with(net::kChangeDelete, all, full, ""), Player(), false, &m));
  CHECK_FALSE(net::DecodeNotify(notify_with(0, all, full, ""), Player(), false, &m));
  CHECK_FALSE(net::DecodeNotify(notify_with(3, all, full, ""), Player(), false, &m));
  CHECK_FALSE(
      net::DecodeNotify(notify_with(net::kChangeUpsert, all + 1, full, ""), Player(), false, &m));
  CHECK_FALSE(
      net::DecodeNotify(notify_with(net::kChangeUpsert, kU64Max, full, ""), Player(), false, &m));

  // include_prev: had_prev 0 has no record after it, 1 has one, anything else is bad.
  const std::string no_prev(1, '\0');
  const std::string with_prev = std::string(1, '\1') + full;
  CHECK(net::DecodeNotify(notify_with(net::kChangeUpsert, all, full, no_prev), Player(), true, &m));
  CHECK_FALSE(m.changes.at(0).had_prev);
  CHECK(m.changes.at(0).prev.empty());
  CHECK(net::DecodeNotify(notify_with(net::kChangeDelete, all, empty, with_prev), Player(), true,
                          &m));
  CHECK(m.changes.at(0).had_prev);
  CHECK(m.changes.at(0).prev == full);
  CHECK_FALSE(net::DecodeNotify(notify_with(net::kChangeUpsert, all, full, no_prev + empty),
                                Player(), true, &m));
  CHECK_FALSE(net::DecodeNotify(notify_with(net::kChangeUpsert, all, full, std::string(1, '\2')),
                                Player(), true, &m));
  CHECK_FALSE(
      net::DecodeNotify(notify_with(net::kChangeUpsert, all, full, "\x01"), Player(), true, &m));
  CHECK_FALSE(
      net::DecodeNotify(notify_with(net::kChangeUpsert, all, full, ""), Player(), true, &m));
}

TEST_CASE("codec: a SNAPSHOT or NOTIFY header followed by its body is the whole frame") {
  for (uint64_t sub : {uint64_t{1}, uint64_t{300}, kU64Max}) {
    CAPTURE(sub);
    // SNAPSHOT.
    net::Snapshot snap = SampleSnapshot();
    snap.sub = sub;
    std::string body;
    for (const auto& e : snap.entries) {
      engine::RecordView v = Split(e.record);
      net::AppendSnapshotEntry(body, e.kind, e.id, v.mask, v.values);
    }
    std::string framed;
    net::EncodeSnapshotHeader(framed, sub, snap.entries.size(), body.size());
    framed += body;
    std::string whole;
    net::EncodeSnapshot(whole, snap);
    CHECK(framed == whole);
    net::Snapshot got;
    REQUIRE(net::DecodeSnapshot(Cut(framed).payload, Player(), &got));
    CheckEntriesEqual(got.entries, snap.entries);

    // NOTIFY, with and without previous records, at small and large windows.
    for (bool include_prev : {false, true}) {
      for (uint64_t window : {uint64_t{1}, uint64_t{1} << 35, kU64Max}) {
        CAPTURE(include_prev);
        CAPTURE(window);
        net::Notify n = SampleNotify(include_prev);
        n.sub = sub;
        n.window = window;
        body.clear();
        for (const auto& c : n.changes) {
          engine::RecordView v = Split(c.record);
          engine::RecordView p;
          if (c.had_prev) p = Split(c.prev);
          net::AppendNotifyChange(body, c.kind, c.id, c.changed_mask, c.ts, v.mask, v.values,
                                  include_prev, c.had_prev, p.mask, p.values);
        }
        framed.clear();
        net::EncodeNotifyHeader(framed, sub, window, n.changes.size(), body.size());
        framed += body;
        whole.clear();
        net::EncodeNotify(whole, n, include_prev);
        CHECK(framed == whole);
        net::Notify got_n;
        REQUIRE(net::DecodeNotify(Cut(framed).payload, Player(), include_prev, &got_n));
        CHECK(got_n.window == window);
        CheckEntriesEqual(got_n.changes, n.changes);
      }
    }
  }
  // An empty body: a header on its own is a whole frame.
  std::string framed;
  net::EncodeNotifyHeader(framed, 1, 2, 0, 0);
  net::Notify n;
  REQUIRE(net::DecodeNotify(Cut(framed).payload, Player(), false, &n));
  CHECK(n.changes.empty());
}

TEST_CASE("codec: a SNAPSHOT or NOTIFY declaring a huge count fails without allocating") {
  std::vector<std::pair<std::string, bool>> snapshots, notifies;
  for (uint64_t n : {uint64_t{3}, uint64_t{1} << 20, uint64_t{1} << 40, kU64Max}) {
    std::string s;
    util::PutVarint(s, 1);  // sub
    util::PutVarint(s, n);  // n
    s += std::string(8, '\0');
    snapshots.emplace_back(s, false);
    for (bool include_prev : {false, true}) {
      std::string p;
      util::PutVarint(p, 1);  // sub
      util::PutVarint(p, 2);  // window
      util::PutVarint(p, n);  // n
      p += std::string(14, '\0');
      notifies.emplace_back(p, include_prev);
    }
  }
  if (!AllocationCounter::available()) {
    MESSAGE("allocations are counted only under AddressSanitizer");
  }
  const engine::Schema& player = Player();  // built on first use: not inside a count
  for (const auto& [p, unused] : snapshots) {
    std::vector<char> buf = Exact(p);
    net::Snapshot m;
    size_t allocations;
    bool ok;
    {
      AllocationCounter counter;
      ok = net::DecodeSnapshot(View(buf), player, &m);
      allocations = counter.count();
    }
    CHECK_FALSE(ok);
    if (AllocationCounter::available()) CHECK(allocations == 0);
  }
  for (const auto& [p, include_prev] : notifies) {
    std::vector<char> buf = Exact(p);
    net::Notify m;
    size_t allocations;
    bool ok;
    {
      AllocationCounter counter;
      ok = net::DecodeNotify(View(buf), player, include_prev, &m);
      allocations = counter.count();
    }
    CHECK_FALSE(ok);
    if (AllocationCounter::available()) CHECK(allocations == 0);
  }
}

TEST_CASE("codec: frames pipelined in one buffer are cut one at a time, in order") {
  auto samples = AllSamples();
  std::string stream;
  for (const auto& s : samples)
    stream += s.frame;
  std::vector<char> buf = Exact(stream);
  std::string_view rest = View(buf);
  for (const auto& s : samples) {
    CAPTURE(s.name);
    net::Frame f;
    size_t consumed = 0;
    REQUIRE(net::NextFrame(rest, net::kDefaultMaxFrame, &f, &consumed) == FrameStatus::kFrame);
    CHECK(consumed == s.frame.size());
    CHECK(f.type == static_cast<uint8_t>(s.type));
    CHECK(f.payload == std::string_view(s.frame).substr(net::kFrameHeader + 1));
    CHECK(DecodeAs(f.type, Exact(f.payload), s.flag));
    rest.remove_prefix(consumed);
  }
  net::Frame f;
  size_t consumed = 0;
  CHECK(net::NextFrame(rest, net::kDefaultMaxFrame, &f, &consumed) == FrameStatus::kNeedMore);
}

TEST_CASE("codec: frame type and error code names follow the spec") {
  CHECK(net::FrameTypeName(0x01) == "HELLO");
  CHECK(net::FrameTypeName(0x43) == "STATS_REPLY");
  CHECK(net::FrameTypeName(0x30) == "SUBSCRIBE");
  CHECK(net::FrameTypeName(0x31) == "UNSUBSCRIBE");
  CHECK(net::FrameTypeName(0x32) == "SNAPSHOT");
  CHECK(net::FrameTypeName(0x33) == "SNAPSHOT_END");
  CHECK(net::FrameTypeName(0x34) == "NOTIFY");
  CHECK(net::FrameTypeName(0x35) == "unknown");
  CHECK(net::FrameTypeName(0xff) == "unknown");
  CHECK(net::ErrorCodeName(1) == "bad_frame");
  CHECK(net::ErrorCodeName(13) == "handshake_required");
  CHECK(net::ErrorCodeName(14) == "not_owner");
  CHECK(net::ErrorCodeName(15) == "unknown");
  CHECK(net::ErrorCodeName(kU64Max) == "unknown");
}

// ---------------------------------------------------------------------------------
// NextFrame limits

TEST_CASE("codec: fewer than four bytes is never a frame") {
  for (size_t n = 0; n < net::kFrameHeader; ++n) {
    std::vector<char> buf(n, '\x01');
    net::Frame f;
    size_t consumed = 0;
    CHECK(net::NextFrame(View(buf), net::kDefaultMaxFrame, &f, &consumed) ==
          FrameStatus::kNeedMore);
  }
}

TEST_CASE("codec: a declared length of 0 is kEmpty") {
  for (std::string bytes : {Header(0), Header(0) + "\x44\x01"}) {
    std::vector<char> buf = Exact(bytes);
    net::Frame f;
    size_t consumed = 0;
    CHECK(net::NextFrame(View(buf), net::kDefaultMaxFrame, &f, &consumed) == FrameStatus::kEmpty);
  }
}

TEST_CASE("codec: a declared length over max_frame is kTooLarge before the bytes arrive") {
  const uint32_t max_frame = 64;
  for (uint32_t len : {max_frame + 1, uint32_t{1} << 31, std::numeric_limits<uint32_t>::max()}) {
    CAPTURE(len);
    // Only the length field has arrived.
    std::vector<char> buf = Exact(Header(len));
    net::Frame f;
    size_t consumed = 0;
    CHECK(net::NextFrame(View(buf), max_frame, &f, &consumed) == FrameStatus::kTooLarge);
  }
  std::vector<char> big = Exact(Header(net::kDefaultMaxFrame + 1));
  net::Frame f;
  size_t consumed = 0;
  CHECK(net::NextFrame(View(big), net::kDefaultMaxFrame, &f, &consumed) == FrameStatus::kTooLarge);
}

TEST_CASE("codec: a frame of exactly max_frame is waited for and then cut") {
  const uint32_t max_frame = 64;
  std::string bytes = Header(max_frame) + "\x44" + std::string(max_frame - 1, 'x');
  for (size_t n = net::kFrameHeader; n < bytes.size(); ++n) {
    std::vector<char> buf = Exact(std::string_view(bytes).substr(0, n));
    net::Frame f;
    size_t consumed = 0;
    CHECK(net::NextFrame(View(buf), max_frame, &f, &consumed) == FrameStatus::kNeedMore);
  }
  std::vector<char> buf = Exact(bytes);
  net::Frame f;
  size_t consumed = 0;
  REQUIRE(net::NextFrame(View(buf), max_frame, &f, &consumed) == FrameStatus::kFrame);
  CHECK(consumed == bytes.size());
  CHECK(f.type == 0x44);
  CHECK(f.payload.size() == max_frame - 1);
}

TEST_CASE("codec: a frame of length 1 has a type and an empty payload") {
  std::vector<char> buf = Exact(Header(1) + "\x44");
  net::Frame f;
  size_t consumed = 0;
  REQUIRE(net::NextFrame(View(buf), net::kDefaultMaxFrame, &f, &consumed) == FrameStatus::kFrame);
  CHECK(consumed == 5);
  CHECK(f.type == 0x44);
  CHECK(f.payload.empty());
  uint64_t req;
  CHECK_FALSE(net::DecodeReq(f.payload, &req));
}

// ---------------------------------------------------------------------------------
// Hostile counts

TEST_CASE("codec: a WELCOME or STATS_REPLY declaring a huge count fails without allocating") {
  std::vector<std::string> welcomes, stats_replies;
  for (uint64_t n : {uint64_t{4}, uint64_t{1} << 20, uint64_t{1} << 40, kU64Max}) {
    std::string w;
    util::PutVarint(w, 1);      // version
    util::PutStr(w, "");        // server_name
    util::PutVarint(w, 0);      // last_applied_seq
    util::PutVarint(w, 0);      // window_us
    util::PutVarint(w, 0);      // partitions
    util::PutVarint(w, 0);      // credit
    util::PutVarint(w, n);      // n_schemas
    w += std::string(8, '\0');  // room for far fewer than n schemas
    welcomes.push_back(w);

    // One schema that declares n fields.
    std::string f;
    util::PutVarint(f, 1);
    util::PutStr(f, "");
    util::PutVarint(f, 0);
    util::PutVarint(f, 0);
    util::PutVarint(f, 0);
    util::PutVarint(f, 0);  // credit
    util::PutVarint(f, 1);  // n_schemas
    util::PutVarint(f, 1);  // id
    util::PutStr(f, "");    // name
    util::PutVarint(f, n);  // n_fields
    f += std::string(6, '\0');
    welcomes.push_back(f);

    std::string s;
    util::PutVarint(s, 1);  // req
    util::PutVarint(s, n);  // n
    s += std::string(6, '\0');
    stats_replies.push_back(s);
  }
  if (!AllocationCounter::available()) {
    MESSAGE("allocations are counted only under AddressSanitizer");
  }
  for (const auto& p : welcomes) {
    std::vector<char> buf = Exact(p);
    net::Welcome m;
    size_t allocations;
    bool ok;
    {
      AllocationCounter counter;
      ok = net::DecodeWelcome(View(buf), &m);
      allocations = counter.count();
    }
    CHECK_FALSE(ok);
    if (AllocationCounter::available()) CHECK(allocations == 0);
  }
  for (const auto& p : stats_replies) {
    std::vector<char> buf = Exact(p);
    uint64_t req;
    net::StatList stats;
    size_t allocations;
    bool ok;
    {
      AllocationCounter counter;
      ok = net::DecodeStatsReply(View(buf), &req, &stats);
      allocations = counter.count();
    }
    CHECK_FALSE(ok);
    if (AllocationCounter::available()) CHECK(allocations == 0);
  }
}

TEST_CASE("codec: a RESULT declaring more claims than its bytes can hold is rejected") {
  for (uint64_t n : {uint64_t{3}, uint64_t{1} << 40, kU64Max}) {
    std::string p;
    util::PutVarint(p, 1);  // req
    util::PutU8(p, 1);      // found
    util::PutVarint(p, 0);  // empty record
    util::PutVarint(p, n);  // n_claims
    p += std::string(6, '\0');
    std::vector<char> buf = Exact(p);
    net::Result m;
    size_t allocations;
    bool ok;
    {
      AllocationCounter counter;
      ok = net::DecodeResult(View(buf), Player(), true, &m);
      allocations = counter.count();
    }
    CHECK_FALSE(ok);
    if (AllocationCounter::available()) CHECK(allocations == 0);
  }
}

TEST_CASE("codec: a WELCOME with more than 64 fields, an unknown type or a 33-bit id is rejected") {
  auto welcome_with = [](uint64_t id, uint64_t n_fields, uint8_t type) {
    std::string p;
    util::PutVarint(p, 1);
    util::PutStr(p, "s");
    util::PutVarint(p, 0);  // last_applied_seq
    util::PutVarint(p, 0);  // window_us
    util::PutVarint(p, 0);  // partitions
    util::PutVarint(p, 0);  // credit
    util::PutVarint(p, 1);
    util::PutVarint(p, id);
    util::PutStr(p, "t");
    util::PutVarint(p, n_fields);
    for (uint64_t i = 0; i < n_fields; ++i) {
      util::PutStr(p, "f" + std::to_string(i));
      util::PutU8(p, type);
    }
    return p;
  };
  net::Welcome m;
  CHECK(net::DecodeWelcome(welcome_with(2, 64, 4), &m));
  CHECK(m.schemas.at(0).fields.size() == 64);
  CHECK_FALSE(net::DecodeWelcome(welcome_with(2, 65, 4), &m));
  CHECK_FALSE(net::DecodeWelcome(welcome_with(2, 1, 5), &m));
  CHECK_FALSE(net::DecodeWelcome(welcome_with(2, 1, 0xff), &m));
  CHECK(net::DecodeWelcome(welcome_with(UINT32_MAX, 1, 0), &m));
  CHECK_FALSE(net::DecodeWelcome(welcome_with(uint64_t{UINT32_MAX} + 1, 1, 0), &m));
}

// ---------------------------------------------------------------------------------
// Truncation and corruption

TEST_CASE("codec: every truncation of a valid frame is rejected or decoded, never over-read") {
  for (const Sample& s : AllSamples()) {
    CAPTURE(s.name);
    // The whole frame has not arrived: NextFrame waits for more.
    for (size_t n = 0; n < s.frame.size(); ++n) {
      CAPTURE(n);
      std::vector<char> buf = Exact(std::string_view(s.frame).substr(0, n));
      net::Frame f;
      size_t consumed = 0;
      CHECK(net::NextFrame(View(buf), net::kDefaultMaxFrame, &f, &consumed) ==
            FrameStatus::kNeedMore);
    }
    // A frame whose length was fixed up to match a cut payload: it is cut, and its
    // decoder rejects it, since every element of every payload is needed.
    std::string_view payload = std::string_view(s.frame).substr(net::kFrameHeader + 1);
    size_t rejected = 0;
    for (size_t n = 0; n < payload.size(); ++n) {
      CAPTURE(n);
      std::string framed = Header(static_cast<uint32_t>(n + 1));
      framed.push_back(static_cast<char>(s.type));
      framed.append(payload.substr(0, n));
      bool decoded = Feed(framed, s.flag);
      CHECK_FALSE(decoded);
      rejected += !decoded;
    }
    CHECK(rejected == payload.size());
    // And the uncut frame still decodes.
    CHECK(Feed(s.frame, s.flag));
  }
}

TEST_CASE("codec: every single-bit flip of a valid frame is rejected or decoded, never over-read") {
  for (const Sample& s : AllSamples()) {
    CAPTURE(s.name);
    Outcome outcome;
    std::string mutated = s.frame;
    for (size_t i = 0; i < mutated.size(); ++i) {
      for (int bit = 0; bit < 8; ++bit) {
        CAPTURE(i);
        CAPTURE(bit);
        mutated[i] = static_cast<char>(mutated[i] ^ (1 << bit));
        if (i >= net::kFrameHeader) {
          // The length is intact, so a frame is always cut.
          net::Frame f;
          size_t consumed = 0;
          CHECK(net::NextFrame(mutated, net::kDefaultMaxFrame, &f, &consumed) ==
                FrameStatus::kFrame);
        }
        if (Feed(mutated, s.flag)) {
          ++outcome.decoded;
        } else {
          ++outcome.rejected;
        }
        mutated[i] = static_cast<char>(mutated[i] ^ (1 << bit));
      }
    }
    REQUIRE(mutated == s.frame);
    MESSAGE(s.name, " frame: ", outcome.decoded, " flips decoded, ", outcome.rejected, " rejected");
    // Flipping the high bit of the length always makes the frame too large.
    CHECK(outcome.rejected > 0);
  }
}

TEST_CASE("codec: randomly corrupted and cut frames are rejected or decoded, never over-read") {
  const uint32_t seed = 0xC0DEC;
  MESSAGE("seed = ", seed);
  std::mt19937 rng(seed);
  auto samples = AllSamples();
  Outcome outcome;
  for (int round = 0; round < 20000; ++round) {
    const Sample& s = samples[rng() % samples.size()];
    std::string mutated = s.frame;
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      // Leave the length alone most of the time so the decoders see the damage.
      size_t lo = rng() % 8 == 0 ? 0 : net::kFrameHeader;
      size_t at = lo + rng() % (mutated.size() - lo);
      switch (rng() % 3) {
        case 0:
          mutated[at] = static_cast<char>(rng());
          break;
        case 1:
          mutated[at] = static_cast<char>(rng() % 2 ? 0x00 : 0xff);
          break;
        case 2:
          mutated[at] = static_cast<char>(0x80 | rng());
          break;  // a longer varint
      }
    }
    if (rng() % 4 == 0) {
      // Cut the payload and fix the length up to match.
      size_t keep = net::kFrameHeader + 1 + rng() % (mutated.size() - net::kFrameHeader);
      mutated.resize(keep);
      util::EncodeFixed32(reinterpret_cast<uint8_t*>(mutated.data()),
                          static_cast<uint32_t>(keep - net::kFrameHeader));
    }
    CAPTURE(round);
    if (Feed(mutated, s.flag)) {
      ++outcome.decoded;
    } else {
      ++outcome.rejected;
    }
  }
  MESSAGE(outcome.decoded, " corrupted frames decoded, ", outcome.rejected, " rejected");
  CHECK(outcome.rejected > 0);
}

TEST_CASE("messages: RESULT from a point read encodes exactly as the RESULT message") {
  engine::SourceTable sources;
  auto split = [](const std::string& record, uint64_t* mask, std::string* values) {
    util::Reader r(record);
    REQUIRE(r.Varint(mask));
    *values = std::string(r.rest());
  };
  for (bool with_claims : {false, true}) {
    CAPTURE(with_claims);
    net::Result want = SampleResult(with_claims);
    engine::QueryResult read;
    read.found = true;
    split(want.record, &read.record.mask, &read.record.values);
    for (const auto& c : want.claims) {
      engine::QueryResult::ClaimInfo info;
      info.source = *sources.Intern(c.source);
      info.ts_max = c.ts_max;
      split(c.record, &info.mask, &info.values);
      read.claims.push_back(info);
    }
    std::string a, b;
    net::EncodeResult(a, want);
    net::EncodeResult(b, want.req, read, with_claims, sources);
    CHECK(a == b);
  }
  std::string a, b;
  net::EncodeResult(a, net::Result{8, false, {}, false, {}});
  net::EncodeResult(b, 8, engine::QueryResult{}, true, sources);
  CHECK(a == b);
}
