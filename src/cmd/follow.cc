#include "cmd/follow.h"

#include <fmt/format.h>

#include <chrono>

#include "util/clock.h"
#include "wal/replay.h"

namespace conv::cmd {

Follower::Follower(const repl::ReplicationOptions& options, util::Logger& log)
    : options_(options), log_(log) {}

Follower::~Follower() {
  Stop();
}

util::Status Follower::ReconcileSchemas(engine::SchemaSet& schemas) {
  wal::SchemaCollector collector;
  repl::StreamReadReport report;
  if (auto st = repl::ReadReplicatedLog(options_, collector, &report); !st.ok()) {
    return util::Status::Error(fmt::format("--follow: {}", st.message()));
  }
  return schemas.Reconcile(collector.defs);
}

util::Status Follower::Restore(engine::Engine& engine) {
  uint64_t t0 = util::MonoNanos();
  auto st = engine.RestoreFrom([&](wal::RecordVisitor& sink, uint64_t* last, uint64_t* checkpoint) {
    auto read = repl::ReadReplicatedLog(options_, sink, &restored_);
    *last = restored_.last_window;
    *checkpoint = restored_.used_checkpoint ? restored_.checkpoint_window : 0;
    return read;
  });
  if (!st.ok()) return util::Status::Error(fmt::format("--follow: {}", st.message()));
  window_ = restored_.last_window;
  stream_window_ = restored_.last_window;
  auto stats = engine.Stats();
  log_.Info(
      "read stream {} in {} ms: {} entities up to window {} ({}checkpoint at window {}, {} "
      "windows, {} records{})",
      repl::StreamName(options_.cluster_name), (util::MonoNanos() - t0) / 1'000'000,
      stats.totals.entities, restored_.last_window, restored_.used_checkpoint ? "" : "no ",
      restored_.checkpoint_window, restored_.windows, restored_.records,
      restored_.torn_window != 0
          ? fmt::format("; window {} not complete yet", restored_.torn_window)
          : "");
  return util::Status::Ok();
}

util::Status Follower::Start(engine::Engine& engine,
                             std::function<void(const std::string&)> on_fatal) {
  auto tail = repl::StreamTail::Open(options_, restored_.resume_seq, restored_.last_window,
                                     restored_.epoch);
  if (!tail.ok()) return util::Status::Error(fmt::format("--follow: {}", tail.message()));
  tail_ = std::move(tail).value();
  auto reader = repl::OwnerReader::Open(options_);
  if (!reader.ok()) return util::Status::Error(fmt::format("--follow: {}", reader.message()));
  owner_reader_ = std::move(reader).value();
  ReadOwner();
  thread_ = std::thread([this, &engine, on_fatal = std::move(on_fatal)] { Run(engine, on_fatal); });
  return util::Status::Ok();
}

void Follower::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void Follower::ReadOwner() {
  auto rec = owner_reader_->Read();
  if (!rec.ok()) {
    log_.Warn("cannot read the owner record of {}: {}", options_.cluster_name, rec.message());
    return;
  }
  if (!rec->has_value()) return;
  std::lock_guard lock(mu_);
  if ((*rec)->address != owner_ || (*rec)->epoch != owner_epoch_) {
    log_.Info("the owner of {} is {} (epoch {})", options_.cluster_name, (*rec)->address,
              (*rec)->epoch);
  }
  owner_ = (*rec)->address;
  owner_epoch_ = (*rec)->epoch;
  if ((*rec)->revision != owner_revision_) {
    owner_revision_ = (*rec)->revision;
    revision_seen_ = std::chrono::steady_clock::now();
  }
}

std::optional<uint64_t> Follower::StaleRevision(std::chrono::microseconds after) const {
  std::lock_guard lock(mu_);
  if (owner_revision_ == 0 || std::chrono::steady_clock::now() - revision_seen_ < after) {
    return std::nullopt;
  }
  return owner_revision_;
}

void Follower::Run(engine::Engine& engine,
                   const std::function<void(const std::string&)>& on_fatal) {
  auto next_owner_read = std::chrono::steady_clock::now() + owner_read_every_;
  std::string blocks;
  while (!stop_) {
    uint64_t window = 0;
    auto got = tail_->Next(std::chrono::milliseconds(100), &window, &blocks);
    if (!got.ok()) on_fatal(got.message());
    stream_window_ = std::max(stream_window_.load(), tail_->newest_seen());
    if (got.ok() && *got) {
      if (auto st = engine.ApplyReplicatedWindow(window, blocks); !st.ok()) {
        on_fatal(st.message());
      }
      window_ = window;
      ++windows_;
    }
    if (std::chrono::steady_clock::now() >= next_owner_read) {
      ReadOwner();
      next_owner_read = std::chrono::steady_clock::now() + owner_read_every_;
    }
  }
}

std::string Follower::owner_address() const {
  std::lock_guard lock(mu_);
  return owner_;
}

void Follower::AppendStats(net::StatList& stats) const {
  uint64_t epoch;
  {
    std::lock_guard lock(mu_);
    epoch = owner_epoch_;
  }
  stats.insert(stats.end(), {{"role", 2},
                             {"epoch", epoch},
                             {"follow_window", window_.load()},
                             {"follow_stream_window", stream_window_.load()},
                             {"follow_windows", windows_.load()}});
}

}  // namespace conv::cmd
