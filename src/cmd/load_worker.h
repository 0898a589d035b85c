#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>

#include "cmd/load.h"
#include "cmd/workload.h"
#include "engine/schema.h"
#include "net/client.h"

namespace conv::cmd {

// One writer of the load generator: a source of its own, pipelining ops over a
// non-blocking socket and reading ACKs as they come. Sent ops stay buffered until
// acknowledged; after a lost connection it reconnects and resends them (the server
// skips the ones it already applied).
class LoadWorker {
 public:
  LoadWorker(const LoadOptions& options, const engine::Schema& schema, std::string source,
             std::string token, uint64_t rate, uint64_t seed);

  // Runs until `end`, then waits up to `drain` for the last ACK.
  void Run(std::chrono::steady_clock::time_point end, std::chrono::milliseconds drain);

  const WorkerReport& report() const { return report_; }
  // Live progress, readable from other threads.
  uint64_t acked_live() const { return acked_live_.load(std::memory_order_relaxed); }

 private:
  struct Chunk {
    std::string bytes;
    uint64_t last_seq = 0;
  };

  util::Status Connect();
  void Generate(std::chrono::steady_clock::time_point now);
  bool SendSome();     // false: connection lost
  bool ReceiveSome();  // false: connection lost
  void OnAck(uint64_t seq);
  uint64_t UnsentBytes() const { return appended_ - sent_; }

  const LoadOptions& options_;
  const engine::Schema& schema_;
  std::string token_;
  uint64_t rate_;  // this worker's ops/s; 0: unlimited
  Workload workload_;
  std::unique_ptr<net::Client> client_;
  int fd_ = -1;

  std::deque<Chunk> chunks_;  // sent-but-unacknowledged, then unsent
  size_t send_chunk_ = 0;     // index in chunks_ of the next byte to send
  size_t send_off_ = 0;
  uint64_t appended_ = 0;  // bytes ever appended to chunks_
  uint64_t sent_ = 0;      // of those, bytes sent on the current connection or acked
  std::string in_;
  uint64_t seq_ = 0;
  uint64_t credit_ = 0;  // ops this connection may have unacknowledged (WELCOME, CREDIT)
  uint64_t acked_ = 0;
  double tokens_ = 0;
  std::chrono::steady_clock::time_point last_refill_;
  WorkerReport report_;
  std::atomic<uint64_t> acked_live_{0};
  uint64_t acked_base_ = 0;  // acked seq at the start, so reports count this run only
};

}  // namespace conv::cmd
