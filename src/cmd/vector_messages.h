#pragma once

// The bridge between the conformance vectors (cmd/vectors.h, format:
// tests/vectors/README.md) and the codec: a frame of any type as one value, encoded
// and decoded by net/messages.h, and rendered as a vector's "fields" JSON. The
// generator writes every vector through it; the C++ test decodes each committed
// vector with DecodeMessage and renders it with FieldsJson.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "engine/schema.h"
#include "net/messages.h"
#include "util/json.h"

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

// The schema with id `id` among `schemas`, or null.
const engine::Schema* FindVectorSchema(const std::vector<engine::Schema>& schemas, uint64_t id);
// `bytes` in lowercase hex, two digits a byte, as the vectors write frames and bytes.
std::string VectorHex(std::string_view bytes);
// True for the frames a client sends (the vectors' direction "c2s").
bool IsClientFrame(net::FrameType t);

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
// Writes the "fields" object of a vector for `m` to `w`. Records are rendered with the
// schema they belong to (the frame's schema_id, or the context's); a record that does
// not parse against its schema is written as null and makes the result false.
bool WriteFields(util::JsonWriter& w, const Message& m, const std::vector<engine::Schema>& schemas,
                 const VectorContext& ctx);
// WriteFields as compact JSON text; empty when a record does not parse.
std::string FieldsJson(const Message& m, const std::vector<engine::Schema>& schemas,
                       const VectorContext& ctx);

}  // namespace conv::cmd
