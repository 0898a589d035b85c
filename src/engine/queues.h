#pragma once

// The typed queues between engine threads, declared in one place.
//
//   I/O thread (Lane) --PartitionMsg--> partition thread   (one queue per partition)
//   partition thread  --PartitionSeal--> coalescer thread  (one queue)
//
// Every queue is a moodycamel BlockingConcurrentQueue: consumers block when idle.
// Ordering is FIFO per producer token only, which is all the engine relies on: a
// lane's ops and its cut marker reach a partition in the order the lane sent them.

#include <concurrentqueue/blockingconcurrentqueue.h>

#include <cstdint>

#include "engine/op.h"

namespace conv::engine {

struct PartitionMsg {
  enum class Kind : uint8_t {
    kOps,   // apply `batch` (owned by the message; the partition deletes it)
    kCut,   // the sending lane has sent everything of `window`
    kStop,  // leave the thread loop
  };
  Kind kind = Kind::kOps;
  uint64_t window = 0;
  OpBatch* batch = nullptr;
};
using PartitionQueue = moodycamel::BlockingConcurrentQueue<PartitionMsg>;

// What a partition reports when it closes a window: everything it applied in it.
struct PartitionSeal {
  static constexpr uint64_t kAbort = ~uint64_t{0};  // window of the seal Engine::Stop sends
  uint32_t partition = 0;
  uint64_t window = 0;
  uint64_t ops = 0;             // ops applied (duplicates excluded)
  uint64_t claim_changes = 0;   // distinct (entity, source) claims changed: one WAL record each
  uint64_t entity_changes = 0;  // distinct entities changed: one notification each
};
using SealQueue = moodycamel::BlockingConcurrentQueue<PartitionSeal>;

}  // namespace conv::engine
