#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
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
//
// A source can be forgotten (Forget) once nothing refers to its id: no connection,
// no claim, nothing in flight. Its id is then handed to the next new name, with a
// seq mark of 0; the partitions reset their own mark when told (Lane::ResetSource)
// before the new source's first op. Readers of every id (a checkpoint) hold Lock().
class SourceTable {
 public:
  explicit SourceTable(size_t capacity = kDefaultMaxSources);

  // The id of `name`, registering it when new (`*reused`: the id was a forgotten
  // source's). Fails when the table is full.
  util::Result<uint32_t> Intern(std::string_view name, bool* reused = nullptr);
  // An empty name for a forgotten id that was not handed out again.
  std::string_view Name(uint32_t id) const { return entries_[id].name; }
  // The highest id handed out: ids are in [1, size()], some of them maybe forgotten.
  size_t size() const { return size_.load(std::memory_order_acquire); }
  // Names known now.
  size_t known() const { return known_.load(std::memory_order_relaxed); }
  size_t capacity() const { return capacity_; }
  uint64_t forgotten() const { return forgotten_.load(std::memory_order_relaxed); }

  // Forgets every known source for which `forgettable(id)` (called under the
  // table's lock) is true: its name, seq mark and lease. Returns how many.
  size_t Forget(const std::function<bool(uint32_t)>& forgettable);
  // While held, no source is forgotten or registered.
  std::unique_lock<std::mutex> Lock() const { return std::unique_lock(mu_); }

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
  // The sources whose lease changed since the last call (names), with the lease:
  // the coalescer logs them with the next window (LEASE records).
  std::vector<std::pair<std::string, uint64_t>> TakeLeaseChanges();
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
  std::atomic<size_t> known_{0};
  std::atomic<uint64_t> forgotten_{0};
  std::vector<uint32_t> free_;           // guarded by mu_: forgotten ids, handed out first
  std::vector<uint32_t> lease_changes_;  // guarded by mu_
};

}  // namespace conv::engine
