#include "engine/durability.h"

namespace conv::engine {

Durability::Durability(std::string dir, wal::WriterOptions options, SourceTable* sources,
                       util::Logger* log, std::function<void(const std::string&)> on_fatal)
    : dir_(std::move(dir)),
      sources_(sources),
      log_(log),
      on_fatal_(std::move(on_fatal)),
      writer_(dir_, options) {}

void Durability::Submit(WindowBatch batch) {
  std::lock_guard lock(mu_);
  queue_.push_back(std::move(batch));
  cv_.notify_all();
}

DurabilityCounters Durability::counters() const {
  std::lock_guard lock(mu_);
  DurabilityCounters c = counters_;
  c.disk_full = disk_full();
  return c;
}

uint64_t Durability::DurableMarks(std::unordered_map<uint32_t, uint64_t>* marks) const {
  std::lock_guard lock(mu_);
  *marks = marks_;
  return durable_window_;
}

void Durability::RestoreMark(uint32_t source, uint64_t seq, uint64_t window) {
  std::lock_guard lock(mu_);
  if (source != 0) {
    uint64_t& m = marks_[source];
    if (seq > m) m = seq;
  }
  if (window > durable_window_) durable_window_ = window;
}

void Durability::Stop() {
  std::lock_guard lock(mu_);
  stop_ = true;
  cv_.notify_all();
}

void Durability::Run(const std::function<void(uint64_t)>& on_durable) {
  std::vector<std::string_view> views;
  for (;;) {
    std::deque<WindowBatch> round;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) break;  // stopping with nothing left
      round.swap(queue_);
    }
    for (WindowBatch& b : round) {
      views.assign(b.fragments.begin(), b.fragments.end());
      for (;;) {
        wal::WriteOutcome o = writer_.AppendWindow(b.window, b.ops, b.records, views);
        if (o.ok()) break;
        if (o.errc == wal::WriteErrc::kIo) {
          on_fatal_(o.message);
          return;
        }
        if (!disk_full_.exchange(true)) {
          if (log_) log_->Warn("disk full: {}; refusing writes until space returns", o.message);
          std::lock_guard lock(mu_);
          ++counters_.disk_full_events;
        }
        std::unique_lock lock(mu_);
        if (cv_.wait_for(lock, kRetryInterval, [&] { return stop_; })) return;
      }
    }
    wal::WriteOutcome s = writer_.Sync();
    if (!s.ok()) {
      on_fatal_(s.message);
      return;
    }
    if (disk_full_.exchange(false) && log_) log_->Info("disk space is back; writes resume");
    uint64_t window = round.back().window;
    {
      std::lock_guard lock(mu_);
      for (const WindowBatch& b : round) {
        counters_.records += b.records;
        for (const auto& [src, seq] : b.marks) {
          uint64_t& m = marks_[src];
          if (seq > m) m = seq;
          if (sources_ != nullptr) sources_->NoteDurable(src, seq);
        }
      }
      durable_window_ = window;
      counters_.writer = writer_.stats();
    }
    on_durable(window);
    if (on_round_) on_round_(writer_.stats().bytes);
  }
  writer_.Close();
}

}  // namespace conv::engine
