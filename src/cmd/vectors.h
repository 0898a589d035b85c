#pragma once

// Conformance vectors: frames of every type, encoded by net/messages.h, with their
// decoded fields as JSON (format: tests/vectors/README.md). The committed
// tests/vectors/frames.json is FrameVectorsJson(); every client decodes each vector's
// bytes to its fields and encodes the fields of the frames it sends back to the bytes.
// How a frame is encoded, decoded and rendered: cmd/vector_messages.h.

#include <string>
#include <vector>

#include "engine/schema.h"

namespace conv::cmd {

// The schemas every vector names: player (1), one with a field of each type (2) and
// one with 64 fields (3).
std::vector<engine::Schema> VectorSchemas();

// The text of tests/vectors/frames.json.
std::string FrameVectorsJson();

}  // namespace conv::cmd
