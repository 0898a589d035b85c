#pragma once

#include <concurrentqueue/blockingconcurrentqueue.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "engine/coalescer.h"
#include "engine/op.h"
#include "engine/partition.h"

namespace conv::engine {

// One I/O thread's path into the partitions. Ops are collected per partition and
// handed over in bulk by Flush(); Cut(w) flushes and then tells every partition that
// this lane has sent all of window w. Not thread-safe: each lane belongs to one
// I/O thread, which is what makes its ops and its cut markers arrive in order.
class Lane {
 public:
  // Ops queued in one partition past which writers should pause reading.
  static constexpr int64_t kCongestedBacklog = 1 << 18;

  Lane(uint32_t index, const std::vector<std::unique_ptr<Partition>>& partitions,
       Coalescer* coalescer);
  ~Lane();
  Lane(const Lane&) = delete;
  Lane& operator=(const Lane&) = delete;

  void Add(uint32_t partition, const OpView& op);
  void Flush();
  void Cut(uint64_t window);
  // Asks for a window to close soon even if no op was added (SYNC, duplicates and
  // rejected ops need one for their acknowledgement).
  void RequestWindow() { coalescer_->NoteActivity(); }
  // Every partition retracts all claims of `source` (whose lease ran out) in the
  // open window, after everything this lane sent before.
  void RetractSource(uint32_t source, uint64_t ts);
  // Before the first op of a source whose id was a forgotten source's: every
  // partition's seq mark for it goes back to 0.
  void ResetSource(uint32_t source);
  // The window what this lane sends now belongs to: the one after its last cut.
  uint64_t open_window() const { return last_cut_ + 1; }
  // True when some partition has more than kCongestedBacklog ops waiting.
  bool Congested() const;
  uint32_t index() const { return index_; }

 private:
  // Sends `msg` to every partition after everything added so far.
  void Broadcast(PartitionMsg msg);

  const uint32_t index_;
  std::vector<Partition*> partitions_;
  std::vector<moodycamel::ProducerToken> tokens_;
  std::vector<OpBatch*> open_;  // per partition, null when nothing is pending
  Coalescer* coalescer_;
  uint64_t last_cut_ = 0;
};

}  // namespace conv::engine
