// Conformance vectors (tests/vectors/frames.json): in sync with the codec that
// generates them, and every vector decoded by the C++ decoders to its fields and
// encoded back to its bytes; each record's typed values, read independently of the
// generator, encode to the record bytes the frame carries.

#include "cmd/vectors.h"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <bit>
#include <cstdlib>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cmd/vector_messages.h"
#include "engine/record.h"
#include "net/protocol.h"
#include "support/json_value.h"
#include "support/process.h"

using namespace conv;
using testing::JsonValue;

namespace {

const std::string kVectorsPath = std::string(CONV_SOURCE_DIR) + "/tests/vectors/frames.json";

bool Unhex(const std::string& hex, std::string* out) {
  if (hex.size() % 2 != 0) return false;
  out->clear();
  for (size_t i = 0; i < hex.size(); i += 2) {
    char* end = nullptr;
    std::string byte = hex.substr(i, 2);
    long v = std::strtol(byte.c_str(), &end, 16);
    if (end != byte.c_str() + 2) return false;
    out->push_back(static_cast<char>(v));
  }
  return true;
}

bool JsonEqual(const JsonValue& a, const JsonValue& b) {
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case JsonValue::Kind::kNull:
      return true;
    case JsonValue::Kind::kBool:
      return a.boolean == b.boolean;
    case JsonValue::Kind::kNumber:
      return a.number == b.number;
    case JsonValue::Kind::kString:
      return a.string == b.string;
    case JsonValue::Kind::kArray:
      if (a.array.size() != b.array.size()) return false;
      for (size_t i = 0; i < a.array.size(); ++i) {
        if (!JsonEqual(a.array[i], b.array[i])) return false;
      }
      return true;
    case JsonValue::Kind::kObject:
      if (a.object.size() != b.object.size()) return false;
      for (const auto& [k, v] : a.object) {
        const JsonValue* o = b.Get(k);
        if (o == nullptr || !JsonEqual(v, *o)) return false;
      }
      return true;
  }
  return false;
}

// Record bytes (mask + values) from a vector's {"mask", "values"} object, built with
// RecordBuilder from the typed values; empty when the JSON does not fit the schema.
std::string RecordFromJson(const engine::Schema& schema, const JsonValue& rec) {
  const JsonValue* values = rec.Get("values");
  const JsonValue* mask = rec.Get("mask");
  if (values == nullptr || mask == nullptr || !values->is(JsonValue::Kind::kObject)) return {};
  engine::RecordBuilder b(schema);
  uint64_t expect_mask = 0;
  for (const auto& [name, typed] : values->object) {
    int index = schema.FieldIndex(name);
    if (index < 0 || typed.object.size() != 1) return {};
    expect_mask |= uint64_t{1} << index;
    const auto& [type, v] = *typed.object.begin();
    engine::Value value;
    std::string raw;
    if (type == "bool" && v.is(JsonValue::Kind::kBool)) {
      value = v.boolean;
    } else if (type == "i64") {
      value = static_cast<int64_t>(std::strtoll(v.string.c_str(), nullptr, 10));
    } else if (type == "f64" && v.string.size() == 16) {
      value = std::bit_cast<double>(std::strtoull(v.string.c_str(), nullptr, 16));
    } else if (type == "string") {
      value = v.string;
    } else if (type == "bytes" && Unhex(v.string, &raw)) {
      value = engine::Bytes{raw};
    } else {
      return {};
    }
    if (!b.Set(static_cast<size_t>(index), value).ok()) return {};
  }
  if (mask->string != fmt::format("{}", expect_mask)) return {};
  return b.Encode();
}

// The records a decoded frame carries, in the order RecordsOfJson lists them.
std::vector<std::string> RecordsOfMessage(const cmd::Message& m) {
  std::vector<std::string> out;
  if (auto* w = std::get_if<net::WriteOp>(&m); w && w->type != net::FrameType::kRetract) {
    out.emplace_back(w->record);
  } else if (auto* r = std::get_if<net::Result>(&m); r && r->found) {
    out.push_back(r->record);
    for (const auto& c : r->claims)
      out.push_back(c.record);
  } else if (auto* s = std::get_if<net::Snapshot>(&m)) {
    for (const auto& e : s->entries)
      out.push_back(e.record);
  } else if (auto* n = std::get_if<net::Notify>(&m)) {
    for (const auto& c : n->changes) {
      out.push_back(c.record);
      if (c.had_prev) out.push_back(c.prev);
    }
  }
  return out;
}

std::vector<const JsonValue*> RecordsOfJson(const JsonValue& fields) {
  std::vector<const JsonValue*> out;
  if (const JsonValue* r = fields.Get("record")) out.push_back(r);
  for (const char* list : {"claims", "entries", "changes"}) {
    const JsonValue* items = fields.Get(list);
    if (items == nullptr) continue;
    for (const auto& item : items->array) {
      if (const JsonValue* r = item.Get("record")) out.push_back(r);
      if (const JsonValue* p = item.Get("prev")) out.push_back(p);
    }
  }
  return out;
}

