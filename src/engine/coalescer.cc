#include "engine/coalescer.h"

#include <algorithm>

#include "util/clock.h"
#include "wal/records.h"

namespace conv::engine {

Coalescer::Coalescer(std::chrono::microseconds window, size_t partitions, SealQueue* seals,
                     SourceTable& sources, Durability* durability)
    : window_(window),
      partitions_(partitions),
      seals_(seals),
      sources_(sources),
      durability_(durability) {}

void Coalescer::Follow() {
  std::lock_guard lock(mu_);
  follow_ = true;
}

void Coalescer::RestoreWindow(uint64_t window) {
  std::lock_guard lock(mu_);
  started_ = durable_ = window;
  counters_.last_window = counters_.durable_window = window;
}

void Coalescer::AtBoundary(std::function<void(uint64_t)> task) {
  std::lock_guard lock(mu_);
  tasks_.push_back(std::move(task));
  if (!activity_.exchange(true)) activity_at_ = std::chrono::steady_clock::now();
  cv_.notify_all();
}

void Coalescer::MarkDurable(uint64_t w) {
  std::deque<Closed> ready;
  {
    std::lock_guard lock(mu_);
    auto now = std::chrono::steady_clock::now();
    uint64_t longest = 0;
    while (!changes_.empty() && changes_.front().window <= w) {
      auto us = static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(now - changes_.front().cut_at)
              .count());
      counters_.durable_us.Record(us);
      longest = std::max(longest, us - std::min(us, changes_.front().queue_us));
      ready.push_back(std::move(changes_.front()));
      changes_.pop_front();
    }
    if (!ready.empty()) last_durable_us_.store(longest, std::memory_order_relaxed);
  }
  for (auto& c : ready)
    listener_->OnChanges(c.window, std::move(c.changes));
  listener_->OnDurable(w);
  std::lock_guard lock(mu_);
  durable_ = w;
  counters_.durable_window = w;
  cv_.notify_all();
}

void Coalescer::Run(WindowListener* listener) {
  listener_ = listener;
  if (follow_) {
    RunFollower(listener);
    return;
  }
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || flush_now_ || activity_.load(); });
    if (stop_) return;
    if (!flush_now_) {
      // Counted from the first activity, which may have come while the previous
      // window was being sealed.
      // (Not yet stamped when the flag was seen before its setter took the lock.)
      auto now = std::chrono::steady_clock::now();
      auto deadline = (activity_at_ >= cut_at_ ? activity_at_ : now) + window_;
      cv_.wait_until(lock, deadline, [&] { return stop_ || flush_now_; });
      if (stop_) return;
    }
    flush_now_ = false;
    activity_.store(false);
    uint64_t w = ++started_;
    std::vector<std::function<void(uint64_t)>> tasks;
    tasks.swap(tasks_);
    lock.unlock();
    if (!CloseWindow(w, std::move(tasks), nullptr)) return;
    lock.lock();
  }
}

void Coalescer::RunFollower(WindowListener* listener) {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || !replicated_.empty() || !tasks_.empty(); });
    if (stop_) return;
    std::vector<std::function<void(uint64_t)>> tasks;
    tasks.swap(tasks_);
    activity_.store(false);
    if (replicated_.empty()) {
      // Between two replicated windows every partition has sealed `started_` and
      // holds nothing of the next one: a boundary task runs at `started_` now (a
      // partition applies a feed request of a window it already sealed at once).
      uint64_t w = started_;
      lock.unlock();
      for (auto& task : tasks)
        task(w);
      lock.lock();
      continue;
    }
    Replicated next = std::move(replicated_.front());
    replicated_.pop_front();
    started_ = next.window;
    cv_.notify_all();  // room in the queue
    lock.unlock();
    if (!CloseWindow(next.window, std::move(tasks), std::move(next.hand_in))) return;
    lock.lock();
  }
}

void Coalescer::CloseReplicated(uint64_t w, std::function<void(uint64_t)> hand_in) {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return stop_ || replicated_.size() < kReplicatedQueue; });
  if (stop_) return;
  replicated_.push_back({w, std::move(hand_in)});
  cv_.notify_all();
}

