#pragma once

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "net/messages.h"
#include "util/histogram.h"
#include "util/status.h"

namespace conv::cmd {

struct LoadOptions {
  std::string server = "127.0.0.1:3727";
  uint32_t workers = 1;
  uint64_t entities = 10'000;
  std::string schema = "player";
  uint64_t rate = 0;  // total ops/s; 0: unlimited
  std::string mix = "70/20/10";
  unsigned hot_pct = 0;
  std::chrono::microseconds duration{10'000'000};
  bool quiet = false;
  bool json = false;
  uint32_t readers = 0;
  uint32_t subscribers = 0;
  bool bootstrap = false;
  bool include_prev = false;
  std::string auth_token_file;
  std::string source_prefix = "load";
};

// Exit codes of `convergence load`.
constexpr int kLoadExitConnect = 3;    // server unreachable or refused the handshake
constexpr int kLoadExitSchema = 4;     // the server does not know --schema
constexpr int kLoadExitRunErrors = 5;  // the run saw op errors or unacknowledged ops

struct WorkerReport {
  std::string source;
  uint64_t sent = 0;           // ops sent during the run
  uint64_t acked_in_time = 0;  // ops acknowledged by the end of the duration
  uint64_t acked = 0;          // ops acknowledged by the end of the drain
  uint64_t errors = 0;         // ERROR frames received
  uint64_t reconnects = 0;
  uint64_t ack_p99_ns = 0;  // of this worker's ACK latency
  std::string first_error;
};

struct SubscriberReport {
  uint64_t changes = 0;          // NOTIFY changes received (the sentinel's left out)
  uint64_t changes_in_time = 0;  // of them, received while the writers ran
  uint64_t notify_frames = 0;
  uint64_t with_prev = 0;         // changes carrying the previous record
  uint64_t snapshot_entries = 0;  // SNAPSHOT entries received
  uint64_t snapshot_frames = 0;
  uint64_t snapshot_total = 0;   // as SNAPSHOT_END stated
  uint64_t snapshot_window = 0;  // the window SNAPSHOT_END named
  uint64_t last_window = 0;      // of the last NOTIFY
  double subscribe_ms = -1;      // SUBSCRIBE sent -> SNAPSHOT_END received; <0: never
  // Writers drained (every writer's last ACK) -> the sentinel's change received;
  // <0: no sentinel was sent or it never arrived.
  double converge_ms = -1;
  // The sentinel's ACK -> its change received (negative: the change came first).
  double sentinel_after_ack_ms = 0;
  uint64_t errors = 0;
  std::string first_error;
};

struct LoadReport {
  double seconds = 0;
  uint64_t window_us = 0;  // the server's coalescing window (WELCOME)
  std::vector<WorkerReport> workers;
  // ACK latency of every acknowledged op of every writer: from the op's generation
  // to the receipt of the first (cumulative) ACK covering it.
  util::Histogram ack_latency_ns;
  std::vector<SubscriberReport> subscribers;
  util::Histogram notify_latency_us;  // receive wall time - change ts, every change
  uint32_t latency_subscribers = 0;   // subscribers that measured it (at most 10)
  bool sentinel_sent = false;
  double sentinel_ack_ms = 0;  // the sentinel's ASSERT -> its ACK
  std::string sentinel_error;
  util::Histogram query_ns;
  uint64_t queries_found = 0;
  uint64_t reader_errors = 0;
  std::string first_reader_error;
  net::StatList stats_before;
  net::StatList stats_after;
  uint64_t Stat(const net::StatList& s, const std::string& name) const;
  // Server-side coalescing between the two STATS: ops applied per claim change.
  double CoalescingRatio() const;
  uint64_t TotalSent() const;
  uint64_t TotalAcked() const;
  uint64_t TotalErrors() const;
  // "N errors", and the first of them (writer, subscriber, reader or sentinel).
  std::string DescribeErrors() const;
  uint64_t TotalChanges() const;
  uint64_t TotalNotifyFrames() const;
  // Changes received per second while the writers ran, over all subscribers.
  double NotificationRate() const;
  // Counter delta between the two STATS.
  uint64_t StatDelta(const std::string& name) const;
};

// The subscribers of a run in figures: per-subscriber spreads.
struct SubscriberSummary {
  double rate_min = 0, rate_median = 0, rate_max = 0;  // changes/s while the writers ran
  double bootstrap_ms_min = 0, bootstrap_ms_median = 0, bootstrap_ms_max = 0;
  double entities_min = 0, entities_median = 0, entities_max = 0;  // SNAPSHOT entries
  uint64_t entities_total = 0;
  size_t converged = 0;  // subscribers that received the sentinel
  double converge_ms_min = 0, converge_ms_median = 0, converge_ms_max = 0;
  double after_ack_ms_min = 0, after_ack_ms_median = 0, after_ack_ms_max = 0;
};
SubscriberSummary SummarizeSubscribers(const LoadReport& report);

// Runs the load described by `options` against options.server. Fails before the
// run starts (with `*exit_code` set) when the server cannot be reached or does not
// know the schema.
util::Result<LoadReport> RunLoadGenerator(const LoadOptions& options, int* exit_code);
// The report as Markdown tables shaped like the performance page.
std::string FormatLoadReport(const LoadOptions& options, const LoadReport& report);
std::string LoadReportJson(const LoadOptions& options, const LoadReport& report);

CLI::App* RegisterLoad(CLI::App& app, LoadOptions& options);
int RunLoad(const LoadOptions& options);

}  // namespace conv::cmd
