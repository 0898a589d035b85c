#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "engine/checkpointer.h"
#include "engine/coalescer.h"
#include "engine/durability.h"
#include "engine/lane.h"
#include "engine/partition.h"
#include "engine/reads.h"
#include "engine/schema.h"
#include "engine/sources.h"
#include "util/log.h"
#include "wal/replay.h"
#include "wal/replica.h"

namespace conv::engine {

struct EngineOptions {
  uint32_t partitions = 2;
  uint32_t lanes = 1;  // one per I/O thread
  std::chrono::microseconds window{10'000};
  // The write-ahead log. Empty: no log, state lives in memory only (tests and
  // micro-benchmarks); `serve` always has one.
  std::string data_dir;
  bool fsync = true;  // false: --fsync none
  uint64_t segment_bytes = 64ull << 20;
  std::chrono::microseconds checkpoint_interval{60'000'000};  // 0: no background checkpoints
  // How long deleted entities are remembered for subscribers resuming from a window.
  std::chrono::microseconds resume_retention{600'000'000};
  util::Logger* log = nullptr;
  // Recovery applies each partition's records on a thread of its own, while the
  // calling thread reads the log (partitions share nothing); false: all on the
  // calling thread, in the same order per partition.
  bool parallel_recovery = true;
  // A copy of the log off this machine (serve --replicate): every window is
  // acknowledged only once it holds it too, and checkpoints go there as well. Owned
  // by the caller; null: the local log only.
  wal::LogReplica* replica = nullptr;
  // A read replica (serve --follow): no data dir, no writers; its state comes from
  // RestoreFrom and its windows, with the owner's numbers, from
  // ApplyReplicatedWindow only (Coalescer::Follow).
  bool follower = false;
  // Called on the WAL thread when a write or fdatasync fails for any reason but a
  // full disk; must not return normally into the engine (default: log and abort).
  std::function<void(const std::string&)> on_fatal;
};

struct EngineStats {
  PartitionCounters totals;
  CoalescerCounters windows;
  DurabilityCounters wal;
  CheckpointCounters checkpoints;
  uint32_t partitions = 0;
  bool logging = false;
  bool fsync = false;
};

// The engine facade: owns the partitions, their threads, the coalescer, the WAL
// thread and the checkpointer, and routes. It coordinates only; the work is in
// Partition, Lane, Coalescer, Durability and Checkpointer.
class Engine {
 public:
  Engine(const EngineOptions& options, const SchemaSet& schemas, SourceTable& sources);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Rebuilds the state from the data dir (newest checkpoint, then the log), before
  // Start(). The schema set must already be reconciled with the log's
  // (SchemaSet::Reconcile). No-op without a data dir.
  util::Status Recover(bool salvage, wal::RecoveryReport* report);
  // Rebuilds the state from another log before Start(): `read` replays records into
  // the visitor it is given (a replica: repl::ReadReplicatedLog) and sets the newest
  // window it replayed and the checkpoint window it started from (0: none). A follower restores no
  // leases: its owner times them.
  util::Status RestoreFrom(
      const std::function<util::Status(wal::RecordVisitor&, uint64_t* last_window,
                                       uint64_t* checkpoint_window)>& read);
  // Follower, after Start(), one thread, windows in increasing order: applies the
  // owner's window `window` (its blocks, as wal::ReplayWindowImage reads them) as
  // this engine's window of the same number: QUERY sees it once it is sealed,
  // subscribers get it as a durable window. Fails, applying nothing, on a damaged
  // window or one not after the last.
  util::Status ApplyReplicatedWindow(uint64_t window, std::string_view blocks);
  // Starts the threads. `listener` must outlive Stop().
  void Start(WindowListener* listener);
  // Closes a window now and waits until it is durable; see Coalescer::Flush.
  uint64_t Flush() { return coalescer_.Flush(); }
  // Asks for a window to close soon even if no op arrives (SYNC, duplicates and
  // rejected ops need one for their acknowledgement).
  void RequestWindow() { coalescer_.NoteActivity(); }
  // The last window's cut-to-reached time, us (Coalescer::last_queue_us).
  uint64_t last_queue_us() const { return coalescer_.last_queue_us(); }
  // The last durable windows' longest reached-to-durable time, us
  // (Coalescer::last_durable_us).
  uint64_t last_durable_us() const { return coalescer_.last_durable_us(); }
  // Writes a checkpoint now (needs a data dir and running I/O threads).
  util::Status Checkpoint();
  // Asks the checkpoint thread for a checkpoint now, written beside the writes as
  // the periodic ones are. False: there is no such thread (no data dir, or
  // --checkpoint-interval 0).
  bool CheckpointSoon();
  // Stops and joins the threads. Ops not yet in a closed window are dropped: call
  // Flush() first for a graceful stop.
  void Stop();

