#pragma once

// Small helpers the engine tests share: building record values field by field and
// printing records as short, readable text for assertions and failure messages.

#include <fmt/format.h>

#include <map>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include "engine/record.h"
#include "engine/schema.h"

namespace conv::testing {

// Field name -> value; a std::map keeps the text of Show() in a fixed order.
using Fields = std::map<std::string, engine::Value>;

// The mask and the encoded values (no mask, field order) of a record with `fields`.
// A name the schema lacks or a value of the wrong type is a bug in the test, so it
// yields an empty mask with the values "<bad field NAME>", which no check accepts.
inline std::pair<uint64_t, std::string> EncodeFields(const engine::Schema& schema,
                                                     const Fields& fields) {
  std::map<int, const engine::Value*> by_index;
  for (const auto& [name, value] : fields) {
    int i = schema.FieldIndex(name);
    if (i < 0) return {0, "<bad field " + name + ">"};
    by_index[i] = &value;
  }
  uint64_t mask = 0;
  std::string values;
  for (const auto& [i, value] : by_index) {
    if (!engine::EncodeValue(schema.fields[i].type, *value, values)) {
      return {0, "<bad field " + schema.fields[i].name + ">"};
    }
    mask |= uint64_t{1} << i;
  }
  return {mask, values};
}

inline std::string ShowValue(const engine::Value& v) {
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, bool>) {
          return x ? "true" : "false";
        } else if constexpr (std::is_same_v<T, std::string>) {
          return fmt::format("\"{}\"", x);
        } else if constexpr (std::is_same_v<T, engine::Bytes>) {
          // Long values are cut, to keep failure messages readable.
          std::string hex = "0x";
          for (size_t i = 0; i < x.data.size() && i < 16; ++i) {
            hex += fmt::format("{:02x}", static_cast<uint8_t>(x.data[i]));
          }
          if (x.data.size() > 16) hex += fmt::format("...({} bytes)", x.data.size());
          return hex;
        } else {
          return fmt::format("{}", x);
        }
      },
      v);
}

// `{name="ann" x=1.5 health=90}`: the present fields in field order.
// REQUIRES: `values` is a valid encoding of `mask` for `schema`.
inline std::string Show(const engine::Schema& schema, uint64_t mask, std::string_view values) {
  std::string_view slices[engine::kMaxFields];
  engine::SliceFields(schema, mask, values, slices);
  std::string out = "{";
  for (uint64_t m = mask; m != 0; m &= m - 1) {
    int i = __builtin_ctzll(m);
    if (out.size() > 1) out += ' ';
    out += schema.fields[i].name;
    out += '=';
    out += ShowValue(engine::DecodeValue(schema.fields[i].type, slices[i]));
  }
  out += '}';
  return out;
}

// Show() of the record EncodeFields(schema, fields) builds.
inline std::string Show(const engine::Schema& schema, const Fields& fields) {
  auto [mask, values] = EncodeFields(schema, fields);
  if (mask == 0 && !values.empty()) return values;
  return Show(schema, mask, values);
}

}  // namespace conv::testing