const engine::Schema* Find(const std::vector<engine::Schema>& schemas, uint64_t id) {
  for (const auto& s : schemas) {
    if (s.id == id) return &s;
  }
  return nullptr;
}

// Checks one vector; returns what is wrong, or nothing.
std::string CheckVector(const JsonValue& v, const std::vector<engine::Schema>& schemas) {
  const JsonValue* name = v.Get("name");
  const JsonValue* type = v.Get("type");
  const JsonValue* code = v.Get("code");
  const JsonValue* direction = v.Get("direction");
  const JsonValue* hex = v.Get("hex");
  const JsonValue* fields = v.Get("fields");
  if (!name || !type || !code || !direction || !hex || !fields) return "a member is missing";
  std::string bytes;
  if (!Unhex(hex->string, &bytes)) return "hex is not hex";
  net::Frame frame;
  size_t consumed = 0;
  if (net::NextFrame(bytes, UINT32_MAX, &frame, &consumed) != net::FrameStatus::kFrame ||
      consumed != bytes.size()) {
    return "hex is not exactly one frame";
  }
  if (frame.type != code->number) return fmt::format("frame type {} is not code", frame.type);
  if (net::FrameTypeName(frame.type) != type->string) return "type does not name the code";
  cmd::VectorContext ctx;
  if (const JsonValue* c = v.Get("context")) {
    if (const JsonValue* s = c->Get("schema_id")) ctx.schema_id = static_cast<uint64_t>(s->number);
    if (const JsonValue* p = c->Get("include_prev")) ctx.include_prev = p->boolean;
    if (const JsonValue* p = c->Get("include_claims")) ctx.include_claims = p->boolean;
  }
  auto decoded = cmd::DecodeMessage(frame.type, frame.payload, schemas, ctx);
  if (!decoded) return "the C++ decoder rejects the frame";
  auto rendered = testing::ParseJson(cmd::FieldsJson(*decoded, schemas, ctx));
  if (!rendered) return "the decoded frame does not render";
  if (!JsonEqual(*rendered, *fields)) {
    return "decoded fields differ: " + cmd::FieldsJson(*decoded, schemas, ctx);
  }
  std::string encoded;
  cmd::EncodeMessage(encoded, *decoded, ctx);
  if (encoded != bytes) return "the decoded frame encodes to other bytes";
  // Records, from their typed values.
  std::vector<std::string> records = RecordsOfMessage(*decoded);
  std::vector<const JsonValue*> json_records = RecordsOfJson(*fields);
  if (records.size() != json_records.size()) return "record count differs";
  uint64_t schema_id = ctx.schema_id;
  if (const JsonValue* s = fields->Get("schema_id");
      s && std::holds_alternative<net::WriteOp>(*decoded)) {
    schema_id = std::strtoull(s->string.c_str(), nullptr, 10);
  }
  const engine::Schema* schema = Find(schemas, schema_id);
  for (size_t i = 0; i < records.size(); ++i) {
    if (schema == nullptr) return "a record without a known schema";
    if (RecordFromJson(*schema, *json_records[i]) != records[i]) {
      return fmt::format("record {} does not encode to the frame's bytes", i);
    }
  }
  return {};
}

}  // namespace

TEST_CASE("vectors: the committed frames.json is what the codec generates") {
  std::string committed = testing::ReadFileOrEmpty(kVectorsPath);
  INFO(
      "regenerate with: cmake --build <build dir> --target regenerate-vectors (then review "
      "and commit tests/vectors/frames.json)");
  // The first line that differs, rather than 40 KB of JSON twice.
  std::istringstream a(committed), b(cmd::FrameVectorsJson());
  std::string la, lb;
  int line = 0;
  while (true) {
    bool more_a = static_cast<bool>(std::getline(a, la));
    bool more_b = static_cast<bool>(std::getline(b, lb));
    ++line;
    if (!more_a && !more_b) break;
    INFO("line ", line, " committed: ", more_a ? la : "<end>");
    INFO("line ", line, " generated: ", more_b ? lb : "<end>");
    REQUIRE((more_a && more_b && la == lb));
  }
}

