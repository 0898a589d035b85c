#pragma once

// Drives a partition on the calling thread, with no partition thread running: what
// Run() does for each message, called directly. For in-process benchmarks and tests
// that apply batches and seal windows themselves; the server never uses it.

#include <cstdint>
#include <utility>

#include "engine/partition.h"

namespace conv::engine {

class PartitionDriver {
 public:
  explicit PartitionDriver(Partition& p) : p_(p) {}

  void Apply(const OpBatch& batch) { p_.Apply(batch); }
  PartitionSeal Seal(uint64_t window) { return p_.Seal(window); }
  void Watch(uint32_t schema, int delta) { p_.Watch(schema, delta); }
  // `r` as the partition applies it at the end of `window` (a walk in it starts).
  void StartFeed(uint64_t window, FeedRequest r) {
    p_.AddFeedRequest(window, std::move(r));
    p_.ApplyFeedRequests(window);
  }
  // One chunk of every walk with room for output.
  void AdvanceWalks() { p_.AdvanceWalks(); }

 private:
  Partition& p_;
};

}  // namespace conv::engine
