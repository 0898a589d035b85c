#include "util/coding.h"

namespace conv::util {

void PutFixed32(std::string& out, uint32_t v) {
  char b[4];
  std::memcpy(b, &v, 4);
  out.append(b, 4);
}

void PutFixed64(std::string& out, uint64_t v) {
  char b[8];
  std::memcpy(b, &v, 8);
  out.append(b, 8);
}

void PutDouble(std::string& out, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, 8);
  PutFixed64(out, bits);
}

size_t EncodeVarint(uint8_t* dst, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    dst[n++] = static_cast<uint8_t>(v | 0x80);
    v >>= 7;
  }
  dst[n++] = static_cast<uint8_t>(v);
  return n;
}

void PutVarint(std::string& out, uint64_t v) {
  uint8_t b[kMaxVarintBytes];
  out.append(reinterpret_cast<const char*>(b), EncodeVarint(b, v));
}

void PutStr(std::string& out, std::string_view s) {
  PutVarint(out, s.size());
  out.append(s);
}

size_t VarintLength(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

bool Reader::U8(uint8_t* v) {
  if (p_ == end_) return Fail();
  *v = *p_++;
  return true;
}

bool Reader::Fixed32(uint32_t* v) {
  if (remaining() < 4) return Fail();
  std::memcpy(v, p_, 4);
  p_ += 4;
  return true;
}

bool Reader::Fixed64(uint64_t* v) {
  if (remaining() < 8) return Fail();
  std::memcpy(v, p_, 8);
  p_ += 8;
  return true;
}

bool Reader::Double(double* v) {
  uint64_t bits;
  if (!Fixed64(&bits)) return false;
  std::memcpy(v, &bits, 8);
  return true;
}

bool Reader::Varint(uint64_t* v) {
  if (p_ != end_ && *p_ < 0x80) {
    *v = *p_++;
    return true;
  }
  uint64_t result = 0;
  for (unsigned shift = 0, i = 0; i < kMaxVarintBytes; ++i, shift += 7) {
    if (p_ == end_) return Fail();
    uint8_t byte = *p_++;
    // The tenth byte may only carry the top bit of a 64-bit value.
    if (i == kMaxVarintBytes - 1 && byte > 1) return Fail();
    result |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if (byte < 0x80) {
      *v = result;
      return true;
    }
  }
  return Fail();
}

bool Reader::Zigzag(int64_t* v) {
  uint64_t u;
  if (!Varint(&u)) return false;
  *v = ZigzagDecode(u);
  return true;
}

bool Reader::Str(std::string_view* v) {
  uint64_t n;
  if (!Varint(&n)) return false;
  if (n > remaining()) return Fail();
  return Bytes(static_cast<size_t>(n), v);
}

bool Reader::Bytes(size_t n, std::string_view* v) {
  if (n > remaining()) return Fail();
  *v = std::string_view(reinterpret_cast<const char*>(p_), n);
  p_ += n;
  return true;
}

bool Reader::Skip(size_t n) {
  if (n > remaining()) return Fail();
  p_ += n;
  return true;
}

}  // namespace conv::util
