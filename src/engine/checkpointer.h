#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/coalescer.h"
#include "engine/durability.h"
#include "engine/partition.h"
#include "engine/sources.h"
#include "util/log.h"
#include "util/status.h"
#include "wal/replica.h"

namespace conv::engine {

struct CheckpointCounters {
  uint64_t checkpoints = 0;
  uint64_t last_window = 0;
  uint64_t last_records = 0;
  uint64_t last_bytes = 0;
  uint64_t last_ms = 0;
  uint64_t segments_deleted = 0;
  uint64_t failures = 0;
};

// Writes checkpoints in the background so that replay at start-up stays short.
// A checkpoint is fuzzy: it starts at the durable window W, then asks each
// partition, between its ops, for its claims a chunk at a time (so writers wait at
// most one chunk), then closes a window so that every captured state is durable.
// Replaying the log after W over it gives the exact state; segments holding only
// windows up to W are then deleted.
class Checkpointer {
 public:
  Checkpointer(std::string dir, std::chrono::microseconds interval,
               const std::vector<std::unique_ptr<Partition>>& partitions, Coalescer* coalescer,
               Durability* durability, const SourceTable& sources, util::Logger* log);

  void SetSchemaRecords(std::string records, uint64_t count) {
    schema_records_ = std::move(records);
    schema_count_ = count;
  }
  // Before Run(): each final checkpoint is also handed to `replica` (null: none).
  void SetReplica(wal::LogReplica* replica) { replica_ = replica; }
  // The thread's body: a checkpoint every `interval` while windows keep coming, and
  // sooner when the log has grown by LogGrowthLimit() since the last one began,
  // so that replay at start-up stays bounded however fast writes come.
  void Run();
  // Called by the WAL thread after each round with the bytes written so far.
  void NoteLogBytes(uint64_t total);
  // The thread writes a checkpoint at its next wake-up, as when the log has grown
  // past the limit (a new owner's first: serve, after a takeover).
  void RequestSoon();
  // Log bytes after which a checkpoint is due: the size of the last checkpoint, at
  // least kMinLogGrowth.
  uint64_t LogGrowthLimit() const;
  static constexpr uint64_t kMinLogGrowth = 64ull << 20;
  void Stop();
  // Writes one checkpoint now. Any thread but an I/O thread (it closes a window).
  util::Status CheckpointNow();
  CheckpointCounters counters() const;

 private:
  const std::string dir_;
  const std::chrono::microseconds interval_;
  const std::vector<std::unique_ptr<Partition>>& partitions_;
  Coalescer* coalescer_;
  Durability* durability_;
  const SourceTable& sources_;
  util::Logger* log_;
  wal::LogReplica* replica_ = nullptr;
  std::string schema_records_;
  uint64_t schema_count_ = 0;

  std::mutex run_mu_;  // one checkpoint at a time
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;                // guarded by mu_
  bool due_ = false;                 // guarded by mu_: the log grew, or RequestSoon
  uint64_t log_bytes_at_start_ = 0;  // guarded by mu_: log size when the last checkpoint began
  CheckpointCounters counters_;      // guarded by mu_
};

}  // namespace conv::engine
