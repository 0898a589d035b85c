#pragma once

#include <cstdint>
#include <string>
#include <string_view>

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

// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, at most U+10FFFF).
bool IsValidUtf8(std::string_view s);

}  // namespace conv::util
