// Runs the scenarios of bench_scenarios.cc and turns their runs into the report:
// tables from the columns, targets from the target specs, failures.

#include <fmt/format.h>

#include <algorithm>
#include <memory>
#include <optional>

#include "cmd/bench_scenarios.h"
#include "cmd/bench_server.h"
#include "cmd/load_run.h"

namespace conv::cmd {

namespace {

struct MetricInfo {
  Metric metric;
  const char* unit;
  int decimals;
  TargetPlot plot;
};
constexpr MetricInfo kMetrics[] = {
    {Metric::kAckP99Ms, " ms", 2, TargetPlot::kAckCdf},
    {Metric::kNotifyP99Ms, " ms", 2, TargetPlot::kNotifyCdf},
    {Metric::kQueryServerP50Us, " µs", 1, TargetPlot::kGauge},
    {Metric::kQueryServerP99Us, " µs", 1, TargetPlot::kGauge},
    {Metric::kConvergeMs, " ms", 1, TargetPlot::kGauge},
    {Metric::kBootstrapS, " s", 3, TargetPlot::kGauge},
    {Metric::kHotCoalescing, " : 1", 1, TargetPlot::kGauge},
    {Metric::kThroughputShare, "%", 0, TargetPlot::kThroughput},
    {Metric::kStateBootstrapS, " s", 3, TargetPlot::kGauge},
    {Metric::kRestartS, " s", 2, TargetPlot::kGauge},
};

const MetricInfo& Info(Metric m) {
  return *std::find_if(std::begin(kMetrics), std::end(kMetrics),
                       [m](const MetricInfo& i) { return i.metric == m; });
}

// The metric's value on one run; nothing when the run did not measure it.
std::optional<double> ValueOf(Metric m, const BenchRun& run) {
  const LoadOptions& o = run.options;
  const LoadReport& r = run.report;
  auto stat_us = [&r](const char* name) {
    return static_cast<double>(r.Stat(r.stats_after, name)) / 1e3;
  };
  switch (m) {
    case Metric::kAckP99Ms:
      if (r.ack_latency_ns.count() == 0) return std::nullopt;
      return static_cast<double>(r.ack_latency_ns.Percentile(0.99)) / 1e6;
    case Metric::kNotifyP99Ms:
      if (o.subscribers == 0 || o.workers == 0) return std::nullopt;
      return static_cast<double>(r.notify_latency_us.Percentile(0.99)) / 1e3;
    case Metric::kQueryServerP50Us:
      if (o.readers == 0) return std::nullopt;
      return stat_us("query_p50_ns");
    case Metric::kQueryServerP99Us:
      if (o.readers == 0) return std::nullopt;
      return stat_us("query_p99_ns");
    case Metric::kConvergeMs:
      if (o.subscribers == 0 || o.workers == 0) return std::nullopt;
      return SummarizeSubscribers(r).converge_ms.max;
    case Metric::kBootstrapS:
      if (!o.bootstrap) return std::nullopt;
      return SummarizeSubscribers(r).bootstrap_ms.max / 1e3;
    case Metric::kHotCoalescing: {
      uint64_t records = r.StatDelta("hot_claim_changes");
      if (o.workers == 0) return std::nullopt;
      return records == 0 ? 0
                          : static_cast<double>(r.StatDelta("hot_window_ops")) /
                                static_cast<double>(records);
    }
    case Metric::kThroughputShare:
      if (o.workers == 0) return std::nullopt;
      return r.Throughput();
    case Metric::kStateBootstrapS:
    case Metric::kRestartS: {
      uint64_t us = Tag(run, m == Metric::kRestartS ? "restart_us" : "bootstrap_us");
      if (us == 0) return std::nullopt;
      return static_cast<double>(us) / 1e6;
    }
  }
  return std::nullopt;
}

TargetResult MakeTarget(const TargetSpec& spec, std::string run, double value, double window_ms) {
  const MetricInfo& info = Info(spec.metric);
  TargetResult t;
  t.text = spec.text;
  t.run = std::move(run);
  t.unit = info.unit;
  t.decimals = info.decimals;
  t.limit = spec.limit + spec.windows * window_ms;
  t.value = value;
  t.at_most = spec.at_most;
  t.met = spec.at_most ? value <= t.limit : value >= t.limit;
  t.plot = info.plot;
  t.plot_value = t.limit;
  return t;
}

// The target `spec` on `runs`: one result per run it applies to, or one for the
// worst of them, or the share of the base run.
void Evaluate(const TargetSpec& spec, const std::vector<BenchRun>& runs,
              std::vector<TargetResult>& out) {
  std::vector<std::pair<const BenchRun*, double>> measured;
  double window_ms = 0;
  for (const BenchRun& run : runs) {
    if (!run.ok()) continue;
    if (run.report.window_us != 0) window_ms = static_cast<double>(run.report.window_us) / 1e3;
    if (spec.applies && !spec.applies(run.options)) continue;
    if (auto v = ValueOf(spec.metric, run)) measured.emplace_back(&run, *v);
  }
  if (measured.empty()) return;
  if (spec.metric == Metric::kThroughputShare) {
    auto base = std::find_if(runs.begin(), runs.end(),
                             [&](const BenchRun& r) { return r.label == spec.base && r.ok(); });
    if (base == runs.end() || base->report.Throughput() <= 0) return;
    double none = base->report.Throughput();
    for (const auto& [run, v] : measured) {
      TargetResult t = MakeTarget(spec, run->label, 100.0 * v / none, window_ms);
      t.plot_value = none * t.limit / 100.0;
      out.push_back(std::move(t));
    }
    return;
  }
  if (!spec.worst) {
    for (const auto& [run, v] : measured)
      out.push_back(MakeTarget(spec, run->label, v, window_ms));
    return;
  }
  auto worse = [&spec](const auto& a, const auto& b) {
    return spec.at_most ? a.second < b.second : a.second > b.second;
  };
  out.push_back(MakeTarget(
      spec, "", std::max_element(measured.begin(), measured.end(), worse)->second, window_ms));
}

std::vector<Table> Tables(const Scenario& s, const std::vector<BenchRun>& runs) {
  if (s.columns.empty()) return {};
  std::vector<std::pair<std::string, std::string>> groups = s.groups;
  if (groups.empty()) groups.push_back({"", ""});
  std::vector<Table> out;
  for (const auto& [group, caption] : groups) {
    Table t{caption, {}, {}};
    for (const Column& c : s.columns)
      t.header.push_back(c.header);
    for (const BenchRun& run : runs) {
      if (run.group != group) continue;
      std::vector<std::string> row;
      for (size_t i = 0; i < s.columns.size(); ++i) {
        if (run.ok()) {
          row.push_back(s.columns[i].cell(run, runs));
        } else {
          row.push_back(i == 0 ? run.label : i == 1 ? "failed" : "—");
        }
      }
      t.rows.push_back(std::move(row));
    }
    out.push_back(std::move(t));
  }
  return out;
}

std::vector<std::string> Failures(const Scenario& s, const std::vector<BenchRun>& runs,
                                  const BenchEnv& env) {
  std::vector<std::string> out;
  for (size_t i = 0; i < runs.size(); ++i) {
    const BenchRun& run = runs[i];
    std::string what = fmt::format("{} ({}) failed", s.name, run.label);
    if (!run.ok()) {
      out.push_back(fmt::format("{}: {}", what, run.error));
      continue;
    }
    if (run.report.TotalErrors() > 0)
      out.push_back(fmt::format("{}: {}", what, run.report.DescribeErrors()));
    uint64_t want = i < s.runs.size() ? s.runs[i].expect_entities : 0;
    uint64_t got = SummarizeSubscribers(run.report).entities_total;
    // An external server may hold more than what was just written.
    if (want != 0 && (env.server.empty() ? got != want : got < want)) {
      out.push_back(fmt::format("{}: {} entities received, {} expected", what, got, want));
    }
  }
  return out;
}

// One run on the external server or a fresh embedded one, after its population.
BenchRun Measure(const RunSpec& spec, const BenchEnv& env) {
  BenchRun run{spec.label, spec.group, spec.key, spec.tags, spec.options, {}, ""};
  run.options.duration = env.duration;
  run.options.quiet = true;
  std::unique_ptr<EmbeddedServer> embedded;
  run.options.server = env.server;
  run.options.tls = env.tls;
  if (env.server.empty()) {
    embedded = std::make_unique<EmbeddedServer>(env.fsync);
    if (auto st = embedded->Start(); !st.ok()) {
      run.error = st.message();
      return run;
    }
    run.options.server = embedded->address();
  }
  if (spec.populate > 0) {
    if (auto st =
            PopulateAll(run.options.server, run.options.tls, run.options.schema, spec.populate);
        !st.ok()) {
      run.error = st.message();
      return run;
    }
  }
  int code = 0;
  auto report = RunLoadGenerator(run.options, &code);
  if (!report.ok()) {
    run.error = report.message();
  } else {
    run.report = std::move(report).value();
  }
  return run;
}

}  // namespace

ScenarioResult EvaluateScenario(const Scenario& s, std::vector<BenchRun> runs,
                                const BenchEnv& env) {
  ScenarioResult r;
  r.name = s.name;
  r.title = s.title;
  r.intro = s.intro;
  r.load_tables = s.load_tables;
  r.single_run = s.single_run;
  r.tables = Tables(s, runs);
  for (const TargetSpec& t : s.targets)
    Evaluate(t, runs, r.targets);
  if (s.notes) r.notes = s.notes(runs);
  r.outro = s.outro;
  r.failures = Failures(s, runs, env);
  r.runs = std::move(runs);
  return r;
}

ScenarioResult RunScenario(const Scenario& s, const BenchEnv& env) {
  std::vector<BenchRun> runs;
  for (const RunSpec& spec : s.runs)
    runs.push_back(s.measure ? s.measure(spec, env) : Measure(spec, env));
  return EvaluateScenario(s, std::move(runs), env);
}

}  // namespace conv::cmd
