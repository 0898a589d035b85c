#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace conv::util {

// Appends `s` as a JSON string literal. Bytes that are not valid UTF-8 are written
// as \u00XX escapes of the byte value, so any input gives valid JSON, but such output
// does not tell those bytes from the characters U+0080..U+00FF: use it for text that
// is known to be UTF-8 (names, messages), and AppendJsonText for data.
void AppendJsonString(std::string& out, std::string_view s);
// Appends bytes that are meant as text (entity ids, source names, string values) so
// that they always read back exactly: valid UTF-8 as a JSON string literal, anything
// else as the object {"base64":"..."} holding the bytes in base64 (RFC 4648, padded).
// A reader tells the two apart by the JSON type alone.
void AppendJsonText(std::string& out, std::string_view s);
// Appends a double so that it reads back exactly: finite values in the shortest form
// that round-trips (-0.0 as -0), NaN and the infinities, which JSON numbers cannot
// express, as the strings "NaN", "Infinity" and "-Infinity". A reader knows from the
// schema that the field is an f64, so a string there can only mean one of those.
void AppendJsonDouble(std::string& out, double v);
// Appends bytes as a base64 JSON string.
void AppendJsonBase64(std::string& out, std::string_view bytes);

// Builds one JSON value into a string: commas and nesting are its business, every
// string (keys included) goes through AppendJsonString, so callers never format JSON
// text themselves. Misuse (a value where a key is due, an unbalanced End) is a
// programmer error and is not checked beyond debug assertions.
class JsonWriter {
 public:
  // Text without any whitespace.
  JsonWriter() = default;
  // Text laid out for people to read and diff: a container opened at a nesting depth
  // below `line_depth` (the outermost value is at depth 0) puts each member on a line
  // of its own, indented two spaces a level, and closes on a line of its own; deeper
  // containers stay on one line. Members are separated by ", " on a line, keys
  // followed by ": ".
  static JsonWriter Readable(int line_depth);

  JsonWriter& BeginObject();
  JsonWriter& EndObject();
  JsonWriter& BeginArray();
  JsonWriter& EndArray();
  JsonWriter& Key(std::string_view key);
  JsonWriter& String(std::string_view s);  // AppendJsonString
  JsonWriter& Text(std::string_view s);    // AppendJsonText
  JsonWriter& Base64(std::string_view bytes);
  JsonWriter& Uint(uint64_t v);
  JsonWriter& Int(int64_t v);
  JsonWriter& Bool(bool v);
  JsonWriter& Null();
  // Shortest round-trip form (AppendJsonDouble).
  JsonWriter& Double(double v);
  // `decimals` digits after the point, for reported figures; non-finite values as
  // AppendJsonDouble writes them.
  JsonWriter& Fixed(double v, int decimals);

  // One value written by `append` (an encoder built on the Append* functions above,
  // such as a record's), placed with the commas this writer keeps.
  JsonWriter& Encoded(const std::function<void(std::string&)>& append);

  // Key(key) then the value.
  JsonWriter& Field(std::string_view key, std::string_view s) { return Key(key).String(s); }
  JsonWriter& Field(std::string_view key, const char* s) { return Key(key).String(s); }
  JsonWriter& Field(std::string_view key, uint64_t v) { return Key(key).Uint(v); }
  JsonWriter& Field(std::string_view key, uint32_t v) { return Key(key).Uint(v); }
  JsonWriter& Field(std::string_view key, bool v) { return Key(key).Bool(v); }
  JsonWriter& Field(std::string_view key, double v, int decimals) {
    return Key(key).Fixed(v, decimals);
  }

  const std::string& str() const { return out_; }
  std::string Take() { return std::move(out_); }

 private:
  // Writes the comma a value needs when it is not the first in its container.
  void BeforeValue();

  // Opens a container with `bracket`.
  void Begin(char bracket);
  // Closes the innermost container with `bracket`.
  void End(char bracket);
  // Starts a line at the indentation of `depth` open containers.
  void NewLine(size_t depth);
  // True when the container at `depth` (0: the outermost) puts its members on lines.
  bool OnLines(size_t depth) const { return depth < line_depth_; }

  std::string out_;
  // Per open container: true until its first member was written.
  std::vector<bool> first_;
  bool after_key_ = false;
  // Readable layout (see Readable), else no whitespace.
  bool spaced_ = false;
  size_t line_depth_ = 0;
};

// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, at most U+10FFFF).
bool IsValidUtf8(std::string_view s);

}  // namespace conv::util
