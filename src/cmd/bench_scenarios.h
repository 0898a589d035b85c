#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "cmd/load.h"
#include "cmd/report.h"

#include "net/tls.h"
#include "util/status.h"

namespace conv::cmd {

struct BenchEnv;

// The performance page's scenarios as data: what each one runs, how its table reads,
// which targets hold it, and its prose. RunScenario measures one; EvaluateScenario
// turns measured runs into the report's ScenarioResult.

// One measurement: a load run on a fresh server.
struct RunSpec {
  std::string label;  // row and legend label, unique within the scenario
  std::string group;  // the table it belongs to (Scenario::groups); empty: the only one
  std::string key;    // JSON "run" member when not empty
  std::vector<std::pair<std::string, uint64_t>> tags;  // JSON members beside "load"
  LoadOptions options;                                 // --duration is set by the bench
  uint64_t populate = 0;         // assert this many players first (unreported)
  uint64_t expect_entities = 0;  // the subscribers must receive this many in bootstrap
};

// A table column: its header and the cell of one run (`runs`: the scenario's, for
// columns comparing runs).
struct Column {
  std::string header;
  std::function<std::string(const BenchRun& run, const std::vector<BenchRun>& runs)> cell;
};

enum class Metric {
  kAckP99Ms,          // ACK latency p99
  kNotifyP99Ms,       // notification latency p99
  kQueryServerP50Us,  // the server's own QUERY service time (STATS query_p50_ns)
  kQueryServerP99Us,
  kConvergeMs,       // writers drained -> the last subscriber holds the final state
  kBootstrapS,       // SUBSCRIBE -> SNAPSHOT_END, the slowest subscriber
  kHotCoalescing,    // ops per claim record, entities updated > 10 times in a window
  kThroughputShare,  // write throughput, percent of the `base` run's
  kStateBootstrapS,  // scale: one subscriber bootstraps the whole state (tag bootstrap_us)
  kRestartS,         // scale: recovery of the data dir until the server listens (restart_us)
};

struct TargetSpec {
  std::string text;
  Metric metric;
  bool at_most = true;  // met when value <= limit (else >=)
  double limit = 0;     // in the metric's unit
  double windows = 0;   // plus this many coalescing windows (ms metrics)
  // The runs it is measured on, among those that measured the metric; null: all.
  std::function<bool(const LoadOptions&)> applies;
  bool worst = false;  // one target over all those runs (their worst value)
  std::string base;    // kThroughputShare: the label of the run it is a share of
};

struct Scenario {
  std::string name;   // --scenario
  std::string title;  // section heading
  std::string intro;
  std::vector<RunSpec> runs;
  std::vector<std::pair<std::string, std::string>> groups;  // group -> caption of its table
  std::vector<Column> columns;                              // empty: no table of runs
  std::vector<TargetSpec> targets;
  // Computed sentences after the targets (figures the prose quotes); may be null.
  std::function<std::vector<std::string>(const std::vector<BenchRun>&)> notes;
  std::string outro;
  bool load_tables = false;  // ScenarioResult::load_tables
  bool single_run = false;   // ScenarioResult::single_run
  // Measures one run; null: a load run on a fresh server after its `populate`.
  std::function<BenchRun(const RunSpec&, const BenchEnv&)> measure;
};

// The scale scenario's entity counts: by default, and with --quick.
inline const std::vector<uint64_t> kScaleEntities = {10'000, 100'000, 1'000'000, 10'000'000};
inline const std::vector<uint64_t> kQuickScaleEntities = {10'000, 100'000};
// The least and most entities --scale-entities takes.
constexpr uint64_t kMinScaleEntities = 1'000;
constexpr uint64_t kMaxScaleEntities = 100'000'000;
// The scale scenario, one run per entity count.
Scenario ScaleScenario(const std::vector<uint64_t>& entities);
// --scale-entities: whole numbers in [kMinScaleEntities, kMaxScaleEntities], no repeats.
util::Result<std::vector<uint64_t>> ParseScaleEntities(const std::vector<std::string>& items);
// The value of `run`'s tag `name` (0 when it has none).
uint64_t Tag(const BenchRun& run, const std::string& name);

// Every scenario, in report order.
const std::vector<Scenario>& BenchScenarios();
std::vector<std::string> BenchScenarioNames();

// Where and how long the scenarios run.
struct BenchEnv {
  std::string server;  // empty: a fresh embedded server per run
  bool fsync = true;   // the embedded servers' --fsync window (else none)
  std::chrono::microseconds duration{10'000'000};
  net::TlsClientOptions tls;  // how to reach `server`
};

// One run of the scale scenario (bench_scale.cc): on a fresh embedded server, the
// preload of every entity from one source, the page's write mix, a checkpoint of
// the whole state, one subscriber bootstrapping it, and a restart.
BenchRun MeasureScale(const RunSpec& spec, const BenchEnv& env);

// Runs every measurement of `scenario`, then evaluates it.
ScenarioResult RunScenario(const Scenario& scenario, const BenchEnv& env);
// The report of `scenario` from its measured runs (in RunSpec order): tables,
// targets, notes, and failures (runs that failed or saw errors).
ScenarioResult EvaluateScenario(const Scenario& scenario, std::vector<BenchRun> runs,
                                const BenchEnv& env);

}  // namespace conv::cmd
