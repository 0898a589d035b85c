#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "cmd/chart.h"
#include "cmd/load.h"
#include "cmd/load_result.h"
#include "util/json.h"
#include "util/status.h"

namespace conv::cmd {

// The reports of `load` and `bench`: one result struct each (LoadReport, BenchResult),
// rendered as Markdown, JSON (util::JsonWriter) or one self-contained HTML page with
// inline SVG charts. Nothing here measures or formats JSON by hand.

// A file a report goes to, opened (created or truncated) before the run so that a
// path that cannot be written fails at once; `flag` names the option in messages.
class ReportFile {
 public:
  util::Status Open(std::string flag, std::string path);
  bool is_open() const { return out_.is_open(); }
  util::Status Write(const std::string& text);

 private:
  std::string flag_;
  std::string path_;
  std::ofstream out_;
};

// A figure for people: 950, 1.5K, 12K, 2.98M, 1.20G.
std::string Human(double v);

// A table of text cells, rendered as Markdown or HTML.
struct Table {
  std::string caption;  // a line of prose before it (may be empty)
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
};

// ---- load ----

// The Configuration and Results tables of one run.
std::vector<Table> LoadTables(const LoadOptions& options, const LoadReport& report);
// The first error of each kind of participant, one line each.
std::vector<std::string> LoadErrorLines(const LoadReport& report);
std::string LoadMarkdown(const LoadOptions& options, const LoadReport& report);
void WriteLoadJson(util::JsonWriter& json, const LoadOptions& options, const LoadReport& report);
std::string LoadJson(const LoadOptions& options, const LoadReport& report);
std::string LoadHtml(const LoadOptions& options, const LoadReport& report);

// ---- bench ----

// Where the HTML report draws a target besides its gauge.
enum class TargetPlot { kGauge, kAckCdf, kNotifyCdf, kThroughput };

// A target a scenario was held to, as measured.
struct TargetResult {
  std::string text;  // "ACK latency p99 within 3 windows"
  std::string run;   // the run it was measured on; empty: the worst over all runs
  std::string unit;  // " ms", " s", "%", " : 1"
  int decimals = 2;  // of the value as printed
  double limit = 0;
  double value = 0;
  bool at_most = true;  // met when value <= limit (else value >= limit)
  bool met = false;
  TargetPlot plot = TargetPlot::kGauge;
  // Where its line goes on the plot: a latency in ms (CDF plots) or ops/s.
  double plot_value = 0;
};

// One measurement of a scenario: a load run on its own server.
struct BenchRun {
  std::string label;  // row and legend label
  std::string group;  // the table (and JSON key) it belongs to; empty: the only one
  std::string key;    // JSON "run" member when not empty
  std::vector<std::pair<std::string, uint64_t>> tags;  // JSON members beside "load"
  LoadOptions options;
  LoadReport report;
  std::string error;  // the run failed: `report` is empty
  bool ok() const { return error.empty(); }
};

struct ScenarioResult {
  std::string name;   // as --scenario names it
  std::string title;  // section heading
  std::string intro;  // prose before the tables
  // Markdown: each run's own load report (Configuration and Results) first.
  bool load_tables = false;
  // JSON: the scenario is its one run's load object (null when it failed), not a
  // list or groups of {tags, "load"}.
  bool single_run = false;
  std::vector<BenchRun> runs;
  std::vector<Table> tables;
  std::vector<TargetResult> targets;
  std::vector<std::string> notes;  // computed sentences after the targets
  std::string outro;               // prose at the end
  std::vector<std::string> failures;
};

struct Machine {
  std::string cpu;
  unsigned cores = 0;
  std::string memory;
  std::string os;
  std::string date;
};

struct BenchResult {
  Machine machine;
  std::string server;  // the external server measured; empty: embedded ones
  std::string build;
  std::string fsync;
  double duration_s = 0;
  bool quick = false;
  std::vector<ScenarioResult> scenarios;
};

// The table of machine, setup, build and date heading a bench report.
Table BenchHeader(const BenchResult& result);
std::string BenchMarkdown(const BenchResult& result);
std::string BenchJson(const BenchResult& result);
std::string BenchHtml(const BenchResult& result);

// ---- what the HTML pages plot (public for tests) ----

// Throughput over time from a run's timeline: per kind of count (ops acknowledged,
// queries, changes notified, snapshot entities) measured, one series of
// (seconds since the run started, count per second over the sample interval).
struct RateSeries {
  std::string what;  // "ops acknowledged/s", ...
  std::vector<std::pair<double, double>> points;
};
std::vector<RateSeries> RateSeriesOf(const LoadReport& report);
// The CDF of a histogram as (value / divisor, fraction of samples <= it), one point
// per non-empty bucket.
std::vector<std::pair<double, double>> CdfOf(const util::Histogram& h, double divisor);
// The charts of one scenario (throughput over time per kind, then a CDF per latency
// measured, then the targets' gauges), with each target drawn as a line.
std::vector<Chart> ScenarioCharts(const ScenarioResult& scenario);
// The charts of LoadHtml's page (ids "load-acked", "load-cdf-ack", ...).
std::vector<Chart> LoadCharts(const LoadOptions& options, const LoadReport& report);

}  // namespace conv::cmd
