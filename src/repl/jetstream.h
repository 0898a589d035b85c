#pragma once

// The replicated log on NATS JetStream (docs/replication.md): one stream per
// cluster name, CONV_<NAME>, holding every window's blocks (subject
// conv.<NAME>.log) and the checkpoints (conv.<NAME>.ckpt), both in chunks within
// the NATS server's max payload, and each owner's epoch marker (conv.<NAME>.epoch).
// Chunk headers: Nats-Msg-Id (de-duplication of resends), Conv-Window or
// Conv-Checkpoint, Conv-Part "i/n", Conv-Encoding "zstd" when the window or the
// checkpoint was compressed before it was cut (repl/compression.h),
// Nats-Expected-Last-Sequence (the owner is the
// stream's only writer, so it knows the sequence each message must follow: a
// message after another owner's marker is refused, which fences this one).

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "util/log.h"
#include "util/status.h"
#include "wal/replica.h"

namespace conv::repl {

struct ReplicationOptions {
  std::string urls;          // nats://HOST:PORT[,nats://HOST:PORT…]
  std::string cluster_name;  // [A-Za-z0-9_-], 1 to 64
  int replicas = 3;          // JetStream replicas of the stream, 1 to 5
  // How long Confirm keeps resending before it fails (and nothing is acknowledged).
  std::chrono::milliseconds confirm_timeout{10'000};
  // How long JetStreamLog::Open and Ownership::Claim try to create or update the
  // stream and the owner bucket: a NATS cluster that is starting may not have the
  // peers for their replicas yet, and a loaded one answers late.
  std::chrono::milliseconds setup_timeout{10'000};
  // Largest chunk body; 0: the server's max payload less 1 KiB for the headers.
  size_t max_chunk = 0;
};

// Checks the cluster name and the replica count; the error names the flag.
util::Status ValidateOptions(const ReplicationOptions& o);
std::string StreamName(std::string_view cluster_name);
std::string LogSubject(std::string_view cluster_name);
std::string CheckpointSubject(std::string_view cluster_name);
std::string EpochSubject(std::string_view cluster_name);

struct ReplicationCounters {
  uint64_t windows = 0;      // windows published
  uint64_t chunks = 0;       // chunk messages published (resends not counted)
  uint64_t bytes = 0;        // bytes of the windows published
  uint64_t sent_bytes = 0;   // bytes of their chunks (compressed)
  uint64_t resends = 0;      // chunks published again after a timeout or an error
  uint64_t rounds = 0;       // Confirm calls that succeeded (each: every round queued)
  uint64_t ack_ns = 0;       // sum over them: first publish to the last publish ack
  uint64_t ack_max_ns = 0;   // slowest of them
  uint64_t last_window = 0;  // newest window confirmed
  uint64_t checkpoints = 0;  // checkpoints replicated
  uint64_t checkpoint_window = 0;
  uint64_t purged_below = 0;  // stream sequence everything below which was purged
  uint64_t resyncs = 0;       // publishes refused out of order, renumbered and resent
};

class JetStreamLog final : public wal::LogReplica {
 public:
  // Connects (the URLs are tried in turn; reconnects go on forever), and creates
  // the stream or updates its replica count.
  static util::Result<std::unique_ptr<JetStreamLog>> Open(const ReplicationOptions& options,
                                                          util::Logger* log);
  ~JetStreamLog() override;
  JetStreamLog(const JetStreamLog&) = delete;
  JetStreamLog& operator=(const JetStreamLog&) = delete;

  void Publish(uint64_t window, std::string_view blocks) override;
  // Confirm thread; Publish goes on meanwhile.
  wal::WriteOutcome Confirm(uint64_t through) override;
  // Every window published so far.
  wal::WriteOutcome Confirm();
  util::Status PublishCheckpoint(uint64_t window, const std::string& path) override;

  // Publishes this owner's epoch marker (body: `address HOST:PORT`), expecting the
  // stream's last sequence to be the one this owner last wrote or read at Open.
  // Fails when another writer wrote since (another owner: this one must not take
  // writes). Later publishes are fenced by any newer marker.
  util::Status PublishEpochMarker(uint64_t epoch, const std::string& address);

  // Asked when a publish is refused out of order: the address of the owner that
  // replaced this one, or nullopt while this one still holds the record (an
  // ownership check, repl::Ownership::Deposed); an error when it cannot tell (the
  // refused chunks are not numbered again: the next refusal asks again).
  using OwnerCheck = std::function<util::Result<std::optional<std::string>>()>;
  void SetOwnerCheck(OwnerCheck check);
  // Fences this owner: no round is confirmed from now on (Confirm fails, so
  // nothing more is acknowledged); `owner` is the one clients should go to.
  void Fence(const std::string& owner);
  bool fenced() const;
  std::string fenced_owner() const;

  // The newest window the stream holds, as a log window or a checkpoint's start
  // window (0: the stream is empty).
  util::Result<uint64_t> LastReplicatedWindow();
  ReplicationCounters counters() const;

 private:
  struct State;  // the client library's handles and what its threads share
  explicit JetStreamLog(std::unique_ptr<State> state);

  std::unique_ptr<State> s_;
};

}  // namespace conv::repl
