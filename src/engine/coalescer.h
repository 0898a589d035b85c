#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "engine/durability.h"
#include "engine/queues.h"
#include "engine/sources.h"
#include "util/histogram.h"

namespace conv::engine {

// Told when windows close and become durable. Implemented by the server, which
// forwards each call to its I/O threads; called on the coalescer thread.
class WindowListener {
 public:
  virtual ~WindowListener() = default;
  // Window `w` is closing: every lane must call Lane::Cut(w), from its own thread.
  virtual void OnCut(uint64_t w) = 0;
  // Every op that a lane sent before its Cut(w) is applied and durable.
  virtual void OnDurable(uint64_t w) = 0;
  // Window `w` is durable; `changes` are its entity changes of watched schemas
  // (changes.h, one string per partition that had some). Called for every window,
  // in order, before OnDurable of the same window.
  virtual void OnChanges(uint64_t w, std::vector<std::string> changes) {}
};

struct CoalescerCounters {
  uint64_t windows = 0;
  uint64_t window_ops = 0;         // ops applied, summed over closed windows
  uint64_t claim_changes = 0;      // coalesced claim changes (one WAL record each)
  uint64_t entity_changes = 0;     // coalesced entity changes (one notification each)
  uint64_t hot_ops = 0;            // of window_ops, those on entities hot in their window
  uint64_t hot_claim_changes = 0;  // of claim_changes, those of hot entities
  uint64_t last_window = 0;
  uint64_t durable_window = 0;
  // Where a window's time goes after its cut, in us: until every partition reached
  // the cut (the ops queued before it), until every partition sealed it, and until
  // it was durable (then the WAL write and fdatasync).
  util::Histogram queue_us;
  util::Histogram seal_us;
  util::Histogram durable_us;
};

// The window clock. A window opens with the first activity after the previous one
// closed and closes `window` later: the coalescer asks every lane to cut, waits for
// every partition's seal, merges the seals into one WindowBatch for the log and
// hands it to `durability` (without a log, the window is durable at once). With no
// activity it blocks; it never ticks idly.
class Coalescer {
 public:
  Coalescer(std::chrono::microseconds window, size_t partitions, SealQueue* seals,
            SourceTable& sources, Durability* durability);

  // Before Run(): a read replica's coalescer (serve --follow). It closes no window of
  // its own: only those CloseReplicated hands it, with the owner's numbers. A
  // boundary task (AtBoundary) waits for the next of them, or runs at once at the
  // last closed window when none is queued. Flush returns 0 at once.
  void Follow();
  // Follower, any one thread, windows in increasing order: closes window `w` next.
  // `hand_in(w)` runs on the coalescer thread after the boundary tasks and before
  // the lanes are asked to cut: it gives the partitions the window's replicated
  // records (Partition::AddReplicated). Blocks while kReplicatedQueue windows wait.
  void CloseReplicated(uint64_t w, std::function<void(uint64_t)> hand_in);
  static constexpr size_t kReplicatedQueue = 16;

  // Recovery, before Run(): windows continue after `window`.
  void RestoreWindow(uint64_t window);
  // Called (by the durability thread, or by Run without a log) when `w` is durable.
  void MarkDurable(uint64_t w);
  // Any thread: runs `task(w)` on the coalescer thread when window w starts to close,
  // before any lane is asked to cut it, and opens a window soon if none is open.
  // So every partition is still in w when the task runs: what it hands them for
  // window w applies exactly at the end of w.
  void AtBoundary(std::function<void(uint64_t)> task);

  // The coalescer thread's body; returns after Stop().
  void Run(WindowListener* listener);
  // Any thread; cheap when activity is already noted for the open window.
  void NoteActivity() {
    if (!activity_.load(std::memory_order_relaxed) && !activity_.exchange(true)) {
      std::lock_guard lock(mu_);
      // The window lasts `window` from here, even when the previous one is still
      // being sealed: an op never waits more than one window for its cut.
      activity_at_ = std::chrono::steady_clock::now();
      cv_.notify_all();
    }
  }
  // Closes a window at once (not waiting out the window length) and blocks until a
  // window that started closing after this call is durable. Returns that window,
  // or 0 when the coalescer was stopped first or the disk is full (a write tried
  // after this call failed for lack of space): a graceful stop then ends with what
  // is durable.
  // Not from an I/O thread: the cut needs them.
  uint64_t Flush();
  void Stop();
  CoalescerCounters counters() const;
  // Any thread: the last closed window's time from its cut to every partition having
  // reached it (the ops queued before the cut), in us.
  uint64_t last_queue_us() const { return last_queue_us_.load(std::memory_order_relaxed); }
  // Any thread: of the windows the last MarkDurable made durable, the longest time
  // from every partition having reached the cut to durable (seal, log write and
  // fdatasync: what an op waits after its window's cut but for the ops queued
  // before it), in us.
  uint64_t last_durable_us() const { return last_durable_us_.load(std::memory_order_relaxed); }

 private:
  void RunFollower(WindowListener* listener);
  // Runs the boundary tasks and `hand_in`, cuts window w, merges the seals and hands
  // the batch on. False when the engine stopped meanwhile.
  bool CloseWindow(uint64_t w, std::vector<std::function<void(uint64_t)>> tasks,
                   std::function<void(uint64_t)> hand_in);

  const std::chrono::microseconds window_;
  const size_t partitions_;
  SealQueue* seals_;
  SourceTable& sources_;
  Durability* durability_;
  WindowListener* listener_ = nullptr;

  std::atomic<bool> activity_{false};
  std::atomic<uint64_t> last_queue_us_{0};
  std::atomic<uint64_t> last_durable_us_{0};
  std::chrono::steady_clock::time_point activity_at_;  // guarded by mu_: first activity
  std::chrono::steady_clock::time_point cut_at_;       // guarded by mu_: last window's close
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;                                 // guarded by mu_
  bool flush_now_ = false;                            // guarded by mu_
  uint64_t started_ = 0;                              // guarded by mu_: last window whose cut began
  uint64_t durable_ = 0;                              // guarded by mu_
  CoalescerCounters counters_;                        // guarded by mu_
  std::vector<std::function<void(uint64_t)>> tasks_;  // guarded by mu_
  // Closed windows' changes waiting for their window to be durable.
  struct Closed {
    uint64_t window;
    std::chrono::steady_clock::time_point cut_at;
    uint64_t queue_us;  // of it, until every partition had reached the cut
    std::vector<std::string> changes;
  };
  std::deque<Closed> changes_;  // guarded by mu_
  struct Replicated {
    uint64_t window;
    std::function<void(uint64_t)> hand_in;
  };
  bool follow_ = false;                // guarded by mu_
  std::deque<Replicated> replicated_;  // guarded by mu_
};

}  // namespace conv::engine
