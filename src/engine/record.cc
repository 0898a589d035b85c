#include "engine/record.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "util/coding.h"
#include "util/json.h"

namespace conv::engine {

util::Status ParseRecord(const Schema& schema, std::string_view bytes, RecordView* out) {
  size_t consumed = 0;
  util::Status s = ParseRecordPrefix(schema, bytes, out, &consumed);
  if (!s.ok()) return s;
  if (consumed != bytes.size()) {
    return util::Status::Error(
        fmt::format("record: {} unexpected bytes after the last field at offset {}",
                    bytes.size() - consumed, consumed));
  }
  return util::Status::Ok();
}

util::Status ParseRecordPrefix(const Schema& schema, std::string_view bytes, RecordView* out,
                               size_t* consumed) {
  util::Reader r(bytes);
  out->canonical = true;
  uint64_t mask;
  if (!r.Varint(&mask)) {
    return util::Status::Error("record: field mask is missing or malformed at offset 0");
  }
  if ((mask & ~schema.AllFieldsMask()) != 0) {
    int bit = 63 - __builtin_clzll(mask & ~schema.AllFieldsMask());
    return util::Status::Error(
        fmt::format("record: field mask at offset 0 sets field {} but schema '{}' has {} fields",
                    bit, schema.name, schema.fields.size()));
  }
  size_t values_start = r.offset();
  for (uint64_t m = mask; m != 0; m &= m - 1) {
    int i = __builtin_ctzll(m);
    const FieldDef& f = schema.fields[i];
    size_t at = r.offset();
    auto bad = [&](std::string_view what) {
      return util::Status::Error(fmt::format("record: field '{}' ({}) at offset {}: {}", f.name,
                                             FieldTypeName(f.type), at, what));
    };
    switch (f.type) {
      case FieldType::kBool: {
        uint8_t b;
        if (!r.U8(&b)) return bad("truncated");
        if (b > 1) return bad(fmt::format("bool must be 0 or 1, got {}", b));
        break;
      }
      case FieldType::kI64: {
        int64_t v;
        if (!r.Zigzag(&v)) return bad("truncated or malformed varint");
        if (r.offset() - at != util::VarintLength(util::ZigzagEncode(v))) out->canonical = false;
        break;
      }
      case FieldType::kF64: {
        double v;
        if (!r.Double(&v)) return bad("truncated (f64 takes 8 bytes)");
        if (std::isnan(v)) {
          uint64_t bits;
          std::memcpy(&bits, &v, sizeof bits);
          if (bits != kCanonicalNaN) out->canonical = false;
        }
        break;
      }
      case FieldType::kString:
      case FieldType::kBytes: {
        std::string_view s;
        if (!r.Str(&s)) return bad("length is malformed or runs past the end");
        if (f.type == FieldType::kString && !util::IsValidUtf8(s)) return bad("not valid UTF-8");
        if (r.offset() - at - s.size() != util::VarintLength(s.size())) out->canonical = false;
        break;
      }
    }
  }
  out->mask = mask;
  out->values = bytes.substr(values_start, r.offset() - values_start);
  *consumed = r.offset();
  return util::Status::Ok();
}

void CanonicalizeValues(const Schema& schema, RecordView* view, std::string* scratch) {
  std::string_view slices[kMaxFields];
  SliceFields(schema, view->mask, view->values, slices);
  scratch->clear();
  for (uint64_t m = view->mask; m != 0; m &= m - 1) {
    int i = __builtin_ctzll(m);
    FieldType type = schema.fields[i].type;
    Value v = DecodeValue(type, slices[i]);
    if (type == FieldType::kF64 && std::isnan(std::get<double>(v))) {
      util::PutFixed64(*scratch, kCanonicalNaN);
      continue;
    }
    EncodeValue(type, v, *scratch);
  }
  view->values = *scratch;
  view->canonical = true;
}

void SliceFields(const Schema& schema, uint64_t mask, std::string_view values,
                 std::string_view* slices) {
  const char* p = values.data();
  for (uint64_t m = mask; m != 0; m &= m - 1) {
    int i = __builtin_ctzll(m);
    size_t n;
    switch (schema.fields[i].type) {
      case FieldType::kBool:
        n = 1;
        break;
      case FieldType::kF64:
        n = 8;
        break;
      case FieldType::kI64: {
        n = 1;
        while (static_cast<uint8_t>(p[n - 1]) >= 0x80)
          ++n;
        break;
      }
      default: {
        uint64_t len = 0;
        size_t k = 0;
        uint8_t b;
        do {
          b = static_cast<uint8_t>(p[k]);
          len |= static_cast<uint64_t>(b & 0x7f) << (7 * k);
          ++k;
        } while (b >= 0x80);
        n = k + static_cast<size_t>(len);
        break;
      }
    }
    slices[i] = std::string_view(p, n);
    p += n;
  }
}

Value DecodeValue(FieldType type, std::string_view slice) {
  util::Reader r(slice);
  switch (type) {
    case FieldType::kBool: {
      uint8_t b = 0;
      (void)r.U8(&b);
      return b != 0;
    }
    case FieldType::kI64: {
      int64_t v = 0;
      (void)r.Zigzag(&v);
      return v;
    }
    case FieldType::kF64: {
      double v = 0;
      (void)r.Double(&v);
      return v;
    }
    case FieldType::kString: {
      std::string_view s;
      (void)r.Str(&s);
      return std::string(s);
    }
    case FieldType::kBytes: {
      std::string_view s;
      (void)r.Str(&s);
      return Bytes{std::string(s)};
    }
  }
  return false;
}

bool EncodeValue(FieldType type, const Value& v, std::string& out) {
  switch (type) {
    case FieldType::kBool:
      if (!std::holds_alternative<bool>(v)) return false;
      util::PutU8(out, std::get<bool>(v) ? 1 : 0);
      return true;
    case FieldType::kI64:
      if (!std::holds_alternative<int64_t>(v)) return false;
      util::PutZigzag(out, std::get<int64_t>(v));
      return true;
    case FieldType::kF64:
      if (!std::holds_alternative<double>(v)) return false;
      util::PutDouble(out, std::get<double>(v));
      return true;
    case FieldType::kString:
      if (!std::holds_alternative<std::string>(v)) return false;
      util::PutStr(out, std::get<std::string>(v));
      return true;
    case FieldType::kBytes:
      if (!std::holds_alternative<Bytes>(v)) return false;
      util::PutStr(out, std::get<Bytes>(v).data);
      return true;
  }
  return false;
}

util::Status RecordBuilder::Set(size_t index, Value value) {
  if (index >= schema_->fields.size()) {
    return util::Status::Error(fmt::format("schema '{}' has no field {}", schema_->name, index));
  }
  std::string probe;
  if (!EncodeValue(schema_->fields[index].type, value, probe)) {
    return util::Status::Error(fmt::format("field '{}' of schema '{}' is {}",
                                           schema_->fields[index].name, schema_->name,
                                           FieldTypeName(schema_->fields[index].type)));
  }
  for (auto& [i, v] : fields_) {
    if (i == index) {
      v = std::move(value);
      return util::Status::Ok();
    }
  }
  fields_.emplace_back(index, std::move(value));
  return util::Status::Ok();
}

util::Status RecordBuilder::Set(std::string_view field, Value value) {
  int index = schema_->FieldIndex(field);
  if (index < 0) {
    return util::Status::Error(fmt::format("schema '{}' has no field '{}'", schema_->name, field));
  }
  return Set(static_cast<size_t>(index), std::move(value));
}

std::string RecordBuilder::Encode() const {
  auto sorted = fields_;
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  uint64_t mask = 0;
  for (const auto& f : sorted)
    mask |= uint64_t{1} << f.first;
  std::string out;
  util::PutVarint(out, mask);
  for (const auto& [i, v] : sorted)
    EncodeValue(schema_->fields[i].type, v, out);
  return out;
}

void AppendRecordJson(std::string& out, const Schema& schema, uint64_t mask,
                      std::string_view values) {
  std::string_view slices[kMaxFields];
  SliceFields(schema, mask, values, slices);
  out.push_back('{');
  bool first = true;
  for (uint64_t m = mask; m != 0; m &= m - 1) {
    int i = __builtin_ctzll(m);
    if (!first) out.push_back(',');
    first = false;
    util::AppendJsonString(out, schema.fields[i].name);
    out.push_back(':');
    Value v = DecodeValue(schema.fields[i].type, slices[i]);
    switch (schema.fields[i].type) {
      case FieldType::kBool:
        out += std::get<bool>(v) ? "true" : "false";
        break;
      case FieldType::kI64:
        out += fmt::format("{}", std::get<int64_t>(v));
        break;
      case FieldType::kF64:
        util::AppendJsonDouble(out, std::get<double>(v));
        break;
      case FieldType::kString:
        util::AppendJsonText(out, std::get<std::string>(v));
        break;
      case FieldType::kBytes:
        util::AppendJsonBase64(out, std::get<Bytes>(v).data);
        break;
    }
  }
  out.push_back('}');
}

}  // namespace conv::engine
