#include "cmd/bench.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>

#include "cmd/bench_scenarios.h"
#include "cmd/bench_server.h"
#include "cmd/common.h"
#include "cmd/report.h"

namespace conv::cmd {

namespace {

// --quick: every measurement this long.
constexpr std::chrono::microseconds kQuickDuration{2'000'000};

}  // namespace

CLI::App* RegisterBench(CLI::App& app, BenchOptions& o) {
  CLI::App* sub = app.add_subcommand(
      "bench", "Run the performance page's scenarios against an embedded server; print the report");
  sub->add_option("--scenario", o.scenarios,
                  "Scenarios to run (default: all; with --server, all but scale)")
      ->check(CLI::IsMember(BenchScenarioNames()))
      ->delimiter(',');
  AddDurationOption(*sub, "--duration", o.duration, "How long each measurement runs");
  sub->add_flag("--quick", o.quick,
                "A short run of every scenario (2s each), for CI and the README");
  sub->add_option("--out", o.out, "Also write the report to this file");
  sub->add_flag("--json", o.json, "Print the report as JSON");
  sub->add_option("--html", o.html,
                  "Also write the report as one self-contained HTML page (charts of throughput "
                  "over time, latency CDFs and targets) to this file");
  sub->add_option("--server", o.server,
                  "Run against this server (HOST:PORT) instead of an embedded one");
  AddTlsClientOptions(*sub, o.tls);
  sub->add_option("--fsync", o.fsync, "The embedded server's --fsync mode")
      ->capture_default_str()
      ->check(CLI::IsMember({"window", "none"}));
  sub->add_option("--scale-entities", o.scale_entities,
                  fmt::format("The scale scenario's state sizes, comma-separated entity counts of "
                              "{} to {} (default: 10000,100000,1000000,10000000; with --quick: "
                              "10000,100000)",
                              kMinScaleEntities, kMaxScaleEntities))
      ->delimiter(',');
  return sub;
}

namespace {

bool Chosen(const BenchOptions& b, const std::string& name) {
  if (b.scenarios.empty()) return name != "scale" || b.server.empty();
  return std::find(b.scenarios.begin(), b.scenarios.end(), name) != b.scenarios.end();
}

// Runs the chosen scenarios in report order; failures are printed as they happen.
// `scale`: the scale scenario's sizes.
BenchResult RunScenarios(const BenchOptions& b, const std::vector<uint64_t>& scale) {
  BenchEnv env{b.server, b.fsync == "window", b.quick ? kQuickDuration : b.duration, b.tls};
  BenchResult result;
  result.machine = DescribeMachine();
  result.server = b.server;
  result.build = VersionText();
  result.fsync = b.fsync;
  result.duration_s = std::chrono::duration<double>(env.duration).count();
  result.quick = b.quick;
  for (const Scenario& s : BenchScenarios()) {
    if (!Chosen(b, s.name)) continue;
    result.scenarios.push_back(RunScenario(s.name == "scale" ? ScaleScenario(scale) : s, env));
    for (const std::string& f : result.scenarios.back().failures)
      PrintError("bench " + f);
  }
  return result;
}

}  // namespace

int RunBench(const BenchOptions& b) {
  ReportFile out;
  ReportFile html;
  util::Status st = util::Status::Ok();
  const net::TlsClientOptions& t = b.tls;
  if (b.server.empty() &&
      (t.enabled || !t.ca_file.empty() || !t.cert_file.empty() || !t.key_file.empty())) {
    st = util::Status::Error(
        "--tls, --tls-ca, --tls-cert and --tls-key need --server: the embedded server is plain "
        "TCP");
  }
  std::vector<uint64_t> scale = b.quick ? kQuickScaleEntities : kScaleEntities;
  if (st.ok() && !b.scale_entities.empty()) {
    auto parsed = ParseScaleEntities(b.scale_entities);
    if (!parsed.ok()) {
      st = parsed.status();
    } else if (!Chosen(b, "scale")) {
      st = util::Status::Error(
          b.server.empty() ? "--scale-entities: only the scale scenario uses it, and --scenario "
                             "does not name it"
                           : "--scale-entities: the scale scenario does not run with --server");
    } else {
      scale = *parsed;
    }
  }
  if (st.ok() && !b.server.empty() && !b.scenarios.empty() && Chosen(b, "scale")) {
    st = util::Status::Error(
        "--scenario scale measures an embedded server (its memory, checkpoint and restart): "
        "not with --server");
  }
  if (st.ok() && !b.out.empty()) st = out.Open("--out", b.out);
  if (st.ok() && !b.html.empty()) st = html.Open("--html", b.html);
  if (!st.ok()) {
    PrintError(st.message());
    return kExitError;
  }
  BenchResult result = RunScenarios(b, scale);
  std::string text = b.json ? BenchJson(result) + "\n" : BenchMarkdown(result);
  std::fwrite(text.data(), 1, text.size(), stdout);
  if (out.is_open()) st = out.Write(text);
  if (st.ok() && html.is_open()) st = html.Write(BenchHtml(result));
  if (!st.ok()) {
    PrintError(st.message());
    return kExitError;
  }
  size_t failures = 0;
  for (const ScenarioResult& s : result.scenarios)
    failures += s.failures.size();
  return failures == 0 ? kExitOk : kExitError;
}

}  // namespace conv::cmd
