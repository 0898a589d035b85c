#include "engine/durability.h"

#include <fmt/format.h>

#include <thread>

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

void Durability::ForgetMark(uint32_t source) {
  std::lock_guard lock(mu_);
  marks_.erase(source);
}

void Durability::Stop() {
  std::lock_guard lock(mu_);
  stop_ = true;
  cv_.notify_all();
}

namespace {

std::string Windows(uint64_t first, uint64_t last, std::string_view verb) {
  return first == last ? fmt::format("window {} {}", first, verb)
                       : fmt::format("windows {} to {} {}", first, last, verb);
}

}  // namespace

void Durability::GiveUp(const std::deque<WindowBatch>& round, size_t failed,
                        const std::string& why) {
  uint64_t last = round.back().window;
  {
    std::lock_guard lock(mu_);
    if (!queue_.empty()) last = queue_.back().window;
  }
  // What was written before the failure may reach the disk on close; it was not
  // acknowledged either way (a resent op is then a duplicate, skipped).
  writer_.Close();
  if (log_ == nullptr) return;
  std::string written = failed == 0
                            ? ""
                            : fmt::format(" ({} but not acknowledged)",
                                          Windows(round.front().window, round[failed - 1].window,
                                                  failed == 1 ? "was written" : "were written"));
  log_->Error(
      "stopping with the disk still full ({}): {} to the log and their ops were not "
      "acknowledged; writers resend them to the next server{}",
      why,
      Windows(round[failed].window, last,
              round[failed].window == last ? "was not written" : "were not written"),
      written);
}

void Durability::Run(const std::function<void(uint64_t)>& on_durable) {
  if (replica_ == nullptr) {
    WriteRounds([&](Synced r) { Durable({std::move(r)}, on_durable); });
    return;
  }
  std::thread confirm([&] { ConfirmRounds(on_durable); });
  WriteRounds([&](Synced r) {
    std::lock_guard lock(mu_);
    synced_.push_back(std::move(r));
    cv_.notify_all();
  });
  {
    std::lock_guard lock(mu_);
    writing_done_ = true;
    cv_.notify_all();
  }
  confirm.join();
}

void Durability::ConfirmRounds(const std::function<void(uint64_t)>& on_durable) {
  for (;;) {
    std::deque<Synced> rounds;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return writing_done_ || !synced_.empty(); });
      if (synced_.empty()) return;  // the WAL thread returned and all is confirmed
      rounds.swap(synced_);
    }
    if (halted_) return;
    wal::WriteOutcome c = replica_->Confirm(rounds.back().window);
    if (!c.ok()) {
      halted_ = true;
      on_fatal_(c.message);
      return;
    }
    Durable(rounds, on_durable);
  }
}

void Durability::Durable(const std::deque<Synced>& rounds,
                         const std::function<void(uint64_t)>& on_durable) {
  uint64_t window = rounds.back().window;
  {
    std::lock_guard lock(mu_);
    for (const Synced& r : rounds) {
      counters_.records += r.records;
      for (const auto& [src, seq] : r.marks) {
        uint64_t& m = marks_[src];
        if (seq > m) m = seq;
        if (sources_ != nullptr) sources_->NoteDurable(src, seq);
      }
    }
    durable_window_ = window;
  }
  on_durable(window);
}

void Durability::WriteRounds(const std::function<void(Synced)>& on_synced) {
  std::vector<std::string_view> views;
  while (!halted_) {
    std::deque<WindowBatch> round;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) break;  // stopping with nothing left
      round.swap(queue_);
    }
    bool stopping = false;  // a stop came during a retry wait: one more try only
    for (size_t i = 0; i < round.size(); ++i) {
      WindowBatch& b = round[i];
      views.assign(b.fragments.begin(), b.fragments.end());
      for (;;) {
        wal::WriteOutcome o = writer_.AppendWindow(b.window, b.ops, b.records, views);
        if (o.ok()) {
          if (replica_ != nullptr) replica_->Publish(b.window, writer_.last_blocks());
          break;
        }
        if (o.errc == wal::WriteErrc::kIo) {
          halted_ = true;
          on_fatal_(o.message);
          return;
        }
        no_space_failures_.fetch_add(1);
        if (!disk_full_.exchange(true)) {
          if (log_) log_->Warn("disk full: {}; refusing writes until space returns", o.message);
          std::lock_guard lock(mu_);
          ++counters_.disk_full_events;
        }
        if (stopping) {
          GiveUp(round, i, o.message);
          return;
        }
        std::unique_lock lock(mu_);
        stopping = cv_.wait_for(lock, kRetryInterval, [&] { return stop_; });
      }
    }
    // With a replica, the windows are being copied while the disk syncs; the confirm
    // thread waits for the copy.
    wal::WriteOutcome s = writer_.Sync();
    if (!s.ok()) {
      halted_ = true;
      on_fatal_(s.message);
      return;
    }
    if (disk_full_.exchange(false) && log_) log_->Info("disk space is back; writes resume");
    Synced synced;
    synced.window = round.back().window;
    for (WindowBatch& b : round) {
      synced.records += b.records;
      synced.marks.insert(synced.marks.end(), b.marks.begin(), b.marks.end());
    }
    {
      std::lock_guard lock(mu_);
      counters_.writer = writer_.stats();
    }
    on_synced(std::move(synced));
    if (on_round_) on_round_(writer_.stats().bytes);
  }
  writer_.Close();
}

}  // namespace conv::engine
