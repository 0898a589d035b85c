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

#include <concurrentqueue/lightweightsemaphore.h>

#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "engine/op.h"

namespace conv::engine {

// A checkpoint's request for the next chunk of a partition's claims. The partition
// fills `records` with up to a chunk of entities' CLAIM records, advances the
// cursor, sets `done` after the last one, and signals `ready`.
struct SnapshotRequest {
  size_t schema = 1;  // cursor: schema id, then bucket of that schema's map
  size_t bucket = 0;
  bool done = false;
  std::string records;
  uint64_t count = 0;
  moodycamel::LightweightSemaphore ready;
};

struct PartitionMsg {
  static constexpr uint32_t kNoLane = std::numeric_limits<uint32_t>::max();
  enum class Kind : uint8_t {
    kOps,            // apply `batch` (owned by the message; the partition deletes it)
    kCut,            // the sending lane has sent everything of `window`
    kControl,        // wake up: a request waits, or a walk may go on (feed.h)
    kRetractSource,  // retract every claim of `source` (its lease ran out)
    kResetSource,    // `source` is a new source's id (a forgotten one's before): mark 0
    kStop,           // leave the thread loop
  };
  Kind kind = Kind::kOps;
  uint32_t lane = kNoLane;  // sender, for kOps, kCut, kRetractSource and kResetSource
  uint32_t source = 0;      // kRetractSource, kResetSource
  uint64_t window = 0;      // kCut; the retraction's ts for kRetractSource
  OpBatch* batch = nullptr;
};
using PartitionQueue = moodycamel::BlockingConcurrentQueue<PartitionMsg>;

// A read replica's share of one replicated window for one partition: the owner's
// CLAIM and RETRACT records (wal/records.h) and each record's source id, in order.
struct ReplicatedBatch {
  std::string records;
  std::vector<uint32_t> sources;
};

// What a partition reports when it closes a window: everything it applied in it.
struct PartitionSeal {
  static constexpr uint64_t kAbort = ~uint64_t{0};  // window of the seal Engine::Stop sends
  uint32_t partition = 0;
  uint64_t window = 0;
  uint64_t ops = 0;                // ops applied (duplicates excluded)
  uint64_t claim_changes = 0;      // distinct (entity, source) claims changed: one WAL record each
  uint64_t entity_changes = 0;     // distinct entities changed: one notification each
  uint64_t hot_ops = 0;            // ops on entities changed more than Partition::kHotOps times
  uint64_t hot_claim_changes = 0;  // their claim changes
  std::string wal;                 // CLAIM/RETRACT records of the changed claims (when logging)
  uint64_t wal_records = 0;
  std::string changes;  // entity changes of watched schemas (changes.h)
  uint64_t change_count = 0;
  // Per source, the highest seq applied here in this window.
  std::vector<std::pair<uint32_t, uint64_t>> marks;
  // When the last lane's cut reached the partition (util::MonoNanos): the ops
  // queued before the cut were applied by then, the seal's own work starts.
  uint64_t cut_in_ns = 0;
};
using SealQueue = moodycamel::BlockingConcurrentQueue<PartitionSeal>;

}  // namespace conv::engine
