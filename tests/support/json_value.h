#pragma once

// A small JSON reader for tests that check what the tools print. Strict: one value,
// nothing but whitespace around it, RFC 8259 syntax.

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace conv::testing {

struct JsonValue {
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject };
  Kind kind = Kind::kNull;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<JsonValue> array;
  std::map<std::string, JsonValue> object;

  // The member `key` of an object, or nullptr.
  const JsonValue* Get(const std::string& key) const;
  bool is(Kind k) const { return kind == k; }
};

// Nothing when `text` is not exactly one well-formed JSON value.
std::optional<JsonValue> ParseJson(std::string_view text);

}  // namespace conv::testing
