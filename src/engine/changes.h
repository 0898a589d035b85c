#pragma once

// Per-window entity changes, as partitions report them for subscriptions: for each
// entity whose converged state differs between the start and the end of a window,
// its kind, the fields that changed, the newest op ts applied to it in the window,
// its record now and (when it existed) at the start of the window.
//
// Encoded back to back in one string per partition and window (host order, never
// leaves the process):
//   u32 schema | u8 kind | u8 id_len | id | u64 changed_mask | u64 ts
//   | u64 mask | u32 values_len | values | u8 had_prev
//   | [had_prev: u64 prev_mask | u32 prev_len | prev_values]

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "engine/schema.h"

namespace conv::engine {

enum class ChangeKind : uint8_t { kUpsert = 1, kDelete = 2 };

struct ChangeView {
  uint32_t schema = 0;
  ChangeKind kind = ChangeKind::kUpsert;
  std::string_view id;
  uint64_t changed_mask = 0;
  uint64_t ts = 0;
  uint64_t mask = 0;  // 0 on delete
  std::string_view values;
  bool had_prev = false;
  uint64_t prev_mask = 0;
  std::string_view prev_values;
};

void AppendChange(std::string& out, const ChangeView& c);

// Reads changes in the order they were appended.
class ChangeReader {
 public:
  explicit ChangeReader(std::string_view bytes) : p_(bytes.data()), end_(p_ + bytes.size()) {}
  bool Next(ChangeView* c);

 private:
  const char* p_;
  const char* end_;
};

// Fields whose presence or value differs between two records of `schema`.
uint64_t ChangedFields(const Schema& schema, uint64_t a_mask, std::string_view a_values,
                       uint64_t b_mask, std::string_view b_values);

// The fields of a record in `field_mask` (0: all): returns their values (a view of
// `values` when nothing is dropped, else of `*scratch`) and sets `*out_mask`.
std::string_view Project(const Schema& schema, uint64_t mask, std::string_view values,
                         uint64_t field_mask, uint64_t* out_mask, std::string* scratch);

}  // namespace conv::engine
