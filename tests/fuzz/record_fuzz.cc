// Records: the input is a schema choice, then one record (mask + values). The first
// byte's low two bits pick a schema of the protocol vectors (VectorSchema), or with
// 3 a schema read from the input: a byte n (mod 65), then n type bytes (mod 5).
//
// Properties of a record ParseRecord accepts: ParseRecordPrefix takes exactly it
// when bytes follow; the field slices tile the values; values decode and re-encode
// to the same bytes when the record is canonical; RecordBuilder rebuilds a record
// that parses to the same values; a non-canonical record canonicalizes into a
// canonical one with the same values.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "check.h"
#include "engine/record.h"
#include "util/coding.h"

namespace conv::engine {
namespace {

bool SameValue(const Value& a, const Value& b) {
  if (std::holds_alternative<double>(a) && std::holds_alternative<double>(b)) {
    double x = std::get<double>(a), y = std::get<double>(b);
    if (std::isnan(x) || std::isnan(y)) return std::isnan(x) && std::isnan(y);
    uint64_t bx, by;
    std::memcpy(&bx, &x, 8);
    std::memcpy(&by, &y, 8);
    return bx == by;  // tells -0.0 from 0.0
  }
  return a == b;
}

// Field i's value, for every field present in `view`.
void DecodeAll(const Schema& schema, const RecordView& view, Value* values) {
  std::string_view slices[kMaxFields];
  SliceFields(schema, view.mask, view.values, slices);
  size_t total = 0;
  for (uint64_t m = view.mask; m != 0; m &= m - 1) {
    int i = __builtin_ctzll(m);
    FUZZ_CHECK(slices[i].data() == view.values.data() + total, "field %d slice out of place", i);
    total += slices[i].size();
    values[i] = DecodeValue(schema.fields[i].type, slices[i]);
  }
  FUZZ_CHECK(total == view.values.size(), "slices cover %zu of %zu value bytes", total,
             view.values.size());
}

void CheckSameValues(const Schema& schema, uint64_t mask, const Value* a, const Value* b,
                     const char* what) {
  for (uint64_t m = mask; m != 0; m &= m - 1) {
    int i = __builtin_ctzll(m);
    FUZZ_CHECK(SameValue(a[i], b[i]), "%s: field %d changed", what, i);
  }
}

void CheckRecord(const Schema& schema, std::string_view bytes) {
  RecordView view;
  util::Status st = ParseRecord(schema, bytes, &view);
  if (!st.ok()) {
    FUZZ_CHECK(!st.message().empty(), "an error without a message");
    return;
  }
  FUZZ_CHECK((view.mask & ~schema.AllFieldsMask()) == 0, "mask beyond the schema");

  std::string longer(bytes);
  longer += "\x01\x02";
  RecordView prefix;
  size_t consumed = 0;
  FUZZ_CHECK(ParseRecordPrefix(schema, longer, &prefix, &consumed).ok(), "prefix refused");
  FUZZ_CHECK(consumed == bytes.size() && prefix.mask == view.mask && prefix.values == view.values &&
                 prefix.canonical == view.canonical,
             "prefix parse differs");

  Value values[kMaxFields];
  DecodeAll(schema, view, values);

  std::string reencoded;
  RecordBuilder builder(schema);
  for (uint64_t m = view.mask; m != 0; m &= m - 1) {
    int i = __builtin_ctzll(m);
    FUZZ_CHECK(EncodeValue(schema.fields[i].type, values[i], reencoded), "field %d", i);
    FUZZ_CHECK(builder.Set(static_cast<size_t>(i), values[i]).ok(), "builder refused field %d", i);
  }
  if (view.canonical) {
    FUZZ_CHECK(reencoded == view.values, "a canonical record re-encodes differently");
  }

  std::string built = builder.Encode();
  RecordView rebuilt;
  FUZZ_CHECK(ParseRecord(schema, built, &rebuilt).ok(), "the rebuilt record does not parse");
  FUZZ_CHECK(rebuilt.mask == view.mask, "rebuilt mask differs");
  Value again[kMaxFields];
  DecodeAll(schema, rebuilt, again);
  CheckSameValues(schema, view.mask, values, again, "rebuilt");

  if (!view.canonical) {
    RecordView canon = view;
    std::string scratch;
    CanonicalizeValues(schema, &canon, &scratch);
    std::string record;
    util::PutVarint(record, canon.mask);
    record += canon.values;
    RecordView reparsed;
    FUZZ_CHECK(ParseRecord(schema, record, &reparsed).ok(), "the canonical form does not parse");
    FUZZ_CHECK(reparsed.canonical && reparsed.mask == view.mask, "the canonical form is not");
    DecodeAll(schema, reparsed, again);
    CheckSameValues(schema, view.mask, values, again, "canonicalized");
  }

  std::string json;
  AppendRecordJson(json, schema, view.mask, view.values);
  FUZZ_CHECK(json.size() >= 2 && json.front() == '{' && json.back() == '}', "JSON object");
}

}  // namespace
}  // namespace conv::engine

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace conv::engine;
  if (size < 1) return 0;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  Schema schema;
  if ((data[0] & 3) != 3) {
    schema = conv::fuzz::VectorSchema(data[0] & 3);
    in.remove_prefix(1);
  } else {
    if (size < 2) return 0;
    size_t n = data[1] % (kMaxFields + 1);
    if (size < 2 + n) return 0;
    schema.id = 2;
    schema.name = "fuzz";
    for (size_t i = 0; i < n; ++i) {
      schema.fields.push_back({"f" + std::to_string(i), static_cast<FieldType>(data[2 + i] % 5)});
    }
    in.remove_prefix(2 + n);
  }
  CheckRecord(schema, in);
  return 0;
}
