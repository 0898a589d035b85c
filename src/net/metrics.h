#pragma once

// The STATS counters in the Prometheus text exposition format (version 0.0.4).
// Pure: the caller takes the snapshot (net::Server::Stats(), the engine's WAL writer
// stats) and serves the text (net::MetricsServer).

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "net/messages.h"
#include "wal/writer.h"

namespace conv::net {

struct MetricsSnapshot {
  StatList stats;               // as STATS reports them
  wal::WriterStats wal_writer;  // for the fdatasync latency histogram
  // Labels of the constant `convergence_build_info` gauge (version, commit, ...).
  std::vector<std::pair<std::string, std::string>> build_info;
};

// Every STATS counter becomes a sample of the metric family the table in metrics.cc
// names for it (`asserts` -> `convergence_ops_total{kind="assert"}`, `errors_<code>` ->
// `convergence_errors_total{code="<code>"}`); `wal_fsyncs` and `wal_fsync_us` are the
// _count and _sum of the `convergence_wal_fsync_duration_seconds` histogram. A STATS
// name the table does not know is still exported, as the untyped
// `convergence_<name>`, so nothing is lost; the test suite asks for a table entry.
// Derived: `convergence_coalescing_ratio` (window_ops / claim_changes).
std::string RenderMetrics(const MetricsSnapshot& snapshot);

// The family a STATS name is exported in: empty when the table does not know it.
std::string_view MetricFamilyOf(std::string_view stat_name);

// The media type of RenderMetrics' output.
inline constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace conv::net
