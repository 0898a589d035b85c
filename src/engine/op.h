#pragma once

// Write ops as they travel from I/O threads to partition threads: appended to an
// OpBatch (one allocation per batch, not per op) and read back in order.
//
// Per op, fixed-width fields in host order (the batch never leaves the process):
//   u8 kind | u32 source | u32 schema | u64 seq | u64 ts | u8 id_len | id
//   | u64 mask | u32 values_len | values

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace conv::engine {

enum class OpKind : uint8_t { kAssert = 1, kPatch = 2, kRetract = 3 };

struct OpView {
  OpKind kind;
  uint32_t source;
  uint32_t schema;
  uint64_t seq;
  uint64_t ts;  // never 0 here: the I/O thread assigns receive time to ts = 0
  std::string_view id;
  uint64_t mask;            // unused for RETRACT
  std::string_view values;  // validated against the schema; empty for RETRACT
};

class OpBatch {
 public:
  void Append(const OpView& op) {
    size_t need = 1 + 4 + 4 + 8 + 8 + 1 + op.id.size() + 8 + 4 + op.values.size();
    size_t at = bytes_.size();
    bytes_.resize(at + need);
    char* p = bytes_.data() + at;
    *p++ = static_cast<char>(op.kind);
    p = Put(p, op.source);
    p = Put(p, op.schema);
    p = Put(p, op.seq);
    p = Put(p, op.ts);
    *p++ = static_cast<char>(static_cast<uint8_t>(op.id.size()));
    std::memcpy(p, op.id.data(), op.id.size());
    p += op.id.size();
    p = Put(p, op.mask);
    p = Put(p, static_cast<uint32_t>(op.values.size()));
    if (!op.values.empty()) std::memcpy(p, op.values.data(), op.values.size());
    ++count_;
  }

  size_t count() const { return count_; }
  bool empty() const { return count_ == 0; }
  size_t bytes() const { return bytes_.size(); }

  // Reads ops in the order they were appended.
  class Reader {
   public:
    explicit Reader(const OpBatch& b) : p_(b.bytes_.data()), end_(p_ + b.bytes_.size()) {}
    bool Next(OpView* op) {
      if (p_ == end_) return false;
      op->kind = static_cast<OpKind>(*p_++);
      p_ = Get(p_, &op->source);
      p_ = Get(p_, &op->schema);
      p_ = Get(p_, &op->seq);
      p_ = Get(p_, &op->ts);
      size_t id_len = static_cast<uint8_t>(*p_++);
      op->id = std::string_view(p_, id_len);
      p_ += id_len;
      p_ = Get(p_, &op->mask);
      uint32_t values_len;
      p_ = Get(p_, &values_len);
      op->values = std::string_view(p_, values_len);
      p_ += values_len;
      return true;
    }

   private:
    const char* p_;
    const char* end_;
  };

 private:
  template <typename T>
  static char* Put(char* p, T v) {
    std::memcpy(p, &v, sizeof(T));
    return p + sizeof(T);
  }
  template <typename T>
  static const char* Get(const char* p, T* v) {
    std::memcpy(v, p, sizeof(T));
    return p + sizeof(T);
  }

  std::string bytes_;
  size_t count_ = 0;
};

}  // namespace conv::engine
