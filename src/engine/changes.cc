#include "engine/changes.h"

#include <cstring>
#include <string_view>

#include "engine/record.h"

namespace conv::engine {

namespace {

template <typename T>
char* Put(char* p, T v) {
  std::memcpy(p, &v, sizeof(T));
  return p + sizeof(T);
}
char* PutBytes(char* p, std::string_view s) {
  if (!s.empty()) std::memcpy(p, s.data(), s.size());
  return p + s.size();
}
template <typename T>
const char* Get(const char* p, T* v) {
  std::memcpy(v, p, sizeof(T));
  return p + sizeof(T);
}

}  // namespace

void AppendChange(std::string& out, const ChangeView& c) {
  // Every entity of a walk and every change of a watched seal: one resize, then the
  // fields written in place, not one append per field.
  size_t n = sizeof(c.schema) + 2 + c.id.size() + sizeof(c.changed_mask) + sizeof(c.ts) +
             sizeof(c.mask) + sizeof(uint32_t) + c.values.size() + 1;
  if (c.had_prev) n += sizeof(c.prev_mask) + sizeof(uint32_t) + c.prev_values.size();
  size_t at = out.size();
  out.resize(at + n);
  char* p = out.data() + at;
  p = Put(p, c.schema);
  p = Put(p, static_cast<uint8_t>(c.kind));
  p = Put(p, static_cast<uint8_t>(c.id.size()));
  p = PutBytes(p, c.id);
  p = Put(p, c.changed_mask);
  p = Put(p, c.ts);
  p = Put(p, c.mask);
  p = Put(p, static_cast<uint32_t>(c.values.size()));
  p = PutBytes(p, c.values);
  p = Put(p, static_cast<uint8_t>(c.had_prev ? 1 : 0));
  if (c.had_prev) {
    p = Put(p, c.prev_mask);
    p = Put(p, static_cast<uint32_t>(c.prev_values.size()));
    PutBytes(p, c.prev_values);
  }
}

bool ChangeReader::Next(ChangeView* c) {
  if (p_ == end_) return false;
  uint8_t kind, id_len, had_prev;
  uint32_t len;
  p_ = Get(p_, &c->schema);
  p_ = Get(p_, &kind);
  c->kind = static_cast<ChangeKind>(kind);
  p_ = Get(p_, &id_len);
  c->id = std::string_view(p_, id_len);
  p_ += id_len;
  p_ = Get(p_, &c->changed_mask);
  p_ = Get(p_, &c->ts);
  p_ = Get(p_, &c->mask);
  p_ = Get(p_, &len);
  c->values = std::string_view(p_, len);
  p_ += len;
  p_ = Get(p_, &had_prev);
  c->had_prev = had_prev != 0;
  c->prev_mask = 0;
  c->prev_values = {};
  if (c->had_prev) {
    p_ = Get(p_, &c->prev_mask);
    p_ = Get(p_, &len);
    c->prev_values = std::string_view(p_, len);
    p_ += len;
  }
  return true;
}

uint64_t ChangedFields(const Schema& schema, uint64_t a_mask, std::string_view a_values,
                       uint64_t b_mask, std::string_view b_values) {
  uint64_t changed = a_mask ^ b_mask;
  uint64_t both = a_mask & b_mask;
  if (both == 0) return changed;
  std::string_view a[kMaxFields];
  std::string_view b[kMaxFields];
  SliceFields(schema, a_mask, a_values, a);
  SliceFields(schema, b_mask, b_values, b);
  for (uint64_t m = both; m != 0; m &= m - 1) {
    int i = __builtin_ctzll(m);
    if (a[i] != b[i]) changed |= uint64_t{1} << i;
  }
  return changed;
}

std::string_view Project(const Schema& schema, uint64_t mask, std::string_view values,
                         uint64_t field_mask, uint64_t* out_mask, std::string* scratch) {
  if (field_mask == 0 || (mask & ~field_mask) == 0) {
    *out_mask = mask;
    return values;
  }
  std::string_view f[kMaxFields];
  SliceFields(schema, mask, values, f);
  scratch->clear();
  *out_mask = mask & field_mask;
  for (uint64_t m = *out_mask; m != 0; m &= m - 1)
    scratch->append(f[__builtin_ctzll(m)]);
  return *scratch;
}

}  // namespace conv::engine