  Lane& lane(size_t i) { return *lanes_[i]; }
  size_t lane_count() const { return lanes_.size(); }
  uint32_t PartitionOf(uint32_t schema, std::string_view id) const;
  uint32_t partition_count() const { return static_cast<uint32_t>(partitions_.size()); }

  // The change feed (feed.h). Any thread. At the next window boundary W, every
  // partition starts reporting `schema`'s changes from window W+1 on and starts
  // walks[p] (when `walks` is not empty: one per partition) over its state at the
  // end of W; then `on_start(W)` runs (on the coalescer thread).
  void StartFeed(uint32_t schema, std::vector<std::shared_ptr<FeedWalk>> walks,
                 std::function<void(uint64_t)> on_start);
  // A subscription on `schema` ended: one watcher fewer from the next boundary.
  void StopFeed(uint32_t schema);
  // A walk's consumer took output from partition p's walk.
  void WakePartition(uint32_t p) { partitions_[p]->Wake(); }
  // Resuming from a window older than this cannot be a delta: tombstones of later
  // deletions may be gone (retention ran out, or only a checkpoint survived).
  uint64_t retained_from() const;
  uint64_t last_window() const { return coalescer_.counters().last_window; }
  // Any thread.
  bool Query(const Schema& schema, std::string_view id, bool with_claims, QueryResult* out) const;
  // True while the log cannot be written for lack of space: refuse writes.
  bool disk_full() const { return durability_ != nullptr && durability_->disk_full(); }
  EngineStats Stats() const;

  const SchemaSet& schemas() const { return schemas_; }
  SourceTable& sources() { return sources_; }
  const EngineOptions& options() const { return options_; }

  // Forgets the sources that hold no claim in any partition and for which
  // `idle(id)` says nothing else refers to them (no connection, nothing in flight:
  // net::Server knows). Their seq marks go with them; an id handed out again must
  // be reset in the partitions (Lane::ResetSource) before its first op. Returns how
  // many were forgotten.
  size_t ForgetSources(const std::function<bool(uint32_t)>& idle);

 private:
  // Recover and RestoreFrom: `read` replays into the partitions, then `windows()`
  // gives the last window and the checkpoint's (0: none).
  util::Status Restore(const std::function<util::Status(wal::RecordVisitor&)>& read,
                       const std::function<std::pair<uint64_t, uint64_t>()>& windows);

  const EngineOptions options_;
  const SchemaSet& schemas_;
  SourceTable& sources_;
  SealQueue seals_;
  std::unique_ptr<Durability> durability_;  // null without a data dir
  Coalescer coalescer_;
  std::vector<std::unique_ptr<Partition>> partitions_;
  std::vector<std::unique_ptr<Lane>> lanes_;
  std::unique_ptr<Checkpointer> checkpointer_;
  std::vector<std::thread> threads_;
  std::thread durability_thread_;
  std::thread checkpoint_thread_;
  uint64_t recovered_from_ = 0;     // checkpoint window recovery started from
  uint64_t replicated_window_ = 0;  // ApplyReplicatedWindow's caller: the last handed in
};

// The SCHEMA records of `schemas`, for the head of segments and checkpoints.
std::string EncodeSchemaRecords(const SchemaSet& schemas, uint64_t* count);

}  // namespace conv::engine
