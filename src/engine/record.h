#pragma once

// Records: the encoding of an entity's (or a claim's) field values, shared by the
// wire protocol and the engine's memory layout:
//
//   varint mask      bit i set = field i present
//   values...        the present fields in field order:
//                      bool u8 (0/1), i64 zigzag varint, f64 8 bytes LE IEEE-754,
//                      string/bytes varint length + bytes (string: UTF-8)
//
// The engine stores a claim's values exactly as they arrived, so an ASSERT costs
// one copy; ParseRecord is the single place that checks a record against its schema.

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "engine/schema.h"
#include "util/status.h"

namespace conv::engine {

struct RecordView {
  uint64_t mask = 0;
  std::string_view values;  // the bytes after the mask
  // False when a value is encoded in a form other than the one this server writes: a
  // varint (i64, or a string's length) longer than it needs, or a NaN other than
  // kCanonicalNaN. Equal values must be equal bytes: see CanonicalizeValues.
  bool canonical = true;
};

// The bits of the one NaN the server stores (a quiet NaN, positive, no payload).
constexpr uint64_t kCanonicalNaN = 0x7ff8000000000000ull;

// Checks `bytes` (mask and values) against `schema`: no mask bit beyond the schema's
// fields, every value well-formed for its type, strings valid UTF-8, nothing left
// over. On failure the message names the field and the byte offset in `bytes`.
util::Status ParseRecord(const Schema& schema, std::string_view bytes, RecordView* out);
// The same checks on a record at the start of `bytes`, which may go on after it;
// `*consumed` is set to the record's length.
util::Status ParseRecordPrefix(const Schema& schema, std::string_view bytes, RecordView* out,
                               size_t* consumed);

// Re-encodes the values of a record ParseRecord accepted with canonical = false into
// `scratch` (shortest varints, every NaN as kCanonicalNaN) and points view->values at
// it, so that an equal value is stored as the same bytes and never counts as changed.
void CanonicalizeValues(const Schema& schema, RecordView* view, std::string* scratch);

// Splits the values of a record that ParseRecord accepted into one slice per present
// field; slices[i] is field i's encoded value (empty for absent fields).
// REQUIRES: `values` was validated for `mask` against `schema`.
void SliceFields(const Schema& schema, uint64_t mask, std::string_view values,
                 std::string_view* slices);

// A decoded value, for display, tests and clients. bytes fields decode to Bytes.
struct Bytes {
  std::string data;
  bool operator==(const Bytes&) const = default;
};
using Value = std::variant<bool, int64_t, double, std::string, Bytes>;

// Decodes one encoded value. REQUIRES: `slice` is a valid encoding for `type`.
Value DecodeValue(FieldType type, std::string_view slice);
// Appends the encoding of `v`, which must hold the alternative matching `type`.
// Returns false when it does not.
bool EncodeValue(FieldType type, const Value& v, std::string& out);

// Builds records field by field; used by clients, tools and tests.
class RecordBuilder {
 public:
  explicit RecordBuilder(const Schema& schema) : schema_(&schema) {}
  // Sets field `index`; a second Set of the same field replaces the first.
  // Returns an error when the index or the value's type does not fit the schema.
  util::Status Set(size_t index, Value value);
  util::Status Set(std::string_view field, Value value);
  // mask + values.
  std::string Encode() const;

 private:
  const Schema* schema_;
  std::vector<std::pair<size_t, Value>> fields_;
};

// Appends `{"field":value,...}` for the present fields (bytes as base64).
// REQUIRES: `values` was validated for `mask` against `schema`.
void AppendRecordJson(std::string& out, const Schema& schema, uint64_t mask,
                      std::string_view values);

inline int PopCount(uint64_t v) {
  return __builtin_popcountll(v);
}

}  // namespace conv::engine
