#pragma once

// Conformance vectors: frames of every type, encoded by net/messages.h, with their
// decoded fields as JSON (format: tests/vectors/README.md). The committed
// tests/vectors/frames.json is FrameVectorsJson(); every client decodes each vector's
// bytes to its fields and encodes the fields of the frames it sends back to the bytes.
// The C++ test decodes each vector with DecodeMessage and renders it with FieldsJson.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "engine/schema.h"
#include "net/messages.h"

namespace conv::cmd {

// What a decoder needs besides the bytes: the schema of a SNAPSHOT, NOTIFY or RESULT,
// whether the NOTIFY's subscription asked for include_prev, whether the QUERY asked
// for claims.
struct VectorContext {
  uint64_t schema_id = 0;
  bool include_prev = false;
  bool include_claims = false;
};

// Frames whose payload is a single varint: ACK, CREDIT, UNSUBSCRIBE, SYNC, SYNCED,
// STATS, PING, PONG.
struct SingleVarint {
  net::FrameType type = net::FrameType::kSync;
  uint64_t value = 0;
};
struct StatsReply {
  uint64_t req = 0;
  net::StatList stats;
};

// One decoded frame of any type.
using Message = std::variant<net::Hello, net::Welcome, net::Error, net::WriteOp, SingleVarint,
                             net::Query, net::Result, net::Subscribe, net::Snapshot,
                             net::SnapshotEnd, net::Notify, StatsReply>;

// The schemas every vector names: player (1), one with a field of each type (2) and
// one with 64 fields (3).
std::vector<engine::Schema> VectorSchemas();

// The text of tests/vectors/frames.json.
std::string FrameVectorsJson();

// The frame type of `m` (the WriteOp's or SingleVarint's own type for those).
net::FrameType MessageType(const Message& m);
// Appends the whole frame (length, type, payload) of `m`.
void EncodeMessage(std::string& out, const Message& m, const VectorContext& ctx);
// Decodes a frame's payload with the net decoders. Nothing when it is malformed,
// the type is unknown or the context names an unknown schema. A WriteOp's views
// point into `payload`.
std::optional<Message> DecodeMessage(uint8_t type, std::string_view payload,
                                     const std::vector<engine::Schema>& schemas,
                                     const VectorContext& ctx);
// The "fields" object of a vector for `m`, as compact JSON. Records are rendered
// with the schema they belong to (the frame's schema_id, or the context's). Empty
// when a record does not parse against its schema.
std::string FieldsJson(const Message& m, const std::vector<engine::Schema>& schemas,
                       const VectorContext& ctx);

}  // namespace conv::cmd
