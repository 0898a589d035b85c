#include "support/json_value.h"

#include <cstdlib>

namespace conv::testing {

const JsonValue* JsonValue::Get(const std::string& key) const {
  if (kind != Kind::kObject) return nullptr;
  auto it = object.find(key);
  return it == object.end() ? nullptr : &it->second;
}

namespace {

class Parser {
 public:
  explicit Parser(std::string_view s) : s_(s) {}

  bool Value(JsonValue* v, int depth = 0) {
    if (depth > 64) return false;
    Space();
    if (p_ >= s_.size()) return false;
    char c = s_[p_];
    if (c == '{') return Object(v, depth);
    if (c == '[') return Array(v, depth);
    if (c == '"') {
      v->kind = JsonValue::Kind::kString;
      return String(&v->string);
    }
    if (Word("true")) {
      v->kind = JsonValue::Kind::kBool;
      v->boolean = true;
      return true;
    }
    if (Word("false")) {
      v->kind = JsonValue::Kind::kBool;
      return true;
    }
    if (Word("null")) return true;
    return Number(v);
  }
  bool AtEnd() {
    Space();
    return p_ == s_.size();
  }

 private:
  void Space() {
    while (p_ < s_.size() &&
           (s_[p_] == ' ' || s_[p_] == '\t' || s_[p_] == '\n' || s_[p_] == '\r')) {
      ++p_;
    }
  }
  bool Word(std::string_view w) {
    if (s_.substr(p_, w.size()) != w) return false;
    p_ += w.size();
    return true;
  }
  bool Object(JsonValue* v, int depth) {
    v->kind = JsonValue::Kind::kObject;
    ++p_;
    Space();
    if (p_ < s_.size() && s_[p_] == '}') {
      ++p_;
      return true;
    }
    for (;;) {
      Space();
      std::string key;
      if (p_ >= s_.size() || s_[p_] != '"' || !String(&key)) return false;
      Space();
      if (p_ >= s_.size() || s_[p_] != ':') return false;
      ++p_;
      JsonValue member;
      if (!Value(&member, depth + 1)) return false;
      if (!v->object.emplace(std::move(key), std::move(member)).second) return false;
      Space();
      if (p_ >= s_.size()) return false;
      if (s_[p_] == '}') {
        ++p_;
        return true;
      }
      if (s_[p_] != ',') return false;
      ++p_;
    }
  }
  bool Array(JsonValue* v, int depth) {
    v->kind = JsonValue::Kind::kArray;
    ++p_;
    Space();
    if (p_ < s_.size() && s_[p_] == ']') {
      ++p_;
      return true;
    }
    for (;;) {
      JsonValue item;
      if (!Value(&item, depth + 1)) return false;
      v->array.push_back(std::move(item));
      Space();
      if (p_ >= s_.size()) return false;
      if (s_[p_] == ']') {
        ++p_;
        return true;
      }
      if (s_[p_] != ',') return false;
      ++p_;
    }
  }
  static int Hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  bool Hex4(unsigned* out) {
    if (p_ + 4 > s_.size()) return false;
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      int h = Hex(s_[p_ + i]);
      if (h < 0) return false;
      v = v * 16 + static_cast<unsigned>(h);
    }
    p_ += 4;
    *out = v;
    return true;
  }
  static void Utf8(unsigned cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xc0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xe0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else {
      out->push_back(static_cast<char>(0xf0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    }
  }
  bool String(std::string* out) {
    ++p_;  // the opening quote
    while (p_ < s_.size()) {
      char c = s_[p_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (p_ >= s_.size()) return false;
      char e = s_[p_++];
      switch (e) {
        case '"':
          out->push_back('"');
          break;
        case '\\':
          out->push_back('\\');
          break;
        case '/':
          out->push_back('/');
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          unsigned cp;
          if (!Hex4(&cp)) return false;
          if (cp >= 0xd800 && cp < 0xdc00) {
            unsigned lo;
            if (!Word("\\u") || !Hex4(&lo) || lo < 0xdc00 || lo >= 0xe000) return false;
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          } else if (cp >= 0xdc00 && cp < 0xe000) {
            return false;
          }
          Utf8(cp, out);
          break;
        }
        default:
          return false;
      }
    }
    return false;
  }
  bool Number(JsonValue* v) {
    size_t start = p_;
    if (p_ < s_.size() && s_[p_] == '-') ++p_;
    auto digits = [&] {
      size_t from = p_;
      while (p_ < s_.size() && s_[p_] >= '0' && s_[p_] <= '9')
        ++p_;
      return p_ > from;
    };
    if (p_ < s_.size() && s_[p_] == '0') {
      ++p_;
    } else if (!digits()) {
      return false;
    }
    if (p_ < s_.size() && s_[p_] == '.') {
      ++p_;
      if (!digits()) return false;
    }
    if (p_ < s_.size() && (s_[p_] == 'e' || s_[p_] == 'E')) {
      ++p_;
      if (p_ < s_.size() && (s_[p_] == '+' || s_[p_] == '-')) ++p_;
      if (!digits()) return false;
    }
    v->kind = JsonValue::Kind::kNumber;
    v->number = std::strtod(std::string(s_.substr(start, p_ - start)).c_str(), nullptr);
    return true;
  }

  std::string_view s_;
  size_t p_ = 0;
};

}  // namespace

std::optional<JsonValue> ParseJson(std::string_view text) {
  Parser p(text);
  JsonValue v;
  if (!p.Value(&v) || !p.AtEnd()) return std::nullopt;
  return v;
}

}  // namespace conv::testing
