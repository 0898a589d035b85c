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
  sub->add_option("--scenario", o.scenarios, "Scenarios to run (default: all)")
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
  return sub;
}

namespace {

// Runs the chosen scenarios in report order; failures are printed as they happen.
BenchResult RunScenarios(const BenchOptions& b) {
  BenchEnv env{b.server, b.fsync == "window", b.quick ? kQuickDuration : b.duration, b.tls};
  BenchResult result;
  result.machine = DescribeMachine();
  result.server = b.server;
  result.build = VersionText();
  result.fsync = b.fsync;
  result.duration_s = std::chrono::duration<double>(env.duration).count();
  result.quick = b.quick;
  for (const Scenario& s : BenchScenarios()) {
    if (!b.scenarios.empty() &&
        std::find(b.scenarios.begin(), b.scenarios.end(), s.name) == b.scenarios.end()) {
      continue;
    }
    result.scenarios.push_back(RunScenario(s, env));
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
  if (st.ok() && !b.out.empty()) st = out.Open("--out", b.out);
  if (st.ok() && !b.html.empty()) st = html.Open("--html", b.html);
  if (!st.ok()) {
    PrintError(st.message());
    return kExitError;
  }
  BenchResult result = RunScenarios(b);
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
