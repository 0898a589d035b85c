#include "engine/coalescer.h"

namespace conv::engine {

Coalescer::Coalescer(std::chrono::microseconds window, size_t partitions, SealQueue* seals)
    : window_(window), partitions_(partitions), seals_(seals) {}

void Coalescer::Run(WindowListener* listener) {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || flush_now_ || activity_.load(); });
    if (stop_) return;
    if (!flush_now_) {
      auto deadline = std::chrono::steady_clock::now() + window_;
      cv_.wait_until(lock, deadline, [&] { return stop_ || flush_now_; });
      if (stop_) return;
    }
    flush_now_ = false;
    activity_.store(false);
    uint64_t w = ++started_;
    lock.unlock();

    listener->OnCut(w);
    CoalescerCounters sum;
    for (size_t got = 0; got < partitions_; ++got) {
      PartitionSeal seal;
      seals_->wait_dequeue(seal);
      if (seal.window == PartitionSeal::kAbort) return;  // stopping mid-window
      sum.window_ops += seal.ops;
      sum.claim_changes += seal.claim_changes;
      sum.entity_changes += seal.entity_changes;
    }
    listener->OnDurable(w);

    lock.lock();
    durable_ = w;
    counters_.windows++;
    counters_.window_ops += sum.window_ops;
    counters_.claim_changes += sum.claim_changes;
    counters_.entity_changes += sum.entity_changes;
    counters_.last_window = w;
    counters_.durable_window = w;
    cv_.notify_all();
  }
}

uint64_t Coalescer::Flush() {
  std::unique_lock lock(mu_);
  uint64_t target = started_ + 1;
  flush_now_ = true;
  cv_.notify_all();
  cv_.wait(lock, [&] { return durable_ >= target || stop_; });
  return durable_;
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
