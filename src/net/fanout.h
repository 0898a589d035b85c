#pragma once

// The fanout thread: turns durable windows' entity changes into NOTIFY frames for
// subscribers, serves bootstraps and resumes, and conflates for slow subscribers.
// docs/protocol.md says what a subscriber sees; this is how.
//
//   partitions --seal.changes--> coalescer --(durable)--> Fanout::OnChanges
//   partitions --FeedWalk chunks (feed.h)------------->  Fanout (bootstrap/resume)
//   Fanout --FeedSink pieces--> session (its I/O thread writes them, gathered)
//
// Per window, subscribers are grouped by shape (schema, prefix, projection,
// include_prev): the NOTIFY body is encoded once per shape and shared; each
// subscriber gets only its own frame header. A subscriber whose unsent output
// passes the backlog limit stops getting per-window frames: its changes are merged
// per entity (latest state, OR-ed changed fields, first prev) and sent when it has
// drained (conflation). Subscribers of one shape that start to conflate in the same
// window share one merge (they start only at every kConflationEpoch-th window, so
// that those falling behind together do): the fanout's work per window grows with
// the shapes and merges, not with the subscribers, however many fall behind. The same merge holds
// live changes while a bootstrap is being sent, and between the flushes of an interval_ms
// subscription.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/changes.h"
#include "engine/engine.h"
#include "net/messages.h"
#include "util/histogram.h"

namespace conv::net {

// One connection's subscription output: filled by the fanout thread, written by the
// session on its I/O thread.
class FeedSink {
 public:
  struct Piece {
    std::string header;
    std::shared_ptr<const std::string> body;  // shared among subscribers of a shape
    size_t bytes() const { return header.size() + (body ? body->size() : 0); }
  };

  // `wake` is called (from the fanout thread) when pieces arrive and the session was
  // not yet told; it must hand over to the session's thread.
  FeedSink(std::function<void()> wake, std::atomic<uint64_t>* backlog_total)
      : wake_(std::move(wake)), total_(backlog_total) {}
  ~FeedSink() { total_->fetch_sub(bytes_.load()); }

  // Fanout thread. `ends_sub`: this piece is the last of subscription `ends_sub`,
  // which the server ended (its ERROR): the session forgets the id.
  void Push(std::string header, std::shared_ptr<const std::string> body, uint64_t ends_sub = 0);
  // Bytes queued or being written.
  size_t backlog() const { return bytes_.load(std::memory_order_relaxed); }
  // The fanout wants Fanout::Drained once the backlog falls below half the limit.
  std::atomic<bool> drain_wanted{false};
  // Fanout thread only: bytes of merged changes its subscriptions hold (conflating,
  // paced by interval_ms, or live changes during a snapshot). Bounded by the backlog
  // limit too: past it, the subscription that grew it is ended.
  size_t held_bytes = 0;

  // Session thread: moves the queued pieces out, and the subscriptions the server
  // ended since the last call into `ended`.
  void Take(std::vector<Piece>* out, std::vector<uint64_t>* ended);
  // Session thread: `n` bytes of taken pieces were written.
  void Written(size_t n) {
    bytes_.fetch_sub(n, std::memory_order_relaxed);
    total_->fetch_sub(n, std::memory_order_relaxed);
  }

 private:
  std::function<void()> wake_;
  std::atomic<uint64_t>* total_;
  std::atomic<size_t> bytes_{0};
  std::mutex mu_;
  std::deque<Piece> pieces_;     // guarded by mu_
  std::vector<uint64_t> ended_;  // guarded by mu_
  bool wake_pending_ = false;    // guarded by mu_
};

struct FanoutCounters {
  std::atomic<uint64_t> subscribers{0};          // live subscriptions
  std::atomic<uint64_t> subscriptions_total{0};  // ever
  std::atomic<uint64_t> notifications{0};        // changes sent in NOTIFY frames
  std::atomic<uint64_t> notify_frames{0};
  std::atomic<uint64_t> snapshot_entries{0};
  std::atomic<uint64_t> snapshots{0};           // SNAPSHOT_END sent after a walk
  std::atomic<uint64_t> resets{0};              // of them, full state for a resume that was too old
  std::atomic<uint64_t> conflations{0};         // times a subscriber fell behind
  std::atomic<uint64_t> conflated_changes{0};   // changes merged into a later one
  std::atomic<uint64_t> shared_conflations{0};  // of conflations, joining another's merge
  std::atomic<uint64_t> backlog_bytes{0};       // unsent subscription output, all sinks
  std::atomic<uint64_t> stalled_snapshots{0};   // snapshots ended: the subscriber read none of them
  std::atomic<uint64_t> held_bytes{0};          // merged changes held, all subscriptions
  std::atomic<uint64_t> held_overflows{0};      // subscriptions ended: held past the limit
};

class Fanout {
 public:
  // `backlog_limit`: a subscriber's unsent bytes past which it is conflated.
  // `stall_limit`: how long a snapshot (bootstrap or resume) may wait for its
  // subscriber to read before it is ended with ERROR(sub, overloaded): a walk
  // in progress keeps its partitions from rehashing and pruning tombstones.
  static constexpr std::chrono::microseconds kDefaultStallLimit{30'000'000};
  Fanout(engine::Engine& engine, size_t backlog_limit,
         std::chrono::microseconds stall_limit = kDefaultStallLimit);
  ~Fanout();
  Fanout(const Fanout&) = delete;
  Fanout& operator=(const Fanout&) = delete;

