#include "engine/sources.h"

#include <fmt/format.h>

namespace conv::engine {

SourceTable::SourceTable(size_t capacity)
    : capacity_(capacity), entries_(std::make_unique<Entry[]>(capacity + 1)) {}

util::Result<uint32_t> SourceTable::Intern(std::string_view name) {
  std::lock_guard lock(mu_);
  if (auto it = ids_.find(std::string(name)); it != ids_.end()) return it->second;
  size_t n = size_.load(std::memory_order_relaxed);
  if (n >= capacity_) {
    return util::Status::Error(
        fmt::format("the server already knows {} sources (the limit)", capacity_));
  }
  auto id = static_cast<uint32_t>(n + 1);
  entries_[id].name = std::string(name);
  ids_.emplace(std::string(name), id);
  size_.store(n + 1, std::memory_order_release);
  return id;
}

bool SourceTable::SetLease(uint32_t id, uint64_t lease_ms) {
  std::lock_guard lock(mu_);
  if (entries_[id].lease_ms.exchange(lease_ms, std::memory_order_acq_rel) == lease_ms) return false;
  lease_changes_.push_back(id);
  return true;
}

std::vector<std::pair<uint32_t, uint64_t>> SourceTable::TakeLeaseChanges() {
  std::vector<uint32_t> ids;
  {
    std::lock_guard lock(mu_);
    if (lease_changes_.empty()) return {};
    ids.swap(lease_changes_);
  }
  std::vector<std::pair<uint32_t, uint64_t>> out;
  for (uint32_t id : ids) {
    bool seen = false;
    for (const auto& [o, l] : out)
      seen = seen || o == id;
    if (!seen) out.emplace_back(id, lease_ms(id));
  }
  return out;
}

}  // namespace conv::engine
