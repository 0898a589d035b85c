#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/sources.h"
#include "util/log.h"
#include "wal/replica.h"
#include "wal/writer.h"

namespace conv::engine {

// One closed window's changes on their way to the log.
struct WindowBatch {
  uint64_t window = 0;
  std::vector<std::string> fragments;  // encoded records
  uint64_t records = 0;
  uint64_t ops = 0;                                  // ops applied in the window
  std::vector<std::pair<uint32_t, uint64_t>> marks;  // source id, highest seq in the window
};

struct DurabilityCounters {
  wal::WriterStats writer;
  uint64_t records = 0;
  uint64_t disk_full_events = 0;
  bool disk_full = false;
};

// The WAL writer thread: group commit. It takes every window batch queued since its
// last round, appends each as one block, makes them durable with one fdatasync, then
// reports the newest window durable. With a replica, every window is also published
// as it is written, and a confirm thread started by Run() waits for the replica to
// hold each synced round and reports it durable, in round order, while the WAL
// thread goes on with the next rounds. On a full disk it keeps the batches, reports
// disk_full() (writers are refused meanwhile) and retries every kRetryInterval until
// a write succeeds. A Stop() while the disk is full allows one more try; if that
// fails too, Run() logs which windows were not made durable (their ops were never
// acknowledged) and returns. Any other write or fdatasync failure, or a replica's
// failed Confirm, calls `on_fatal` and stops both threads: an ack must never follow
// a failed fdatasync, nor a window the replica may not hold.
class Durability {
 public:
  static constexpr auto kRetryInterval = std::chrono::milliseconds(100);

  // Each durable window's seq marks are noted in `sources` (SourceTable::NoteDurable)
  // before the window is announced.
  Durability(std::string dir, wal::WriterOptions options, SourceTable* sources, util::Logger* log,
             std::function<void(const std::string&)> on_fatal);

  void SetSchemaRecords(std::string records, uint64_t count) {
    writer_.SetSchemaRecords(std::move(records), count);
  }
  // Before Run(): every window is also handed to `replica` and a round is durable
  // only once the replica confirmed it too (null: the local log only).
  void SetReplica(wal::LogReplica* replica) { replica_ = replica; }
  // Any thread.
  void Submit(WindowBatch batch);
  bool disk_full() const { return disk_full_.load(std::memory_order_relaxed); }
  // Writes that failed for lack of space so far (each retry counts).
  uint64_t no_space_failures() const { return no_space_failures_.load(); }
  DurabilityCounters counters() const;
  // The durable window and every source's seq mark as of it, taken together.
  uint64_t DurableMarks(std::unordered_map<uint32_t, uint64_t>* marks) const;
  // Recovery: `source` 0 sets only the durable window.
  void RestoreMark(uint32_t source, uint64_t seq, uint64_t window);
  // The source is forgotten (SourceTable::Forget): its id may be handed out again.
  void ForgetMark(uint32_t source);

  // Called on the WAL thread after each round with the log bytes written so far.
  void SetOnRound(std::function<void(uint64_t)> f) { on_round_ = std::move(f); }
  // The thread's body: returns after Stop() once the queue is written (and, with a
  // replica, confirmed), or once one more try after the Stop() failed for lack of
  // space.
  void Run(const std::function<void(uint64_t)>& on_durable);
  void Stop();

 private:
  const std::string dir_;
  SourceTable* sources_;
  util::Logger* log_;
  std::function<void(const std::string&)> on_fatal_;
  wal::SegmentWriter writer_;  // the thread only
  std::function<void(uint64_t)> on_round_;
  wal::LogReplica* replica_ = nullptr;

  // What a written and synced round leaves to report once it is durable.
  struct Synced {
    uint64_t window = 0;  // the round's newest
    uint64_t records = 0;
    std::vector<std::pair<uint32_t, uint64_t>> marks;
  };

  // Stopping with the disk full: closes the segment and logs the windows of
  // `round` from `failed` on, and those still queued, as not written.
  void GiveUp(const std::deque<WindowBatch>& round, size_t failed, const std::string& why);
  // The WAL thread's rounds (Run without the confirm thread).
  void WriteRounds(const std::function<void(Synced)>& on_synced);
  // The confirm thread: waits for the replica to hold the synced rounds queued by
  // the WAL thread, then reports them durable.
  void ConfirmRounds(const std::function<void(uint64_t)>& on_durable);
  // Notes the rounds' marks and reports the newest window durable.
  void Durable(const std::deque<Synced>& rounds, const std::function<void(uint64_t)>& on_durable);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<WindowBatch> queue_;                 // guarded by mu_
  bool stop_ = false;                             // guarded by mu_
  std::unordered_map<uint32_t, uint64_t> marks_;  // guarded by mu_
  uint64_t durable_window_ = 0;                   // guarded by mu_
  DurabilityCounters counters_;                   // guarded by mu_
  std::deque<Synced> synced_;                     // guarded by mu_: for the confirm thread
  bool writing_done_ = false;                     // guarded by mu_: the WAL thread returned
  std::atomic<bool> halted_{false};               // a write or a Confirm failed
  std::atomic<bool> disk_full_{false};
  std::atomic<uint64_t> no_space_failures_{0};
};

}  // namespace conv::engine