  void Start();
  void Stop();

  // Any thread. `s` was validated by the session (schema, mask, limits).
  void Subscribe(std::shared_ptr<FeedSink> sink, const net::Subscribe& s);
  void Unsubscribe(const FeedSink* sink, uint64_t sub);
  void CloseSink(const FeedSink* sink);
  // The sink's backlog fell below half the limit after drain_wanted was set.
  void Drained(const FeedSink* sink);
  // Window `w` is durable; its changes (engine changes.h).
  void OnChanges(uint64_t w, std::vector<std::string> changes);

  FanoutCounters& counters() { return counters_; }
  // Op ts to NOTIFY queued, µs, of per-window changes.
  util::Histogram LagMicros() const;
  // From a durable window's changes handed to the fanout to its NOTIFY frames queued
  // for every subscriber in step, in us.
  util::Histogram DelayMicros() const;
  size_t backlog_limit() const { return limit_; }

 private:
  struct Held;
  struct HeldSet;
  struct Sub;
  using SubPtr = std::shared_ptr<Sub>;

  void Post(std::function<void()> f);
  void Run();
  void Begin(const SubPtr& s, bool walk, uint64_t since, bool reset);
  // `sink`'s snapshot ended (or its subscription did): starts its next queued one.
  void BeginQueued(const FeedSink* sink);
  void Remove(const SubPtr& sub);
  // Cancels `s`'s walks and its watch on the schema (Engine::StopFeed).
  void EndFeed(Sub& s);
  void Pump(const SubPtr& s);
  void MaybeFinish(const SubPtr& s);
  // Merges c into `held`; returns how much its Held::Bytes grew (or shrank).
  int64_t Merge(HeldSet& held, const engine::Schema& schema, const engine::ChangeView& c);
  // Adds `delta` bytes to what `s` holds (and its sink, and the counter).
  void CountHeld(Sub& s, int64_t delta);
  void ClearHeld(Sub& s);
  void FlushHeld(Sub& s);
  // Ends `s` with ERROR(sub, overloaded) carrying `why`, after what is queued.
  void EndOverloaded(const SubPtr& s, std::string why);
  // NOTIFY frames for `bodies` (entries of windows up to s.held_window): every frame
  // but the last names the window already delivered, the last s.held_window, so a
  // subscriber resuming from the window of the last NOTIFY it read misses nothing.
  void SendNotify(
      Sub& s, const std::vector<std::pair<std::shared_ptr<const std::string>, uint64_t>>& bodies);
  void Window(uint64_t w, const std::vector<engine::ChangeView>& changes);
  // Appends c as a NOTIFY change for `s`'s shape; false when the shape drops it.
  bool AppendChange(const Sub& s, const engine::ChangeView& c, std::string* body);
  // Asks the session to report when `s`'s sink has drained.
  void WantDrain(Sub& s);
  uint64_t NextDue() const;
  void FlushDue();
  // Ends the snapshots whose subscriber read nothing for stall_limit_.
  void EndStalled();

  engine::Engine& engine_;
  const size_t limit_;
  const uint64_t stall_limit_us_;
  FanoutCounters counters_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> events_;  // guarded by mu_
  bool stop_ = false;                         // guarded by mu_
  std::thread thread_;

  // Fanout thread only.
  std::vector<SubPtr> subs_;
  uint64_t durable_ = 0;
  std::string scratch_, prev_scratch_;

  mutable std::mutex lag_mu_;
  util::Histogram lag_us_;    // guarded by lag_mu_
  util::Histogram delay_us_;  // guarded by lag_mu_
};

}  // namespace conv::net
