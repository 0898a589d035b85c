#pragma once

// Encoding and decoding of every protocol v1 frame: pure functions over bytes, no
// sockets. Encoders append a whole frame (length, type, payload) to `out`. Decoders
// take the payload (the bytes after the type) and return false when it is
// malformed: the caller answers bad_frame. They never read past the payload, and
// string views they return point into it.
//
// Records inside ASSERT/PATCH are not decoded here: the record is the rest of the
// payload and is checked against its schema by engine::ParseRecord. RESULT records
// can only be split with the schema in hand, so DecodeResult takes it.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/reads.h"
#include "engine/schema.h"
#include "engine/sources.h"
#include "net/protocol.h"

namespace conv::net {

struct Hello {
  uint64_t version = kProtocolVersion;
  std::string source;      // empty: not a writer
  std::string auth_token;  // empty: none
  uint64_t lease_ms = 0;
};

struct Welcome {
  uint64_t version = kProtocolVersion;
  std::string server_name;
  uint64_t last_applied_seq = 0;
  uint64_t window_us = 0;
  uint64_t partitions = 0;
  uint64_t credit =
      0;  // a writer's initial credit (ops it may keep unacknowledged); 0: not a writer
  std::vector<engine::Schema> schemas;
};

struct Error {
  uint64_t seq_or_req = 0;  // 0: connection-level
  uint64_t code = 0;
  std::string message;
};

// ASSERT, PATCH and RETRACT.
struct WriteOp {
  FrameType type = FrameType::kAssert;
  uint64_t seq = 0;
  uint64_t ts = 0;
  uint64_t schema_id = 0;
  std::string_view id;
  std::string_view record;  // mask + values; empty for RETRACT
};

struct Query {
  uint64_t req = 0;
  uint64_t schema_id = 0;
  std::string_view id;
  uint8_t flags = 0;  // bit0: include claims
};
constexpr uint8_t kQueryIncludeClaims = 1;

struct ResultClaim {
  std::string source;
  uint64_t ts_max = 0;
  std::string record;  // mask + values
};
struct Result {
  uint64_t req = 0;
  bool found = false;
  std::string record;  // mask + values, when found
  bool has_claims = false;
  std::vector<ResultClaim> claims;
};

// SUBSCRIBE (c→s).
struct Subscribe {
  uint64_t sub = 0;
  uint64_t schema_id = 0;
  std::string id_prefix;       // empty: every id
  uint64_t field_mask = 0;     // 0: every field
  uint8_t flags = 0;           // kSubscribeBootstrap | kSubscribeIncludePrev
  uint64_t resume_window = 0;  // 0: none
  uint64_t interval_ms = 0;    // 0: every window
};
constexpr uint8_t kSubscribeBootstrap = 1;
constexpr uint8_t kSubscribeIncludePrev = 2;

constexpr uint8_t kChangeUpsert = 1;
constexpr uint8_t kChangeDelete = 2;

// One entry of a SNAPSHOT or one change of a NOTIFY, decoded (client side).
struct ChangeEntry {
  uint8_t kind = kChangeUpsert;
  std::string id;
  uint64_t changed_mask = 0;  // NOTIFY only
  uint64_t ts = 0;            // NOTIFY only
  std::string record;         // mask + values (mask 0 on delete)
  bool had_prev = false;      // NOTIFY with include_prev only
  std::string prev;           // mask + values, when had_prev
};

struct Snapshot {
  uint64_t sub = 0;
  std::vector<ChangeEntry> entries;
};

struct SnapshotEnd {
  uint64_t sub = 0;
  uint64_t total = 0;
  uint64_t window = 0;  // the state is as of the end of this window
  bool reset = true;    // true: full state; false: delta since resume_window
};

struct Notify {
  uint64_t sub = 0;
  uint64_t window = 0;
  std::vector<ChangeEntry> changes;
};

using StatList = std::vector<std::pair<std::string, uint64_t>>;

// A frame cut out of a byte stream.
struct Frame {
  uint8_t type = 0;
  std::string_view payload;
};

enum class FrameStatus {
  kFrame,     // *frame and *consumed are set
  kNeedMore,  // the buffer holds no whole frame yet
  kTooLarge,  // the declared length is over the limit
  kEmpty,     // the declared length is 0: no type byte
};
// Cuts the first frame off `buf`. Checks the declared length against `max_frame`
// before anything is waited for or allocated.
FrameStatus NextFrame(std::string_view buf, uint32_t max_frame, Frame* frame, size_t* consumed);

// Writes a frame's length and type in place; finish with EndFrame. Lets callers
// append payload directly to `out` without an intermediate buffer.
size_t BeginFrame(std::string& out, FrameType type);
void EndFrame(std::string& out, size_t begin);

void EncodeHello(std::string& out, const Hello& m);
void EncodeWelcome(std::string& out, const Welcome& m);
void EncodeError(std::string& out, const Error& m);
void EncodeWriteOp(std::string& out, const WriteOp& m);
void EncodeAck(std::string& out, uint64_t seq);
void EncodeCredit(std::string& out, uint64_t credit);
void EncodeQuery(std::string& out, const Query& m);
void EncodeResult(std::string& out, const Result& m);
// The same frame straight from a point read (the server's path: no copies), source
// ids named by `sources`.
void EncodeResult(std::string& out, uint64_t req, const engine::QueryResult& r, bool with_claims,
                  const engine::SourceTable& sources);
// SYNC, SYNCED, STATS, PING, PONG: a single varint req.
void EncodeReq(std::string& out, FrameType type, uint64_t req);
void EncodeStatsReply(std::string& out, uint64_t req, const StatList& stats);
void EncodeSubscribe(std::string& out, const Subscribe& m);
// UNSUBSCRIBE: a single varint sub (EncodeReq / DecodeReq with kUnsubscribe).
void EncodeSnapshotEnd(std::string& out, const SnapshotEnd& m);

// Server side, SNAPSHOT and NOTIFY are built from a body of entries encoded once and
// shared by every subscriber of the same shape; only the frame header is per
// subscriber. Append one entry / change to a body:
void AppendSnapshotEntry(std::string& body, uint8_t kind, std::string_view id, uint64_t mask,
                         std::string_view values);
// `include_prev`: whether the subscription asked for previous records (then
// `had_prev`, `prev_mask` and `prev_values` are written).
void AppendNotifyChange(std::string& body, uint8_t kind, std::string_view id, uint64_t changed_mask,
                        uint64_t ts, uint64_t mask, std::string_view values, bool include_prev,
                        bool had_prev, uint64_t prev_mask, std::string_view prev_values);
// The frame header (length, type, sub, [window,] n) of a SNAPSHOT / NOTIFY whose
// body of `n` entries is `body_bytes` long; the body follows it on the wire.
void EncodeSnapshotHeader(std::string& out, uint64_t sub, uint64_t n, size_t body_bytes);
void EncodeNotifyHeader(std::string& out, uint64_t sub, uint64_t window, uint64_t n,
                        size_t body_bytes);
// Whole frames (tests and tools).
void EncodeSnapshot(std::string& out, const Snapshot& m);
void EncodeNotify(std::string& out, const Notify& m, bool include_prev);

[[nodiscard]] bool DecodeHello(std::string_view payload, Hello* m);
[[nodiscard]] bool DecodeWelcome(std::string_view payload, Welcome* m);
[[nodiscard]] bool DecodeError(std::string_view payload, Error* m);
[[nodiscard]] bool DecodeWriteOp(FrameType type, std::string_view payload, WriteOp* m);
[[nodiscard]] bool DecodeAck(std::string_view payload, uint64_t* seq);
[[nodiscard]] bool DecodeCredit(std::string_view payload, uint64_t* credit);
[[nodiscard]] bool DecodeQuery(std::string_view payload, Query* m);
// `schema`: the schema the QUERY named; `with_claims`: whether it asked for claims.
[[nodiscard]] bool DecodeResult(std::string_view payload, const engine::Schema& schema,
                                bool with_claims, Result* m);
[[nodiscard]] bool DecodeReq(std::string_view payload, uint64_t* req);
[[nodiscard]] bool DecodeStatsReply(std::string_view payload, uint64_t* req, StatList* stats);
[[nodiscard]] bool DecodeSubscribe(std::string_view payload, Subscribe* m);
[[nodiscard]] bool DecodeSnapshotEnd(std::string_view payload, SnapshotEnd* m);
// Records can only be split with the subscription's schema in hand; a NOTIFY's
// changes carry previous records only when the subscription asked for them.
[[nodiscard]] bool DecodeSnapshot(std::string_view payload, const engine::Schema& schema,
                                  Snapshot* m);
[[nodiscard]] bool DecodeNotify(std::string_view payload, const engine::Schema& schema,
                                bool include_prev, Notify* m);

}  // namespace conv::net
