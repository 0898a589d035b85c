#include "engine/sources.h"

#include <fmt/format.h>

#include <algorithm>

namespace conv::engine {

SourceTable::SourceTable(size_t capacity)
    : capacity_(capacity), entries_(std::make_unique<Entry[]>(capacity + 1)) {}

util::Result<uint32_t> SourceTable::Intern(std::string_view name, bool* reused) {
  std::lock_guard lock(mu_);
  if (reused != nullptr) *reused = false;
  if (auto it = ids_.find(std::string(name)); it != ids_.end()) return it->second;
  uint32_t id;
  if (!free_.empty()) {
    id = free_.back();
    free_.pop_back();
    if (reused != nullptr) *reused = true;
  } else {
    size_t n = size_.load(std::memory_order_relaxed);
    if (n >= capacity_) {
      return util::Status::Error(fmt::format(
          "the server already knows {} sources (the limit, serve --max-sources), and none of "
          "them can be forgotten yet",
          capacity_));
    }
    id = static_cast<uint32_t>(n + 1);
    size_.store(n + 1, std::memory_order_release);
  }
  entries_[id].name = std::string(name);
  ids_.emplace(std::string(name), id);
  known_.fetch_add(1, std::memory_order_relaxed);
  return id;
}

size_t SourceTable::Forget(const std::function<bool(uint32_t)>& forgettable) {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (uint32_t id = 1; id <= size_.load(std::memory_order_relaxed); ++id) {
    Entry& e = entries_[id];
    if (e.name.empty() || !forgettable(id)) continue;
    ids_.erase(e.name);
    e.name.clear();
    e.durable_seq.store(0, std::memory_order_relaxed);
    e.lease_ms.store(0, std::memory_order_relaxed);
    std::erase(lease_changes_, id);
    free_.push_back(id);
    ++n;
  }
  known_.fetch_sub(n, std::memory_order_relaxed);
  forgotten_.fetch_add(n, std::memory_order_relaxed);
  return n;
}

bool SourceTable::SetLease(uint32_t id, uint64_t lease_ms) {
  std::lock_guard lock(mu_);
  if (entries_[id].lease_ms.exchange(lease_ms, std::memory_order_acq_rel) == lease_ms) return false;
  lease_changes_.push_back(id);
  return true;
}

std::vector<std::pair<std::string, uint64_t>> SourceTable::TakeLeaseChanges() {
  std::lock_guard lock(mu_);  // names are read under it: Forget may run meanwhile
  std::vector<std::pair<std::string, uint64_t>> out;
  std::vector<uint32_t> done;
  for (uint32_t id : lease_changes_) {
    if (std::find(done.begin(), done.end(), id) != done.end()) continue;
    done.push_back(id);
    out.emplace_back(entries_[id].name, lease_ms(id));
  }
  lease_changes_.clear();
  return out;
}

}  // namespace conv::engine
