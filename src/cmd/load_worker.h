#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "cmd/load.h"
#include "cmd/load_result.h"
#include "cmd/workload.h"
#include "engine/schema.h"
#include "net/client.h"
#include "util/histogram.h"

struct pollfd;

namespace conv::cmd {

// One writer of the load generator: a source of its own, pipelining ops over a
// non-blocking socket and reading ACKs as they come. Sent ops stay buffered until
// acknowledged; after a lost connection it reconnects and resends them (the server
// skips the ones it already applied).
class LoadWorker {
 public:
  LoadWorker(const LoadOptions& options, const engine::Schema& schema, std::string source,
             std::string token, net::SslCtxPtr tls, uint64_t rate, uint64_t seed);

  // Runs `workers` on the calling thread until `end` (one poll for all their
  // connections), then waits up to `drain` for each one's last ACK.
  static void RunGroup(const std::vector<LoadWorker*>& workers,
                       std::chrono::steady_clock::time_point end, std::chrono::milliseconds drain);

  const WorkerReport& report() const { return report_; }
  // ACK latency of every acknowledged op, in ns: from the op's generation to the
  // receipt of the first ACK covering its seq.
  const util::Histogram& ack_latency_ns() const { return ack_latency_ns_; }
  // Live progress, readable from other threads.
  uint64_t acked_live() const { return acked_live_.load(std::memory_order_relaxed); }

 private:
  struct Chunk {
    std::string bytes;
    uint64_t last_seq = 0;
  };
  // Ops generated together at `mono_ns` (monotonic): seqs after the previous
  // stamp's last_seq up to this one's.
  struct Stamp {
    uint64_t last_seq = 0;
    uint64_t mono_ns = 0;
  };

  // Connects to the servers of --server, trying them for up to `retry_for`.
  util::Status Connect(std::chrono::milliseconds retry_for);
  // RunGroup's steps for this worker. Begin: connects (false: failed, reported).
  bool Begin(std::chrono::steady_clock::time_point now);
  // Before a poll: generates what it may and sets `p` (false: this worker is done).
  bool Prepare(std::chrono::steady_clock::time_point now, std::chrono::steady_clock::time_point end,
               std::chrono::steady_clock::time_point drain_end, pollfd* p, int* timeout_ms);
  // After it: reads and sends as `revents` allow, reconnecting after a lost
  // connection (false: could not, reported; this worker is done).
  bool Serve(short revents, std::chrono::steady_clock::time_point drain_end);
  void Finish();
  void Generate(std::chrono::steady_clock::time_point now);
  bool SendSome();     // false: connection lost
  bool ReceiveSome();  // false: connection lost
  // Every op up to `seq` is acknowledged, as learnt at `now_ns` (monotonic).
  void OnAck(uint64_t seq, uint64_t now_ns);
  uint64_t UnsentBytes() const { return appended_ - sent_; }
  // Ops generated and not yet acknowledged (sent or not).
  uint64_t InflightOps() const { return seq_ - acked_; }

  const LoadOptions& options_;
  const engine::Schema& schema_;
  std::string token_;
  net::SslCtxPtr tls_;  // null: plain TCP
  uint64_t rate_;       // this worker's ops/s; 0: unlimited
  Workload workload_;
  std::unique_ptr<net::Client> client_;
  net::Transport* conn_ = nullptr;  // client_'s connection

  std::deque<Chunk> chunks_;  // sent-but-unacknowledged, then unsent
  size_t send_chunk_ = 0;     // index in chunks_ of the next byte to send
  size_t send_off_ = 0;
  uint64_t appended_ = 0;  // bytes ever appended to chunks_
  uint64_t sent_ = 0;      // of those, bytes sent on the current connection or acked
  std::string in_;
  uint64_t seq_ = 0;
  uint64_t acked_ = 0;
  // The most ops this worker keeps in flight (InflightOps): the connection's credit
  // (WELCOME, then CREDIT frames), or kMaxInflightOps when the server gave none.
  uint64_t max_inflight_;
  std::deque<Stamp> stamps_;  // of the unacknowledged ops, oldest first
  util::Histogram ack_latency_ns_;
  double tokens_ = 0;
  std::chrono::steady_clock::time_point last_refill_;
  WorkerReport report_;
  std::atomic<uint64_t> acked_live_{0};
  uint64_t acked_base_ = 0;  // acked seq at the start, so reports count this run only
  bool stopping_ = false;    // past `end`: waiting for the last ACK
  bool want_out_ = false;    // had unsent bytes at the last Prepare
};

}  // namespace conv::cmd
