#include "net/metrics.h"

#include <fmt/format.h>

#include <map>

namespace conv::net {

namespace {

enum class Type { kCounter, kGauge, kHistogramPart };

struct MetricDef {
  std::string_view stat;    // the STATS name
  std::string_view family;  // the metric family
  std::string_view label;   // `key="value"` or empty
  Type type;
  std::string_view help;
  double divisor = 0;  // export the STATS value divided by this (0: as is), e.g. us -> s
};

// STATS name -> metric. Keep in step with the STATS list (net::Server::Stats) and
// docs/operations.md. Families appear in the order STATS first names them.
constexpr MetricDef kMetrics[] = {
    {"ops_in", "convergence_ops_received_total", "", Type::kCounter,
     "Write ops received and not rejected (applied and duplicates)."},
    {"ops_applied", "convergence_ops_applied_total", "", Type::kCounter,
     "Write ops applied to the state."},
    {"asserts", "convergence_ops_total", "kind=\"assert\"", Type::kCounter,
     "Write ops applied to the state, by kind."},
    {"patches", "convergence_ops_total", "kind=\"patch\"", Type::kCounter, ""},
    {"retracts", "convergence_ops_total", "kind=\"retract\"", Type::kCounter, ""},
    {"duplicates", "convergence_duplicates_total", "", Type::kCounter,
     "Write ops skipped because their seq was not above the source's mark."},
    {"op_errors", "convergence_op_errors_total", "", Type::kCounter,
     "Ops and requests answered with an op-level ERROR."},
    {"entities", "convergence_entities", "", Type::kGauge, "Live entities."},
    {"claims", "convergence_claims", "", Type::kGauge, "Live claims."},
    {"claim_bytes", "convergence_claim_bytes", "", Type::kGauge, "Bytes of claim blocks."},
    {"sources", "convergence_sources", "", Type::kGauge, "Source names the server knows now."},
    {"sources_forgotten", "convergence_sources_forgotten_total", "", Type::kCounter,
     "Idle sources forgotten to make room for new names."},
    {"windows", "convergence_windows_total", "", Type::kCounter, "Coalescing windows closed."},
    {"last_window", "convergence_last_window", "", Type::kGauge,
     "Number of the last window closed."},
    {"window_ops", "convergence_window_ops_total", "", Type::kCounter,
     "Ops applied, counted when their window closes."},
    {"claim_changes", "convergence_claim_changes_total", "", Type::kCounter,
     "Coalesced claim changes (one per entity and source per window)."},
    {"entity_changes", "convergence_entity_changes_total", "", Type::kCounter,
     "Coalesced entity changes (one per entity per window)."},
    {"hot_window_ops", "convergence_hot_window_ops_total", "", Type::kCounter,
     "Of window_ops, those on entities hot in their window."},
    {"hot_claim_changes", "convergence_hot_claim_changes_total", "", Type::kCounter,
     "Of claim_changes, those of hot entities."},
    {"partitions", "convergence_partitions", "", Type::kGauge, "Engine partitions."},
    {"io_threads", "convergence_io_threads", "", Type::kGauge, "Network I/O threads."},
    {"window_us", "convergence_window_seconds", "", Type::kGauge, "The coalescing window.", 1e6},
    {"connections", "convergence_connections", "", Type::kGauge, "Open client connections."},
    {"connections_total", "convergence_connections_accepted_total", "", Type::kCounter,
     "Client connections accepted."},
    {"connections_rejected", "convergence_connections_rejected_total", "", Type::kCounter,
     "Connections refused over --max-connections."},
    {"takeovers", "convergence_takeovers_total", "", Type::kCounter,
     "Connections closed because a newer one took over their source."},
    {"lease_expirations", "convergence_lease_expirations_total", "", Type::kCounter,
     "Leased sources that did not reconnect in time; their claims were retracted."},
    {"credit_waits", "convergence_credit_waits_total", "", Type::kCounter,
     "Reads of a writer left unhandled because it was past its credit."},
    {"subscribers", "convergence_subscribers", "", Type::kGauge, "Live subscriptions."},
    {"subscriptions_total", "convergence_subscriptions_total", "", Type::kCounter,
     "Subscriptions ever made."},
    {"notifications", "convergence_notifications_total", "", Type::kCounter,
     "Entity changes sent in NOTIFY frames."},
    {"notify_frames", "convergence_notify_frames_total", "", Type::kCounter, "NOTIFY frames sent."},
    {"notify_lag_p50_us", "convergence_notification_lag_seconds", "quantile=\"0.5\"", Type::kGauge,
     "Op ts to NOTIFY queued for sending, by quantile, since start.", 1e6},
    {"notify_lag_p99_us", "convergence_notification_lag_seconds", "quantile=\"0.99\"", Type::kGauge,
     "", 1e6},
    {"window_queue_p50_us", "convergence_window_queue_seconds", "quantile=\"0.5\"", Type::kGauge,
     "From a window's cut to every partition having reached it (the ops queued before it), by "
     "quantile, since start.",
     1e6},
    {"window_queue_p99_us", "convergence_window_queue_seconds", "quantile=\"0.99\"", Type::kGauge,
     "", 1e6},
    {"window_seal_p50_us", "convergence_window_seal_seconds", "quantile=\"0.5\"", Type::kGauge,
     "From a window's cut to every partition's seal of it, by quantile, since start.", 1e6},
    {"window_seal_p99_us", "convergence_window_seal_seconds", "quantile=\"0.99\"", Type::kGauge, "",
     1e6},
    {"window_durable_p50_us", "convergence_window_durable_seconds", "quantile=\"0.5\"",
     Type::kGauge, "From a window's cut to its being durable, by quantile, since start.", 1e6},
    {"window_durable_p99_us", "convergence_window_durable_seconds", "quantile=\"0.99\"",
     Type::kGauge, "", 1e6},
    {"fanout_delay_p50_us", "convergence_fanout_delay_seconds", "quantile=\"0.5\"", Type::kGauge,
     "From a durable window's changes reaching the fanout to its NOTIFY frames queued, by "
     "quantile, since start.",
     1e6},
    {"fanout_delay_p99_us", "convergence_fanout_delay_seconds", "quantile=\"0.99\"", Type::kGauge,
     "", 1e6},
    {"snapshot_entries", "convergence_snapshot_entries_total", "", Type::kCounter,
     "Entities sent in SNAPSHOT frames (bootstraps and resumes)."},
    {"snapshots", "convergence_snapshots_total", "", Type::kCounter,
     "Bootstraps and resumes completed."},
    {"resume_resets", "convergence_resume_resets_total", "", Type::kCounter,
     "Resumes answered with the full state: the window was older than the retention."},
    {"stalled_snapshots", "convergence_stalled_snapshots_total", "", Type::kCounter,
     "Snapshots ended because their subscriber read none of them for 30 s."},
    {"conflations", "convergence_conflations_total", "", Type::kCounter,
     "Times a subscriber's backlog passed the limit and its changes were conflated."},
    {"conflated_changes", "convergence_conflated_changes_total", "", Type::kCounter,
     "Changes merged into a later one for a slow or paced subscriber."},
    {"shared_conflations", "convergence_shared_conflations_total", "", Type::kCounter,
     "Conflations that share the merge of another subscriber of the same shape that fell "
     "behind in the same window."},
    {"subscriber_backlog_bytes", "convergence_subscriber_backlog_bytes", "", Type::kGauge,
     "Subscription output queued and not yet written, all connections."},
    {"subscriber_held_bytes", "convergence_subscriber_held_bytes", "", Type::kGauge,
     "Merged changes held for conflating, paced or bootstrapping subscriptions."},
    {"held_overflows", "convergence_held_overflows_total", "", Type::kCounter,
     "Subscriptions ended because their connection's merged changes passed the backlog "
     "limit."},
    {"frames_in", "convergence_frames_received_total", "", Type::kCounter, "Frames received."},
    {"bytes_in", "convergence_received_bytes_total", "", Type::kCounter, "Bytes received."},
    {"bytes_out", "convergence_sent_bytes_total", "", Type::kCounter, "Bytes sent."},
    {"queries", "convergence_queries_total", "", Type::kCounter, "QUERY requests answered."},
    {"query_p50_ns", "convergence_query_service_seconds", "quantile=\"0.5\"", Type::kGauge,
     "Server-side QUERY service time since start, by quantile.", 1e9},
    {"query_p99_ns", "convergence_query_service_seconds", "quantile=\"0.99\"", Type::kGauge, "",
     1e9},
    {"query_p999_ns", "convergence_query_service_seconds", "quantile=\"0.999\"", Type::kGauge, "",
     1e9},
    {"wal", "convergence_wal_enabled", "", Type::kGauge, "1 when the write-ahead log is on."},
    {"fsync_window", "convergence_fsync_window", "", Type::kGauge,
     "1 when an ACK means fdatasynced (--fsync window)."},
    {"wal_batches", "convergence_wal_batches_total", "", Type::kCounter,
     "Log blocks written (one per window)."},
    {"wal_records", "convergence_wal_records_total", "", Type::kCounter, "Log records written."},
    {"wal_bytes", "convergence_wal_bytes_total", "", Type::kCounter, "Log bytes written."},
    {"wal_segments_created", "convergence_wal_segments_created_total", "", Type::kCounter,
     "Log segment files created."},
    {"wal_fsyncs", "convergence_wal_fsync_duration_seconds", "", Type::kHistogramPart, ""},
    {"wal_fsync_us", "convergence_wal_fsync_duration_seconds", "", Type::kHistogramPart, ""},
    {"wal_fsync_max_us", "convergence_wal_fsync_max_seconds", "", Type::kGauge,
     "Longest fdatasync of the log.", 1e6},
    {"durable_window", "convergence_durable_window", "", Type::kGauge, "Newest window in the log."},
    {"disk_full", "convergence_disk_full", "", Type::kGauge,
     "1 while writes are refused for lack of disk space."},
    {"disk_full_events", "convergence_disk_full_events_total", "", Type::kCounter,
     "Times the disk was found full."},
    {"checkpoints", "convergence_checkpoints_total", "", Type::kCounter, "Checkpoints written."},
    {"checkpoint_window", "convergence_checkpoint_window", "", Type::kGauge,
     "Start window of the last checkpoint."},
    {"checkpoint_records", "convergence_checkpoint_records", "", Type::kGauge,
     "Records in the last checkpoint."},
    {"checkpoint_ms", "convergence_checkpoint_duration_seconds", "", Type::kGauge,
     "Time the last checkpoint took.", 1e3},
    {"segments_deleted", "convergence_wal_segments_deleted_total", "", Type::kCounter,
     "Log segments deleted after checkpoints."},
    // In STATS with --replicate or --follow (docs/replication.md), added by serve.
    {"role", "convergence_role", "", Type::kGauge,
     "1: the owner of its cluster name (--replicate); 2: a read replica (--follow)."},
    {"epoch", "convergence_epoch", "", Type::kGauge,
     "The owner's epoch: the KV revision of its claim on the cluster name (on a replica: "
     "the owner's, as last read)."},
    {"follow_window", "convergence_follow_window", "", Type::kGauge,
     "Read replica: newest owner window handed to the partitions (queries and "
     "subscribers see it once they seal it, within about a window)."},
    {"follow_stream_window", "convergence_follow_stream_window", "", Type::kGauge,
     "Read replica: newest owner window seen in the stream."},
    {"follow_windows", "convergence_follow_windows_total", "", Type::kCounter,
     "Read replica: owner windows applied since it started following."},
    // serve --replicate only (docs/replication.md): not in STATS, added by serve.
    {"repl_owner", "convergence_replication_owner", "", Type::kGauge,
     "1 on a server that replicates its log (--replicate): the owner of its cluster name."},
    {"repl_windows", "convergence_replication_windows_total", "", Type::kCounter,
     "Windows published to JetStream."},
    {"repl_chunks", "convergence_replication_chunks_total", "", Type::kCounter,
     "Chunk messages published to JetStream (resends not counted)."},
    {"repl_bytes", "convergence_replication_bytes_total", "", Type::kCounter,
     "Log bytes published to JetStream."},
    {"repl_sent_bytes", "convergence_replication_sent_bytes_total", "", Type::kCounter,
     "Bytes of the chunks those log bytes were published as (compressed)."},
    {"repl_resends", "convergence_replication_resends_total", "", Type::kCounter,
     "Chunks published again after a timeout or a refused publish."},
    {"repl_rounds", "convergence_replication_rounds_total", "", Type::kCounter,
     "Confirmations JetStream gave: each covers the group commits queued while the one before "
     "waited (pipelined)."},
    {"repl_ack_us", "convergence_replication_ack_seconds_total", "", Type::kCounter,
     "Time from a confirmation's first publish to its last publish ack, summed.", 1e6},
    {"repl_ack_max_us", "convergence_replication_ack_max_seconds", "", Type::kGauge,
     "Slowest confirmation from first publish to last publish ack.", 1e6},
    {"repl_window", "convergence_replication_window", "", Type::kGauge,
     "Newest window JetStream confirmed."},
    {"repl_lag_windows", "convergence_replication_lag_windows", "", Type::kGauge,
     "Windows closed and not yet confirmed by JetStream (none of them acknowledged)."},
    {"repl_checkpoint_window", "convergence_replication_checkpoint_window", "", Type::kGauge,
     "Start window of the newest checkpoint in JetStream."},
    {"repl_purged_below", "convergence_replication_purged_below_seq", "", Type::kGauge,
     "Stream sequence below which the stream was purged after that checkpoint."},
    {"repl_resyncs", "convergence_replication_resyncs_total", "", Type::kCounter,
     "Publishes refused out of order (this owner's own resends) and numbered again."},
    {"repl_fenced", "convergence_replication_fenced", "", Type::kGauge,
     "1 once this owner was deposed: another owner took the cluster name over; nothing more "
     "is acknowledged here."},
};

constexpr std::string_view kErrorsPrefix = "errors_";
constexpr std::string_view kErrorsFamily = "convergence_errors_total";
constexpr std::string_view kFsyncFamily = "convergence_wal_fsync_duration_seconds";

std::string_view TypeName(Type t) {
  return t == Type::kCounter ? "counter" : "gauge";
}

// Divided rather than multiplied by a power of ten, so that a whole number of
// microseconds prints as the shortest decimal (100us is 0.0001, not 9.99...e-05).
std::string FormatValue(uint64_t v, double divisor) {
  if (divisor == 0) return fmt::format("{}", v);
  return fmt::format("{}", static_cast<double>(v) / divisor);
}

void AppendEscapedLabelValue(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

// A family's samples in order of appearance, with its HELP and TYPE.
struct Family {
  std::string_view help;
  std::string_view type;
  std::vector<std::string> samples;  // whole lines
};

class Exposition {
 public:
  Family& Get(std::string_view name, std::string_view type, std::string_view help) {
    auto [it, fresh] = index_.try_emplace(std::string(name), families_.size());
    if (fresh) families_.push_back({std::string(name), Family{help, type, {}}});
    Family& f = families_[it->second].second;
    if (f.help.empty()) f.help = help;
    return f;
  }
  std::string Render() const {
    std::string out;
    for (const auto& [name, f] : families_) {
      if (!f.help.empty()) out += fmt::format("# HELP {} {}\n", name, f.help);
      out += fmt::format("# TYPE {} {}\n", name, f.type);
      for (const auto& s : f.samples)
        out += s;
    }
    return out;
  }

 private:
  std::vector<std::pair<std::string, Family>> families_;
  std::map<std::string, size_t, std::less<>> index_;
};

const MetricDef* FindDef(std::string_view stat) {
  for (const MetricDef& d : kMetrics) {
    if (d.stat == stat) return &d;
  }
  return nullptr;
}

void AppendFsyncHistogram(Exposition& ex, const wal::WriterStats& w) {
  Family& f = ex.Get(kFsyncFamily, "histogram",
                     "fdatasync latency of the write-ahead log (one per group commit).");
  uint64_t cumulative = 0;
  for (size_t i = 0; i < wal::kFsyncBucketBoundsUs.size(); ++i) {
    cumulative += w.fsync_buckets[i];
    f.samples.push_back(fmt::format("{}_bucket{{le=\"{}\"}} {}\n", kFsyncFamily,
                                    static_cast<double>(wal::kFsyncBucketBoundsUs[i]) / 1e6,
                                    cumulative));
  }
  cumulative += w.fsync_buckets.back();
  f.samples.push_back(fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n", kFsyncFamily, cumulative));
  f.samples.push_back(
      fmt::format("{}_sum {}\n", kFsyncFamily, static_cast<double>(w.fsync_ns) / 1e9));
  f.samples.push_back(fmt::format("{}_count {}\n", kFsyncFamily, cumulative));
}

}  // namespace

std::string_view MetricFamilyOf(std::string_view stat_name) {
  if (stat_name.starts_with(kErrorsPrefix)) return kErrorsFamily;
  const MetricDef* d = FindDef(stat_name);
  return d == nullptr ? std::string_view() : d->family;
}

std::string RenderMetrics(const MetricsSnapshot& snap) {
  Exposition ex;
  if (!snap.build_info.empty()) {
    std::string labels;
    for (const auto& [k, v] : snap.build_info) {
      labels += fmt::format("{}{}=\"", labels.empty() ? "" : ",", k);
      AppendEscapedLabelValue(labels, v);
      labels += '"';
    }
    ex.Get("convergence_build_info", "gauge", "Version, git commit and build type; always 1.")
        .samples.push_back(fmt::format("convergence_build_info{{{}}} 1\n", labels));
  }
  uint64_t window_ops = 0, claim_changes = 0;
  bool histogram_done = false;
  for (const auto& [name, value] : snap.stats) {
    if (name == "window_ops") window_ops = value;
    if (name == "claim_changes") claim_changes = value;
    if (std::string_view(name).starts_with(kErrorsPrefix)) {
      std::string sample = fmt::format("{}{{code=\"", kErrorsFamily);
      AppendEscapedLabelValue(sample, std::string_view(name).substr(kErrorsPrefix.size()));
      sample += fmt::format("\"}} {}\n", value);
      ex.Get(kErrorsFamily, "counter",
             "ERROR frames sent, by code (op-level and connection-level).")
          .samples.push_back(std::move(sample));
      continue;
    }
    const MetricDef* d = FindDef(name);
    if (d == nullptr) {
      std::string family = fmt::format("convergence_{}", name);
      ex.Get(family, "untyped", "").samples.push_back(fmt::format("{} {}\n", family, value));
      continue;
    }
    if (d->type == Type::kHistogramPart) {
      if (!histogram_done) AppendFsyncHistogram(ex, snap.wal_writer);
      histogram_done = true;
      continue;
    }
    std::string sample(d->family);
    if (!d->label.empty()) sample += fmt::format("{{{}}}", d->label);
    sample += fmt::format(" {}\n", FormatValue(value, d->divisor));
    ex.Get(d->family, TypeName(d->type), d->help).samples.push_back(std::move(sample));
  }
  if (!histogram_done) AppendFsyncHistogram(ex, snap.wal_writer);
  double ratio =
      claim_changes == 0 ? 0 : static_cast<double>(window_ops) / static_cast<double>(claim_changes);
  ex.Get("convergence_coalescing_ratio", "gauge",
         "Ops applied per coalesced claim change since start (window_ops / claim_changes).")
      .samples.push_back(fmt::format("convergence_coalescing_ratio {}\n", ratio));
  return ex.Render();
}

}  // namespace conv::net
