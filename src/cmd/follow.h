#pragma once

// serve --follow: a read replica of a cluster name (docs/replication.md, "Read
// replicas"). Its state comes from the owner's stream: the newest checkpoint and
// every later window at start-up, then each new window as it is stored, applied
// with the owner's window number (Engine::ApplyReplicatedWindow). It keeps no
// data dir of its own.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "engine/engine.h"
#include "engine/schema.h"
#include "net/messages.h"
#include "repl/jetstream.h"
#include "repl/ownership.h"
#include "repl/stream_reader.h"
#include "util/log.h"
#include "util/status.h"

namespace conv::cmd {

class Follower {
 public:
  Follower(const repl::ReplicationOptions& options, util::Logger& log);
  ~Follower();
  Follower(const Follower&) = delete;
  Follower& operator=(const Follower&) = delete;

  // Before the engine exists: the schema ids of the stream's newest checkpoint
  // (none: the configured order, as a new owner has).
  util::Status ReconcileSchemas(engine::SchemaSet& schemas);
  // Before engine.Start(): the newest checkpoint and every later complete window.
  util::Status Restore(engine::Engine& engine);
  // After engine.Start(): follows the stream in a thread of its own, applying each
  // window; reads the owner record every second. `on_fatal` gets what stopped it
  // (a damaged window, one missing); it must not return.
  util::Status Start(engine::Engine& engine, std::function<void(const std::string&)> on_fatal);
  void Stop();

  // The owner's address as last read ("" before any owner claimed the name).
  std::string owner_address() const;
  // How often the owner record is read (before Start; default 1 s).
  void set_owner_read_interval(std::chrono::milliseconds every) { owner_read_every_ = every; }
  // A standby's question: the record's revision when it has not changed for
  // `after` (its owner stopped refreshing it); nullopt otherwise, or when there is
  // no record.
  std::optional<uint64_t> StaleRevision(std::chrono::microseconds after) const;
  // role, epoch, follow_window, follow_stream_window, follow_windows.
  void AppendStats(net::StatList& stats) const;

 private:
  void Run(engine::Engine& engine, const std::function<void(const std::string&)>& on_fatal);
  void ReadOwner();

  const repl::ReplicationOptions options_;
  util::Logger& log_;
  repl::StreamReadReport restored_;
  std::unique_ptr<repl::StreamTail> tail_;
  std::unique_ptr<repl::OwnerReader> owner_reader_;
  mutable std::mutex mu_;
  std::string owner_;                                      // guarded by mu_
  uint64_t owner_epoch_ = 0;                               // guarded by mu_
  uint64_t owner_revision_ = 0;                            // guarded by mu_
  std::chrono::steady_clock::time_point revision_seen_{};  // guarded: when it last changed
  std::chrono::milliseconds owner_read_every_{1000};
  std::atomic<uint64_t> window_{0};
  std::atomic<uint64_t> stream_window_{0};
  std::atomic<uint64_t> windows_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace conv::cmd
