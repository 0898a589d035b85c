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

}  // namespace conv::engine