TEST_CASE("vectors: every vector decodes to its fields and encodes back to its bytes") {
  auto doc = testing::ParseJson(testing::ReadFileOrEmpty(kVectorsPath));
  REQUIRE(doc);
  const auto schemas = cmd::VectorSchemas();
  const JsonValue* schemas_json = doc->Get("schemas");
  REQUIRE(schemas_json);
  REQUIRE(schemas_json->array.size() == schemas.size());
  for (size_t i = 0; i < schemas.size(); ++i) {
    const JsonValue& s = schemas_json->array[i];
    CHECK(s.Get("id")->number == schemas[i].id);
    CHECK(s.Get("name")->string == schemas[i].name);
    REQUIRE(s.Get("fields")->array.size() == schemas[i].fields.size());
    for (size_t k = 0; k < schemas[i].fields.size(); ++k) {
      CHECK(s.Get("fields")->array[k].Get("name")->string == schemas[i].fields[k].name);
      CHECK(s.Get("fields")->array[k].Get("type")->string ==
            engine::FieldTypeName(schemas[i].fields[k].type));
    }
  }

  const JsonValue* frames = doc->Get("frames");
  REQUIRE(frames);
  std::set<std::string> names;
  std::set<int> types;
  std::set<std::string> error_codes;
  for (const JsonValue& v : frames->array) {
    INFO(v.Get("name")->string);
    CHECK(CheckVector(v, schemas) == "");
    CHECK(names.insert(v.Get("name")->string).second);
    int code = static_cast<int>(v.Get("code")->number);
    types.insert(code);
    if (code == static_cast<int>(net::FrameType::kError)) {
      error_codes.insert(v.Get("fields")->Get("code")->string);
    }
  }
  // Every frame type and every error code of protocol v1.
  for (int t = 0; t < 256; ++t) {
    if (net::FrameTypeName(static_cast<uint8_t>(t)) != "unknown") {
      CHECK_MESSAGE(types.count(t) == 1, "no vector of frame type ", t);
    }
  }
  for (uint64_t c = 1; net::ErrorCodeName(c) != "unknown"; ++c) {
    CHECK_MESSAGE(error_codes.count(std::to_string(c)) == 1, "no ERROR with code ", c);
  }
}

TEST_CASE("vectors: the edge values the clients must survive are there") {
  std::string text = testing::ReadFileOrEmpty(kVectorsPath);
  for (const char* edge : {
           "\"seq\": \"18446744073709551615\"",        // the largest varint
           "\"i64\": \"-9223372036854775808\"",        // zigzag extremes
           "\"i64\": \"9223372036854775807\"",         //
           "\"f64\": \"7ff8000000000000\"",            // NaN
           "\"f64\": \"8000000000000000\"",            // -0.0
           "\"mask\": \"0\"",                          // the empty record
           "\"mask\": \"18446744073709551615\"",       // 64 fields
           "\"mask\": \"31\"",                         // every field of kitchen
           "\"id\": \"\"",                             // the empty id
           "\"had_prev\": 0", "\"had_prev\": 1",       // include_prev both ways
           "\"id\": {\"hex\": ",                       // an id that is not UTF-8
           "window split: notify 3 of 3 (window 991)"  // one window over three frames
       }) {
    CHECK_MESSAGE(text.find(edge) != std::string::npos, "missing: ", edge);
  }
  CHECK(text.find("\"id\": \"" + std::string(255, 'i') + "\"") != std::string::npos);
}

TEST_CASE("vectors: a vector that disagrees with the codec is caught") {
  auto doc = testing::ParseJson(cmd::FrameVectorsJson());
  REQUIRE(doc);
  const auto schemas = cmd::VectorSchemas();
  const JsonValue* frames = doc->Get("frames");
  REQUIRE(frames);
  auto find = [&](const std::string& name) {
    for (const JsonValue& v : frames->array) {
      if (v.Get("name")->string == name) return v;
    }
    FAIL("no vector ", name);
    return JsonValue{};
  };
  JsonValue every = find("assert: every field type (all-field mask)");
  REQUIRE(CheckVector(every, schemas) == "");

  JsonValue wrong_seq = every;
  wrong_seq.object["fields"].object["seq"].string = "2";
  CHECK(CheckVector(wrong_seq, schemas).find("decoded fields differ") == 0);

  JsonValue wrong_value = every;
  wrong_value.object["fields"]
      .object["record"]
      .object["values"]
      .object["count"]
      .object["i64"]
      .string = "-41";
  CHECK(CheckVector(wrong_value, schemas).find("decoded fields differ") == 0);

  JsonValue short_hex = every;
  short_hex.object["hex"].string.resize(short_hex.object["hex"].string.size() - 2);
  CHECK(CheckVector(short_hex, schemas) == "hex is not exactly one frame");

  JsonValue wrong_type = every;
  wrong_type.object["type"].string = "PATCH";
  CHECK(CheckVector(wrong_type, schemas) == "type does not name the code");

  JsonValue notify = find("notify: include_prev, with and without a previous record");
  REQUIRE(CheckVector(notify, schemas) == "");
  JsonValue no_prev = notify;
  no_prev.object["context"].object["include_prev"].boolean = false;
  CHECK(CheckVector(no_prev, schemas) == "the C++ decoder rejects the frame");
}
