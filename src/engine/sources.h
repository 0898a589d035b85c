#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "util/status.h"

namespace conv::engine {

constexpr size_t kDefaultMaxSources = 65536;
constexpr size_t kMaxSourceNameBytes = 255;

// Source names and their dense ids (from 1). Interning takes a mutex (once per
// HELLO); Name() and durable_seq() are lock-free, for any thread holding an id that
// Intern returned (the id travels with the ops, which orders the accesses).
class SourceTable {
 public:
  explicit SourceTable(size_t capacity = kDefaultMaxSources);

  // The id of `name`, registering it when new. Fails when the table is full.
  util::Result<uint32_t> Intern(std::string_view name);
  std::string_view Name(uint32_t id) const { return entries_[id].name; }
  size_t size() const { return size_.load(std::memory_order_acquire); }

  // Highest seq of the source applied and durable, whether or not a connection was
  // still there to acknowledge it: once no connection of the source can send more
  // (net::Server's hand-over), every partition's de-duplication mark for the source
  // is at most this, so it is what WELCOME reports as last_applied_seq.
  uint64_t durable_seq(uint32_t id) const {
    return entries_[id].durable_seq.load(std::memory_order_acquire);
  }
  // The source's lease (ms; 0: none): that of its last connection's HELLO, or the
  // logged one after a restart. Set by the session that said HELLO, or by recovery.
  uint64_t lease_ms(uint32_t id) const {
    return entries_[id].lease_ms.load(std::memory_order_acquire);
  }
  // True when it changed (it is logged then).
  bool SetLease(uint32_t id, uint64_t lease_ms);
  // The sources whose lease changed since the last call, with the lease: the
  // coalescer logs them with the next window (LEASE records).
  std::vector<std::pair<uint32_t, uint64_t>> TakeLeaseChanges();
  // Recovery: the logged lease, not to be logged again.
  void RestoreLease(uint32_t id, uint64_t lease_ms) {
    entries_[id].lease_ms.store(lease_ms, std::memory_order_release);
  }

  // Raises durable_seq (never lowers it). Called by whoever makes a window durable,
  // before it announces the window.
  void NoteDurable(uint32_t id, uint64_t seq) {
    auto& mark = entries_[id].durable_seq;
    uint64_t cur = mark.load(std::memory_order_relaxed);
    while (cur < seq && !mark.compare_exchange_weak(cur, seq, std::memory_order_release)) {
    }
  }

 private:
  struct Entry {
    std::string name;
    std::atomic<uint64_t> durable_seq{0};
    std::atomic<uint64_t> lease_ms{0};
  };
  const size_t capacity_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, uint32_t> ids_;  // guarded by mu_
  std::unique_ptr<Entry[]> entries_;               // index 0 unused
  std::atomic<size_t> size_{0};
  std::vector<uint32_t> lease_changes_;  // guarded by mu_
};

}  // namespace conv::engine
