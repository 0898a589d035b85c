#include "util/json.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <regex>
#include <string>
#include <string_view>

using conv::util::AppendJsonBase64;
using conv::util::AppendJsonDouble;
using conv::util::AppendJsonString;
using conv::util::AppendJsonText;
using conv::util::IsValidUtf8;

namespace {

std::string JsonString(std::string_view s) {
  std::string out;
  AppendJsonString(out, s);
  return out;
}

std::string JsonDouble(double v) {
  std::string out;
  AppendJsonDouble(out, v);
  return out;
}

std::string Base64(std::string_view s) {
  std::string out;
  AppendJsonBase64(out, s);
  return out;
}

void AppendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A strict RFC 8259 string-literal parser, independent of the code under test: the
// text must be exactly one string literal in valid UTF-8. Returns its UTF-8 value, or
// nullopt when the text is not valid JSON. Surrogate escapes must pair up.
std::optional<std::string> ParseJsonString(std::string_view text) {
  if (!IsValidUtf8(text) || text.size() < 2 || text.front() != '"' || text.back() != '"') {
    return std::nullopt;
  }
  std::string out;
  for (size_t i = 1; i + 1 < text.size();) {
    auto c = static_cast<uint8_t>(text[i]);
    if (c == '"' || c < 0x20) return std::nullopt;
    if (c != '\\') {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    if (i + 2 >= text.size()) return std::nullopt;  // a backslash escaping the closing quote
    char e = text[i + 1];
    i += 2;
    switch (e) {
      case '"':
        out.push_back('"');
        continue;
      case '\\':
        out.push_back('\\');
        continue;
      case '/':
        out.push_back('/');
        continue;
      case 'b':
        out.push_back('\b');
        continue;
      case 'f':
        out.push_back('\f');
        continue;
      case 'n':
        out.push_back('\n');
        continue;
      case 'r':
        out.push_back('\r');
        continue;
      case 't':
        out.push_back('\t');
        continue;
      case 'u':
        break;
      default:
        return std::nullopt;
    }
    auto hex4 = [&](size_t at) -> int {
      if (at + 4 > text.size() - 1) return -1;
      int v = 0;
      for (size_t k = 0; k < 4; ++k) {
        int d = HexDigit(text[at + k]);
        if (d < 0) return -1;
        v = v * 16 + d;
      }
      return v;
    };
    int u = hex4(i);
    if (u < 0) return std::nullopt;
    i += 4;
    uint32_t cp = static_cast<uint32_t>(u);
    if (cp >= 0xdc00 && cp <= 0xdfff) return std::nullopt;
    if (cp >= 0xd800 && cp <= 0xdbff) {
      if (i + 6 > text.size() - 1 || text[i] != '\\' || text[i + 1] != 'u') return std::nullopt;
      int lo = hex4(i + 2);
      if (lo < 0xdc00 || lo > 0xdfff) return std::nullopt;
      cp = 0x10000 + ((cp - 0xd800) << 10) + (static_cast<uint32_t>(lo) - 0xdc00);
      i += 6;
    }
    AppendUtf8(out, cp);
  }
  return out;
}

// What AppendJsonString promises to produce for `s` once parsed back: the valid UTF-8
// sequences unchanged, every other byte as the code point of its value.
std::string ExpectedJsonValue(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    size_t n = 0;
    for (size_t len = 1; len <= 4 && i + len <= s.size(); ++len) {
      if (IsValidUtf8(s.substr(i, len))) {
        n = len;
        break;
      }
    }
    if (n == 0) {
      AppendUtf8(out, static_cast<uint8_t>(s[i]));
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

// Unicode 15, table 3-7: the well-formed UTF-8 byte sequences. A second,
// table-driven definition to hold IsValidUtf8 against.
bool ReferenceUtf8(std::string_view s) {
  auto b = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  auto in = [](uint8_t v, uint8_t lo, uint8_t hi) { return v >= lo && v <= hi; };
  for (size_t i = 0; i < s.size();) {
    uint8_t c = b(i);
    size_t n;
    uint8_t lo = 0x80, hi = 0xbf;  // range of the second byte
    if (c <= 0x7f) {
      n = 1;
    } else if (in(c, 0xc2, 0xdf)) {
      n = 2;
    } else if (c == 0xe0) {
      n = 3, lo = 0xa0;
    } else if (in(c, 0xe1, 0xec) || in(c, 0xee, 0xef)) {
      n = 3;
    } else if (c == 0xed) {
      n = 3, hi = 0x9f;
    } else if (c == 0xf0) {
      n = 4, lo = 0x90;
    } else if (in(c, 0xf1, 0xf3)) {
      n = 4;
    } else if (c == 0xf4) {
      n = 4, hi = 0x8f;
    } else {
      return false;
    }
    if (i + n > s.size()) return false;
    if (n >= 2 && !in(b(i + 1), lo, hi)) return false;
    for (size_t k = 2; k < n; ++k) {
      if (!in(b(i + k), 0x80, 0xbf)) return false;
    }
    i += n;
  }
  return true;
}

std::string B(std::initializer_list<uint8_t> bytes) {
  return std::string(bytes.begin(), bytes.end());
}

}  // namespace

TEST_CASE("json: plain text is quoted unchanged") {
  CHECK(JsonString("") == R"("")");
  CHECK(JsonString("hello world") == R"("hello world")");
  CHECK(JsonString("a/b") == R"("a/b")");
}

TEST_CASE("json: quotes, backslashes and control characters are escaped") {
  CHECK(JsonString("say \"hi\"") == R"("say \"hi\"")");
  CHECK(JsonString("back\\slash") == R"("back\\slash")");
  CHECK(JsonString("a\nb\rc\td") == R"("a\nb\rc\td")");
  CHECK(JsonString(std::string("\0", 1)) == R"("\u0000")");
  CHECK(JsonString("\x01\x08\x0c\x1f") == R"("\u0001\u0008\u000c\u001f")");
  CHECK(JsonString("\x7f") == R"("\u007f")");
  CHECK(JsonString(" ~") == R"(" ~")");
}

TEST_CASE("json: valid multi-byte UTF-8 passes through unescaped") {
  for (const char* s : {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf",
                        "na\xc3\xafve caf\xc3\xa9"}) {
    CAPTURE(s);
    CHECK(JsonString(s) == std::string("\"") + s + "\"");
  }
}

TEST_CASE("json: bytes that are not valid UTF-8 become \\u00XX escapes of their value") {
  CHECK(JsonString("\xff") == R"("\u00ff")");
  CHECK(JsonString("\x80") == R"("\u0080")");
  CHECK(JsonString("a\xc3") == R"("a\u00c3")");                              // truncated sequence
  CHECK(JsonString("\xc0\xaf") == R"("\u00c0\u00af")");                      // overlong '/'
  CHECK(JsonString("\xed\xa0\x80") == R"("\u00ed\u00a0\u0080")");            // surrogate
  CHECK(JsonString("\xf4\x90\x80\x80") == R"("\u00f4\u0090\u0080\u0080")");  // > U+10FFFF
  CHECK(JsonString("\xe2\x82\xac\xe2\x82") == "\"\xe2\x82\xac\\u00e2\\u0082\"");
  CHECK(JsonString("\xc3\xa9\xff\xc3\xa9") == "\"\xc3\xa9\\u00ff\xc3\xa9\"");
}

TEST_CASE("json: any byte string gives a valid JSON string that reads back as promised") {
  std::vector<std::string> inputs = {"",
                                     "\"\\\b\f\n\r\t",
                                     std::string("\0\x01\x7f\x80\xff", 5),
                                     "\xed\xbf\xbf",
                                     "\xf0\x9f\x98",
                                     "\xf0\x9f\x98\x80\xf0"};
  // Every single byte, and every byte after a lead byte that wants more.
  for (int c = 0; c < 256; ++c) {
    inputs.push_back(std::string(1, static_cast<char>(c)));
    inputs.push_back(std::string("\xe2") + static_cast<char>(c) + "\x82");
  }
  const uint32_t seed = 4242;
  MESSAGE("seed = ", seed);
  std::mt19937 rng(seed);
  for (int i = 0; i < 3000; ++i) {
    std::string s(rng() % 24, '\0');
    // Bias towards bytes that make interesting UTF-8.
    static const uint8_t kPool[] = {0x00, 0x1f, '"',  '\\', 'a',  0x7f, 0x80, 0xbf, 0xc0,
                                    0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff};
    for (char& c : s) {
      c = static_cast<char>(rng() % 2 ? kPool[rng() % sizeof(kPool)] : rng() % 256);
    }
    inputs.push_back(std::move(s));
  }
  for (const std::string& s : inputs) {
    CAPTURE(s);
    std::string json = JsonString(s);
    auto parsed = ParseJsonString(json);
    REQUIRE(parsed.has_value());
    CHECK(*parsed == ExpectedJsonValue(s));
    if (IsValidUtf8(s)) CHECK(*parsed == s);
  }
}

namespace {

std::string JsonText(std::string_view s) {
  std::string out;
  AppendJsonText(out, s);
  return out;
}

// Reads AppendJsonText's output back into bytes: a string literal, or
// {"base64":"..."}; nullopt for anything else.
std::optional<std::string> ParseJsonText(std::string_view text) {
  if (!text.empty() && text.front() == '"') return ParseJsonString(text);
  constexpr std::string_view kHead = R"({"base64":")";
  if (text.substr(0, kHead.size()) != kHead || text.substr(text.size() - 2) != "\"}") {
    return std::nullopt;
  }
  std::string_view b64 = text.substr(kHead.size(), text.size() - kHead.size() - 2);
  if (b64.size() % 4 != 0) return std::nullopt;
  static constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < b64.size(); i += 4) {
    uint32_t v = 0;
    int pad = 0;
    for (size_t k = 0; k < 4; ++k) {
      char c = b64[i + k];
      if (c == '=' && i + 4 == b64.size() && k >= 2) {
        ++pad;
        v <<= 6;
        continue;
      }
      size_t d = kAlphabet.find(c);
      if (d == std::string_view::npos || pad > 0) return std::nullopt;
      v = (v << 6) | static_cast<uint32_t>(d);
    }
    out.push_back(static_cast<char>(v >> 16));
    if (pad < 2) out.push_back(static_cast<char>(v >> 8 & 0xff));
    if (pad < 1) out.push_back(static_cast<char>(v & 0xff));
  }
  return out;
}

}  // namespace

TEST_CASE("json: text that is valid UTF-8 prints as a string, anything else as base64") {
  CHECK(JsonText("") == R"("")");
  CHECK(JsonText("p-17") == R"("p-17")");
  CHECK(JsonText("say \"hi\"\n") == R"("say \"hi\"\n")");
  // The bytes ff fe and the two characters U+00FF U+00FE (c3 bf c3 be) differ.
  CHECK(JsonText("\xff\xfe") == R"({"base64":"//4="})");
  CHECK(JsonText("\xc3\xbf\xc3\xbe") == "\"\xc3\xbf\xc3\xbe\"");
  // Every way to be invalid, alone and after valid text.
  CHECK(JsonText("\x80") == R"({"base64":"gA=="})");                  // lone continuation
  CHECK(JsonText("a\xbf") == R"({"base64":"Yb8="})");                 // after ASCII
  CHECK(JsonText("a\xc3") == R"({"base64":"YcM="})");                 // truncated 2-byte
  CHECK(JsonText("\xe2\x82") == R"({"base64":"4oI="})");              // truncated 3-byte
  CHECK(JsonText("\xf0\x9f\x98") == R"({"base64":"8J+Y"})");          // truncated 4-byte
  CHECK(JsonText("\xe2\x82x") == R"({"base64":"4oJ4"})");             // cut by ASCII
  CHECK(JsonText("\xc0\xaf") == R"({"base64":"wK8="})");              // overlong '/'
  CHECK(JsonText("\xe0\x80\xaf") == R"({"base64":"4ICv"})");          // overlong, 3 bytes
  CHECK(JsonText("\xf0\x80\x80\xaf") == R"({"base64":"8ICArw=="})");  // overlong, 4 bytes
  CHECK(JsonText("\xed\xa0\x80") == R"({"base64":"7aCA"})");          // surrogate U+D800
  CHECK(JsonText("\xed\xbf\xbf") == R"({"base64":"7b+/"})");          // surrogate U+DFFF
  CHECK(JsonText("\xf4\x90\x80\x80") == R"({"base64":"9JCAgA=="})");  // U+110000
  CHECK(JsonText("\xf5\x80\x80\x80") == R"({"base64":"9YCAgA=="})");  // lead past f4
  CHECK(JsonText("\xfe") == R"({"base64":"/g=="})");                  // never a lead byte
  CHECK(JsonText("\xe2\x82\xac\xff") == R"({"base64":"4oKs/w=="})");  // after a valid char
  // The largest code points that are valid stay strings.
  CHECK(JsonText("\xf4\x8f\xbf\xbf") == "\"\xf4\x8f\xbf\xbf\"");
  CHECK(JsonText("\xed\x9f\xbf") == "\"\xed\x9f\xbf\"");
}

TEST_CASE("json: AppendJsonText output reads back to the same bytes") {
  std::vector<std::string> inputs = {"", std::string("\0\x01\x7f\x80\xff", 5), "\xff\xfe",
                                     "\xc3\xbf\xc3\xbe"};
  for (int c = 0; c < 256; ++c) {
    inputs.push_back(std::string(1, static_cast<char>(c)));
    inputs.push_back(std::string("\xe2") + static_cast<char>(c) + "\x82");
  }
  const uint32_t seed = 4243;
  MESSAGE("seed = ", seed);
  std::mt19937 rng(seed);
  for (int i = 0; i < 3000; ++i) {
    std::string s(rng() % 24, '\0');
    for (char& c : s)
      c = static_cast<char>(rng() % 256);
    inputs.push_back(std::move(s));
  }
  for (const std::string& s : inputs) {
    CAPTURE(s);
    std::string json = JsonText(s);
    CHECK((json.front() == '"') == IsValidUtf8(s));
    auto back = ParseJsonText(json);
    REQUIRE(back.has_value());
    CHECK(*back == s);
  }
}

TEST_CASE("json: AppendJsonString appends and leaves what was there") {
  std::string out = "[";
  AppendJsonString(out, "a");
  out += ",";
  AppendJsonString(out, "b");
  CHECK(out == R"(["a","b")");
}

TEST_CASE("json: NaN and infinities become the strings NaN, Infinity and -Infinity") {
  CHECK(JsonDouble(std::numeric_limits<double>::quiet_NaN()) == R"("NaN")");
  CHECK(JsonDouble(-std::numeric_limits<double>::quiet_NaN()) == R"("NaN")");
  CHECK(JsonDouble(std::numeric_limits<double>::signaling_NaN()) == R"("NaN")");
  CHECK(JsonDouble(std::numeric_limits<double>::infinity()) == R"("Infinity")");
  CHECK(JsonDouble(-std::numeric_limits<double>::infinity()) == R"("-Infinity")");
  // The extremes next to them stay numbers, and -0.0 keeps its sign.
  CHECK(JsonDouble(std::numeric_limits<double>::max()) == "1.7976931348623157e+308");
  CHECK(JsonDouble(-std::numeric_limits<double>::max()) == "-1.7976931348623157e+308");
  CHECK(JsonDouble(-0.0) == "-0");
  CHECK(std::signbit(std::strtod(JsonDouble(-0.0).c_str(), nullptr)));
  CHECK(JsonDouble(0.0) == "0");
}

TEST_CASE("json: doubles are written in the shortest form that reads back exactly") {
  CHECK(JsonDouble(0.1) == "0.1");
  CHECK(JsonDouble(1.5) == "1.5");
  CHECK(JsonDouble(-2.25) == "-2.25");
  CHECK(JsonDouble(0.30000000000000004) == "0.30000000000000004");
  CHECK(JsonDouble(100) == "100");
  CHECK(JsonDouble(0) == "0");
  CHECK(JsonDouble(1e300) == "1e+300");

  const std::regex number(R"(-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?)");
  std::vector<double> values = {0.0,
                                -0.0,
                                1.0 / 3,
                                2.0 / 3,
                                1e21,
                                1e-7,
                                123456789012345678.0,
                                9007199254740993.0,
                                std::numeric_limits<double>::max(),
                                std::numeric_limits<double>::lowest(),
                                std::numeric_limits<double>::min(),
                                std::numeric_limits<double>::denorm_min(),
                                std::numeric_limits<double>::epsilon()};
  const uint32_t seed = 1234567;
  MESSAGE("seed = ", seed);
  std::mt19937_64 rng(seed);
  while (values.size() < 5000) {
    uint64_t bits = rng();
    double v;
    std::memcpy(&v, &bits, 8);
    if (std::isfinite(v)) values.push_back(v);
  }
  for (double v : values) {
    std::string text = JsonDouble(v);
    CAPTURE(text);
    CHECK(std::regex_match(text, number));
    double back = std::strtod(text.c_str(), nullptr);
    uint64_t want_bits, got_bits;
    std::memcpy(&want_bits, &v, 8);
    std::memcpy(&got_bits, &back, 8);
    CHECK(got_bits == want_bits);
    // Shortest: dropping the last significant digit no longer reads back the same.
    size_t digits_end = text.find_first_of("eE");
    if (digits_end == std::string::npos) digits_end = text.size();
    std::string mantissa = text.substr(0, digits_end);
    if (mantissa.find('.') != std::string::npos && mantissa.size() > 3) {
      std::string shorter = mantissa.substr(0, mantissa.size() - 1) + text.substr(digits_end);
      CHECK(std::strtod(shorter.c_str(), nullptr) != v);
    }
  }
}

TEST_CASE("json: base64 matches the RFC 4648 test vectors") {
  CHECK(Base64("") == R"("")");
  CHECK(Base64("f") == R"("Zg==")");
  CHECK(Base64("fo") == R"("Zm8=")");
  CHECK(Base64("foo") == R"("Zm9v")");
  CHECK(Base64("foob") == R"("Zm9vYg==")");
  CHECK(Base64("fooba") == R"("Zm9vYmE=")");
  CHECK(Base64("foobar") == R"("Zm9vYmFy")");
  CHECK(Base64(B({0xff, 0xfe, 0xfd})) == R"("//79")");
  CHECK(Base64(B({0xfb, 0xff})) == R"("+/8=")");
  CHECK(Base64(std::string("\0", 1)) == R"("AA==")");
}

TEST_CASE("json: base64 of random bytes decodes back to the same bytes") {
  const uint32_t seed = 99;
  MESSAGE("seed = ", seed);
  std::mt19937 rng(seed);
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  for (int round = 0; round < 500; ++round) {
    std::string bytes(rng() % 64, '\0');
    for (char& c : bytes)
      c = static_cast<char>(rng());
    std::string text = Base64(bytes);
    REQUIRE(text.size() >= 2);
    REQUIRE(text.front() == '"');
    REQUIRE(text.back() == '"');
    std::string body = text.substr(1, text.size() - 2);
    REQUIRE(body.size() % 4 == 0);
    CHECK(body.size() == (bytes.size() + 2) / 3 * 4);
    std::string decoded;
    uint32_t acc = 0;
    int bits = 0;
    for (char c : body) {
      if (c == '=') break;
      int v = value(c);
      REQUIRE(v >= 0);
      acc = (acc << 6) | static_cast<uint32_t>(v);
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        decoded.push_back(static_cast<char>((acc >> bits) & 0xff));
      }
    }
    CHECK(decoded == bytes);
  }
}

TEST_CASE("utf8: well-formed text at every sequence-length boundary is accepted") {
  const std::string valid[] = {
      "",
      "ascii",
      std::string("\0", 1),
      B({0x7f}),
      B({0xc2, 0x80}),              // U+0080
      B({0xdf, 0xbf}),              // U+07FF
      B({0xe0, 0xa0, 0x80}),        // U+0800
      B({0xed, 0x9f, 0xbf}),        // U+D7FF, just below the surrogates
      B({0xee, 0x80, 0x80}),        // U+E000, just above them
      B({0xef, 0xbf, 0xbf}),        // U+FFFF
      B({0xf0, 0x90, 0x80, 0x80}),  // U+10000
      B({0xf4, 0x8f, 0xbf, 0xbf}),  // U+10FFFF
  };
  for (const auto& s : valid) {
    CAPTURE(s);
    CHECK(IsValidUtf8(s));
  }
}

TEST_CASE("utf8: overlong forms, surrogates and code points past U+10FFFF are rejected") {
  const std::string invalid[] = {
      B({0xc0, 0x80}),                          // overlong U+0000
      B({0xc1, 0xbf}),                          // overlong U+007F
      B({0xe0, 0x80, 0x80}),                    // overlong U+0000
      B({0xe0, 0x9f, 0xbf}),                    // overlong U+07FF
      B({0xf0, 0x80, 0x80, 0x80}),              // overlong U+0000
      B({0xf0, 0x8f, 0xbf, 0xbf}),              // overlong U+FFFF
      B({0xed, 0xa0, 0x80}),                    // U+D800
      B({0xed, 0xbf, 0xbf}),                    // U+DFFF
      B({0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80}),  // a surrogate pair, CESU-8 style
      B({0xf4, 0x90, 0x80, 0x80}),              // U+110000
      B({0xf5, 0x80, 0x80, 0x80}),
      B({0xf7, 0xbf, 0xbf, 0xbf}),
      B({0xf8, 0x88, 0x80, 0x80, 0x80}),  // old 5-byte form
      B({0xfc, 0x84, 0x80, 0x80, 0x80, 0x80}),
      B({0xfe}),
      B({0xff}),
      B({0x80}),  // lone continuation bytes
      B({0xbf}),
      B({0xc2}),  // truncated sequences
      B({0xe0, 0xa0}),
      B({0xf0, 0x90, 0x80}),
      B({0xc2, 0x41}),  // a lead byte followed by a non-continuation
      B({0xe2, 0x82, 0x41}),
      B({'o', 'k', 0xc3}),  // valid text that ends mid-sequence
  };
  for (const auto& s : invalid) {
    CAPTURE(s);
    CHECK_FALSE(IsValidUtf8(s));
  }
}

TEST_CASE("utf8: IsValidUtf8 agrees with Unicode table 3-7 on every sequence of up to 3 bytes") {
  // Counting mismatches instead of checking each keeps 16 million comparisons fast.
  size_t checked = 0, mismatches = 0;
  std::string first_mismatch;
  auto compare = [&](const std::string& s) {
    ++checked;
    if (IsValidUtf8(s) != ReferenceUtf8(s)) {
      if (mismatches++ == 0) first_mismatch = s;
    }
  };
  std::string s;
  for (int a = 0; a < 256; ++a) {
    s.assign(1, static_cast<char>(a));
    compare(s);
    for (int b = 0; b < 256; ++b) {
      s.assign({static_cast<char>(a), static_cast<char>(b)});
      compare(s);
      // Three-byte strings starting with ASCII are covered by the two-byte ones.
      if (a < 0x80) continue;
      for (int c = 0; c < 256; ++c) {
        s.assign({static_cast<char>(a), static_cast<char>(b), static_cast<char>(c)});
        compare(s);
      }
    }
  }
  // Four-byte sequences: every lead and second byte, with the interesting values of
  // the last two.
  const uint8_t tails[] = {0x00, 0x7f, 0x80, 0xa0, 0xbf, 0xc0, 0xff};
  for (int a = 0xf0; a < 256; ++a) {
    for (int b = 0; b < 256; ++b) {
      for (uint8_t c : tails) {
        for (uint8_t d : tails) {
          s.assign({static_cast<char>(a), static_cast<char>(b), static_cast<char>(c),
                    static_cast<char>(d)});
          compare(s);
        }
      }
    }
  }
  MESSAGE(checked, " byte strings compared");
  CAPTURE(first_mismatch);
  CHECK(mismatches == 0);
}

TEST_CASE("json: the writer places commas and nesting, and escapes keys and values") {
  conv::util::JsonWriter j;
  j.BeginObject();
  j.Field("a\"b", std::string_view("x<\n&\"y"));
  j.Key("list").BeginArray().Uint(1).Int(-2).Bool(true).Null().EndArray();
  j.Key("empty").BeginObject().EndObject();
  j.Key("none").BeginArray().EndArray();
  j.Field("fixed", 1.23456, 2).Key("short").Double(0.1);
  j.Key("nested")
      .BeginArray()
      .BeginObject()
      .Field("k", uint64_t{7})
      .EndObject()
      .BeginObject()
      .EndObject()
      .EndArray();
  j.Key("text").Text(std::string_view("\xff", 1)).Key("b64").Base64("hi");
  j.EndObject();
  CHECK(j.str() ==
        "{\"a\\\"b\":\"x<\\n&\\\"y\",\"list\":[1,-2,true,null],\"empty\":{},\"none\":[],"
        "\"fixed\":1.23,\"short\":0.1,\"nested\":[{\"k\":7},{}],\"text\":{\"base64\":\"/w==\"},"
        "\"b64\":\"aGk=\"}");
}

TEST_CASE("json: the writer's fixed-point numbers stay valid JSON when not finite") {
  conv::util::JsonWriter j;
  j.BeginArray()
      .Fixed(std::numeric_limits<double>::quiet_NaN(), 2)
      .Fixed(std::numeric_limits<double>::infinity(), 1)
      .Fixed(-std::numeric_limits<double>::infinity(), 0)
      .Fixed(-0.0, 1)
      .EndArray();
  CHECK(j.Take() == "[\"NaN\",\"Infinity\",\"-Infinity\",-0.0]");
}

TEST_CASE("json: the readable layout puts the outer levels on lines and the rest on one") {
  auto write = [](conv::util::JsonWriter j) {
    j.BeginObject().Field("n", uint64_t{1});
    j.Key("list").BeginArray();
    j.BeginObject().Field("a\"", "x").Key("b").BeginArray().Uint(1).Uint(2).EndArray().EndObject();
    j.BeginObject().EndObject();
    j.EndArray();
    j.Key("empty").BeginArray().EndArray();
    j.EndObject();
    return j.Take();
  };
  CHECK(write(conv::util::JsonWriter::Readable(2)) ==
        "{\n"
        "  \"n\": 1,\n"
        "  \"list\": [\n"
        "    {\"a\\\"\": \"x\", \"b\": [1, 2]},\n"
        "    {}\n"
        "  ],\n"
        "  \"empty\": []\n"
        "}");
  CHECK(write(conv::util::JsonWriter::Readable(1)) ==
        "{\n"
        "  \"n\": 1,\n"
        "  \"list\": [{\"a\\\"\": \"x\", \"b\": [1, 2]}, {}],\n"
        "  \"empty\": []\n"
        "}");
  CHECK(write(conv::util::JsonWriter::Readable(0)) ==
        "{\"n\": 1, \"list\": [{\"a\\\"\": \"x\", \"b\": [1, 2]}, {}], \"empty\": []}");
  CHECK(write(conv::util::JsonWriter()) ==
        "{\"n\":1,\"list\":[{\"a\\\"\":\"x\",\"b\":[1,2]},{}],\"empty\":[]}");
}
