#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "net/messages.h"
#include "util/histogram.h"

namespace conv::cmd {

// What one run of `convergence load` measured: the one struct the run fills in and
// every report format (cmd/report.h) reads.

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

// Counts over the whole run at `t` seconds after it started (subscribers first,
// then writers and readers from `LoadReport::writers_start_s`): one every
// kSubscribeSampleS while the subscribers bootstrap (it can take a few ms), then one
// every kWriteSampleS; differences between samples give throughput over time.
struct LoadSample {
  double t = 0;
  uint64_t acked = 0;             // ops acknowledged, all writers
  uint64_t changes = 0;           // NOTIFY changes received, all subscribers
  uint64_t queries = 0;           // QUERY round trips completed, all readers
  uint64_t snapshot_entries = 0;  // SNAPSHOT entries received, all subscribers
};
constexpr double kSubscribeSampleS = 0.005;
constexpr double kWriteSampleS = 0.1;

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
  std::vector<LoadSample> timeline;
  double writers_start_s = 0;  // on the timeline

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
  // Ops acknowledged within the duration per second, over all writers.
  double Throughput() const;
  // Changes received per second while the writers ran, over all subscribers.
  double NotificationRate() const;
  // Counter delta between the two STATS.
  uint64_t StatDelta(const std::string& name) const;
};

// Smallest, median and largest of a set of figures (all 0 when it is empty).
struct Spread {
  double min = 0;
  double median = 0;
  double max = 0;
  size_t n = 0;
};
Spread SpreadOf(std::vector<double> v);

// The subscribers of a run in figures: per-subscriber spreads.
struct SubscriberSummary {
  Spread rate;          // changes/s while the writers ran
  Spread bootstrap_ms;  // SUBSCRIBE -> SNAPSHOT_END
  Spread entities;      // SNAPSHOT entries
  uint64_t entities_total = 0;
  Spread converge_ms;  // n: subscribers that received the sentinel
  Spread after_ack_ms;
};
SubscriberSummary SummarizeSubscribers(const LoadReport& report);

}  // namespace conv::cmd
