#include "engine/checkpointer.h"

#include <fmt/format.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "util/clock.h"
#include "wal/checkpoint.h"
#include "wal/records.h"

namespace conv::engine {

Checkpointer::Checkpointer(std::string dir, std::chrono::microseconds interval,
                           const std::vector<std::unique_ptr<Partition>>& partitions,
                           Coalescer* coalescer, Durability* durability, const SourceTable& sources,
                           util::Logger* log)
    : dir_(std::move(dir)),
      interval_(interval),
      partitions_(partitions),
      coalescer_(coalescer),
      durability_(durability),
      sources_(sources),
      log_(log) {}

void Checkpointer::Stop() {
  std::lock_guard lock(mu_);
  stop_ = true;
  cv_.notify_all();
}

CheckpointCounters Checkpointer::counters() const {
  std::lock_guard lock(mu_);
  return counters_;
}

uint64_t Checkpointer::LogGrowthLimit() const {
  return std::max(kMinLogGrowth, counters_.last_bytes);
}

void Checkpointer::NoteLogBytes(uint64_t total) {
  std::lock_guard lock(mu_);
  if (!due_ && total - log_bytes_at_start_ > LogGrowthLimit()) {
    due_ = true;
    cv_.notify_all();
  }
}

void Checkpointer::RequestSoon() {
  std::lock_guard lock(mu_);
  due_ = true;
  cv_.notify_all();
}

void Checkpointer::Run() {
  for (;;) {
    {
      std::unique_lock lock(mu_);
      if (cv_.wait_for(lock, interval_, [&] { return stop_ || due_; }) && stop_) return;
      due_ = false;
      std::unordered_map<uint32_t, uint64_t> ignored;
      if (durability_->DurableMarks(&ignored) == counters_.last_window) continue;  // idle
    }
    if (auto st = CheckpointNow(); !st.ok()) {
      std::lock_guard lock(mu_);
      if (stop_) return;  // interrupted by the stop: nothing failed
      if (log_) log_->Warn("checkpoint failed: {}", st.message());
      ++counters_.failures;
    }
  }
}

util::Status Checkpointer::CheckpointNow() {
  std::lock_guard one_at_a_time(run_mu_);
  uint64_t t0 = util::MonoNanos();
  std::unordered_map<uint32_t, uint64_t> marks;
  std::string source_records;
  uint64_t n_source_records = 0;
  uint64_t start;
  {
    // No source is forgotten or registered meanwhile: each mark goes with its name.
    auto names = sources_.Lock();
    start = durability_->DurableMarks(&marks);
    for (const auto& [src, seq] : marks) {
      wal::PutSource(source_records, sources_.Name(src), seq);
      ++n_source_records;
    }
    // Every lease, as of now: a LEASE record of a later window replaces it at replay.
    for (uint32_t src = 1; src <= sources_.size(); ++src) {
      if (uint64_t lease = sources_.lease_ms(src); lease != 0 && !sources_.Name(src).empty()) {
        wal::PutLease(source_records, sources_.Name(src), lease);
        ++n_source_records;
      }
    }
  }
  {
    std::lock_guard lock(mu_);
    log_bytes_at_start_ = durability_->counters().writer.bytes;
  }
  auto writer = wal::CheckpointWriter::Begin(dir_, start, schema_records_, schema_count_);
  if (!writer.ok()) return writer.status();
  if (auto st = (*writer)->Add(source_records, n_source_records); !st.ok()) return st;

  // A chunk of every partition in turn, asked of all of them at once: they fill their
  // chunks in parallel, and the file interleaves the partitions, so that recovery
  // (which applies each partition's records on a thread of its own) has work for
  // every partition from the start.
  std::vector<std::unique_ptr<SnapshotRequest>> reqs;
  for (size_t p = 0; p < partitions_.size(); ++p)
    reqs.push_back(std::make_unique<SnapshotRequest>());
  std::vector<size_t> asked;
  for (bool more = true; more;) {
    more = false;
    asked.clear();
    for (size_t p = 0; p < partitions_.size(); ++p) {
      if (reqs[p]->done) continue;
      partitions_[p]->RequestSnapshot(reqs[p].get());
      asked.push_back(p);
    }
    util::Status st = util::Status::Ok();
    for (size_t p : asked) {
      reqs[p]->ready.wait();  // every request asked is answered before they go
      if (st.ok()) st = (*writer)->Add(reqs[p]->records, reqs[p]->count);
      more = more || !reqs[p]->done;
    }
    if (!st.ok()) return st;
  }
  // Every captured state came from an op applied before this point; once a window
  // closed after it is durable, the checkpoint holds nothing the log does not.
  if (coalescer_->Flush() == 0)
    return util::Status::Error(
        "the window closing the checkpoint did not become durable (stopping, or the disk is "
        "full)");
  if (auto st = (*writer)->Finish(); !st.ok()) return st;
  uint64_t deleted = 0;
  if (auto st = wal::RetireBefore(dir_, start, &deleted); !st.ok()) return st;
  if (replica_ != nullptr) {
    if (auto st = replica_->PublishCheckpoint(start, (*writer)->path()); !st.ok()) {
      return util::Status::Error(
          fmt::format("the checkpoint at window {} is written locally but not replicated: {}",
                      start, st.message()));
    }
  }
  uint64_t ms = (util::MonoNanos() - t0) / 1'000'000;
  {
    std::lock_guard lock(mu_);
    ++counters_.checkpoints;
    counters_.last_window = start;
    counters_.last_records = (*writer)->records();
    counters_.last_bytes = (*writer)->bytes();
    counters_.last_ms = ms;
    counters_.segments_deleted += deleted;
  }
  if (log_) {
    log_->Info("checkpoint at window {}: {} records, {} bytes in {} ms; {} old segments deleted",
               start, (*writer)->records(), (*writer)->bytes(), ms, deleted);
  }
  return util::Status::Ok();
}

}  // namespace conv::engine
