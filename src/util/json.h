#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace conv::util {

// Appends `s` as a JSON string literal. Bytes that are not valid UTF-8 are written
// as \u00XX escapes of the byte value, so any input gives valid JSON.
void AppendJsonString(std::string& out, std::string_view s);
// Appends a finite double so that it reads back exactly; NaN and infinities, which
// JSON cannot express, become null.
void AppendJsonDouble(std::string& out, double v);
// Appends bytes as a base64 JSON string.
void AppendJsonBase64(std::string& out, std::string_view bytes);

// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, at most U+10FFFF).
bool IsValidUtf8(std::string_view s);

}  // namespace conv::util