bool Coalescer::CloseWindow(uint64_t w, std::vector<std::function<void(uint64_t)>> tasks,
                            std::function<void(uint64_t)> hand_in) {
  WindowListener* listener = listener_;
  std::chrono::steady_clock::time_point cut_at;
  {
    std::lock_guard lock(mu_);
    cut_at = cut_at_ = std::chrono::steady_clock::now();
  }
  const uint64_t cut_ns = util::MonoNanos();
  uint64_t reached_ns = cut_ns;
  for (auto& task : tasks)
    task(w);
  if (hand_in) hand_in(w);
  listener->OnCut(w);
  std::vector<std::string> changes;
  CoalescerCounters sum;
  WindowBatch batch;
  batch.window = w;
  for (size_t got = 0; got < partitions_; ++got) {
    PartitionSeal seal;
    seals_->wait_dequeue(seal);
    if (seal.window == PartitionSeal::kAbort) return false;  // stopping mid-window
    reached_ns = std::max(reached_ns, seal.cut_in_ns);
    sum.window_ops += seal.ops;
    sum.claim_changes += seal.claim_changes;
    sum.entity_changes += seal.entity_changes;
    sum.hot_ops += seal.hot_ops;
    sum.hot_claim_changes += seal.hot_claim_changes;
    if (!seal.changes.empty()) changes.push_back(std::move(seal.changes));
    batch.ops += seal.ops;
    batch.records += seal.wal_records;
    if (!seal.wal.empty()) batch.fragments.push_back(std::move(seal.wal));
    for (const auto& [src, seq] : seal.marks) {
      auto it = std::find_if(batch.marks.begin(), batch.marks.end(),
                             [src = src](const auto& m) { return m.first == src; });
      if (it == batch.marks.end()) {
        batch.marks.emplace_back(src, seq);
      } else if (seq > it->second) {
        it->second = seq;
      }
    }
  }
  {
    std::lock_guard counters_lock(mu_);
    counters_.windows++;
    counters_.window_ops += sum.window_ops;
    counters_.claim_changes += sum.claim_changes;
    counters_.entity_changes += sum.entity_changes;
    counters_.hot_ops += sum.hot_ops;
    counters_.hot_claim_changes += sum.hot_claim_changes;
    counters_.last_window = w;
    auto seal_us = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                             std::chrono::steady_clock::now() - cut_at)
                                             .count());
    counters_.seal_us.Record(seal_us);
    counters_.queue_us.Record((reached_ns - cut_ns) / 1000);
    last_queue_us_.store((reached_ns - cut_ns) / 1000, std::memory_order_relaxed);
    changes_.push_back({w, cut_at, (reached_ns - cut_ns) / 1000, std::move(changes)});
  }
  if (durability_ == nullptr) {
    for (const auto& [src, seq] : batch.marks)
      sources_.NoteDurable(src, seq);
    MarkDurable(w);
  } else {
    std::string sources;
    for (const auto& [src, seq] : batch.marks)
      wal::PutSource(sources, sources_.Name(src), seq);
    batch.records += batch.marks.size();
    // Leases set by HELLOs since the last window: logged, so they survive a restart.
    for (const auto& [name, lease] : sources_.TakeLeaseChanges()) {
      wal::PutLease(sources, name, lease);
      ++batch.records;
    }
    if (!sources.empty()) batch.fragments.push_back(std::move(sources));
    durability_->Submit(std::move(batch));
  }
  return true;
}

uint64_t Coalescer::Flush() {
  std::unique_lock lock(mu_);
  if (follow_) return 0;  // a replica's windows are the owner's: none to close here
  uint64_t target = started_ + 1;
  flush_now_ = true;
  cv_.notify_all();
  if (durability_ == nullptr) {
    cv_.wait(lock, [&] { return durable_ >= target || stop_; });
    return durable_ >= target ? durable_ : 0;
  }
  // With the disk full the window may never become durable: give up once a write
  // tried after this call failed for lack of space.
  const uint64_t failures = durability_->no_space_failures();
  while (!cv_.wait_for(lock, Durability::kRetryInterval,
                       [&] { return durable_ >= target || stop_; })) {
    if (durability_->disk_full() && durability_->no_space_failures() > failures) return 0;
  }
  return durable_ >= target ? durable_ : 0;
}

void Coalescer::Stop() {
  std::lock_guard lock(mu_);
  stop_ = true;
  cv_.notify_all();
}

CoalescerCounters Coalescer::counters() const {
  std::lock_guard lock(mu_);
  return counters_;
}

}  // namespace conv::engine
