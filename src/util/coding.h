#pragma once

// The one set of byte-level encode/decode helpers used by every binary format
// (frames, records, later WAL and checkpoints). Little-endian; varint is unsigned
// LEB128 of at most 10 bytes; zigzag maps i64 onto varint.
//
// Decoding goes through Reader, which never reads past its end: every getter returns
// false once the input is exhausted or malformed, and the Reader stays failed.

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace conv::util {

constexpr size_t kMaxVarintBytes = 10;

inline void PutU8(std::string& out, uint8_t v) {
  out.push_back(static_cast<char>(v));
}
void PutFixed32(std::string& out, uint32_t v);
void PutFixed64(std::string& out, uint64_t v);
void PutDouble(std::string& out, double v);
void PutVarint(std::string& out, uint64_t v);
inline uint64_t ZigzagEncode(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}
inline int64_t ZigzagDecode(uint64_t v) {
  return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1);
}
inline void PutZigzag(std::string& out, int64_t v) {
  PutVarint(out, ZigzagEncode(v));
}
// varint length, then the bytes.
void PutStr(std::string& out, std::string_view s);
size_t VarintLength(uint64_t v);

// Writes `v` into `dst`, which must have kMaxVarintBytes of room; returns bytes written.
size_t EncodeVarint(uint8_t* dst, uint64_t v);
inline void EncodeFixed32(uint8_t* dst, uint32_t v) {
  std::memcpy(dst, &v, 4);
}
inline uint32_t DecodeFixed32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

class Reader {
 public:
  Reader(const uint8_t* p, size_t n) : begin_(p), p_(p), end_(p + n) {}
  explicit Reader(std::string_view s)
      : Reader(reinterpret_cast<const uint8_t*>(s.data()), s.size()) {}

  bool U8(uint8_t* v);
  bool Fixed32(uint32_t* v);
  bool Fixed64(uint64_t* v);
  bool Double(double* v);
  bool Varint(uint64_t* v);
  bool Zigzag(int64_t* v);
  // A varint-length-prefixed byte string; the view points into the input.
  bool Str(std::string_view* v);
  // The next `n` bytes.
  bool Bytes(size_t n, std::string_view* v);
  bool Skip(size_t n);

  bool ok() const { return ok_; }
  bool done() const { return p_ == end_; }
  size_t remaining() const { return static_cast<size_t>(end_ - p_); }
  size_t offset() const { return static_cast<size_t>(p_ - begin_); }
  std::string_view rest() const { return {reinterpret_cast<const char*>(p_), remaining()}; }
  const uint8_t* pos() const { return p_; }

 private:
  bool Fail() {
    ok_ = false;
    p_ = end_;
    return false;
  }
  const uint8_t* begin_;
  const uint8_t* p_;
  const uint8_t* end_;
  bool ok_ = true;
};

}  // namespace conv::util
