// `convergence bench`: the scenario table, target evaluation from known runs, one
// tiny scenario end to end in process, and the command's flags.

#include <doctest/doctest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "cmd/bench_scenarios.h"
#include "cmd/bench_server.h"
#include "support/json_value.h"
#include "support/process.h"

using conv::cmd::BenchRun;
using conv::cmd::Metric;
using conv::cmd::Scenario;
using conv::testing::RunProcess;

namespace {

const Scenario& Named(const std::string& name) {
  for (const Scenario& s : conv::cmd::BenchScenarios()) {
    if (s.name == name) return s;
  }
  FAIL("no scenario ", name);
  return conv::cmd::BenchScenarios().front();
}

// A measured run of `spec` with every ACK at `ack_ms`, every notification at
// `notify_ms`, and `ops` acknowledged in one second.
BenchRun Measured(const conv::cmd::RunSpec& spec, double ack_ms, double notify_ms, uint64_t ops) {
  BenchRun run{spec.label, spec.group, spec.key, spec.tags, spec.options, {}, ""};
  run.report.seconds = 1;
  run.report.window_us = 10'000;
  if (spec.options.workers > 0) {
    conv::cmd::WorkerReport w;
    w.source = "load-1";
    w.sent = w.acked = w.acked_in_time = ops;
    run.report.workers.push_back(w);
    run.report.ack_latency_ns.Record(static_cast<uint64_t>(ack_ms * 1e6), ops);
  }
  for (uint32_t i = 0; i < spec.options.subscribers; ++i) {
    conv::cmd::SubscriberReport s;
    s.subscribe_ms = 1;
    s.converge_ms = 5 + i;
    run.report.subscribers.push_back(s);
  }
  if (spec.options.subscribers > 0) {
    run.report.notify_latency_us.Record(static_cast<uint64_t>(notify_ms * 1e3), 100);
  }
  return run;
}

}  // namespace

TEST_CASE("bench: the scenario table holds the page's scenarios in order, each well formed") {
  CHECK(conv::cmd::BenchScenarioNames() == std::vector<std::string>{"write", "subscribers", "reads",
                                                                    "bootstrap", "coalescing",
                                                                    "saturation", "scale"});
  for (const Scenario& s : conv::cmd::BenchScenarios()) {
    CAPTURE(s.name);
    CHECK(!s.title.empty());
    REQUIRE(!s.runs.empty());
    if (s.single_run) CHECK(s.runs.size() == 1);
    std::set<std::string> labels;
    for (const auto& run : s.runs) {
      CAPTURE(run.label);
      CHECK(labels.insert(run.label).second);  // legends and base runs name runs uniquely
      bool grouped = false;
      for (const auto& [group, caption] : s.groups)
        grouped = grouped || group == run.group;
      CHECK((s.groups.empty() ? run.group.empty() : grouped));
      CHECK(conv::cmd::ValidateLoadOptions(run.options).ok());
    }
    for (const auto& t : s.targets) {
      CAPTURE(t.text);
      if (t.metric == Metric::kThroughputShare) CHECK(labels.count(t.base) == 1);
    }
  }
  // The prose is in the table, not in the code that runs it.
  CHECK(Named("subscribers").intro.find("sentinel") != std::string::npos);
  CHECK(Named("write").outro.find("3.7M ops/sec") != std::string::npos);
}

TEST_CASE("bench: saturation targets are evaluated per run against the window") {
  const Scenario& s = Named("saturation");
  std::vector<BenchRun> runs;
  for (const auto& spec : s.runs) {
    // The run with 100 subscribers acknowledges slowly.
    double ack = spec.options.subscribers == 100 ? 45 : 12;
    runs.push_back(Measured(spec, ack, 15, 100'000));
  }
  auto r = conv::cmd::EvaluateScenario(s, std::move(runs), {});
  CHECK(r.failures.empty());
  int acks = 0, notifies = 0;
  for (const auto& t : r.targets) {
    CAPTURE(t.text);
    CAPTURE(t.run);
    if (t.text == "ACK latency p99 within 3 windows") {
      ++acks;
      CHECK(t.limit == doctest::Approx(30));
      CHECK(t.met == (t.run != "9 writers + 100 subscribers"));
      CHECK(t.plot == conv::cmd::TargetPlot::kAckCdf);
    } else {
      ++notifies;
      CHECK(t.text == "Notification latency p99 within 2 windows");
      CHECK(t.limit == doctest::Approx(20));
      CHECK(t.value == doctest::Approx(15).epsilon(1.0 / 64));
      CHECK(t.met);
    }
  }
  CHECK(acks == 4);      // every run with writers; not the idle reader
  CHECK(notifies == 3);  // every run with subscribers
  REQUIRE(r.tables.size() == 1);
  CHECK(r.tables[0].rows.size() == 5);
  CHECK(r.tables[0].rows[4][0] == "1 reader alone (idle server)");
  CHECK(r.tables[0].rows[4][1] == "—");
}

TEST_CASE("bench: subscriber targets compare runs, take the worst, and a failed run is reported") {
  const Scenario& s = Named("subscribers");
  std::vector<BenchRun> runs;
  for (const auto& spec : s.runs) {
    uint64_t ops = spec.options.subscribers == 100 ? 60'000 : 100'000;
    runs.push_back(Measured(spec, 5, 8, ops));
  }
  runs[2].error = "cannot connect";  // "10 subscribers"
  auto r = conv::cmd::EvaluateScenario(s, std::move(runs), {});
  REQUIRE(r.failures.size() == 1);
  CHECK(r.failures[0] == "subscribers (10 subscribers) failed: cannot connect");
  bool share = false, worst = false;
  int notify = 0;
  for (const auto& t : r.targets) {
    CAPTURE(t.text);
    if (t.text == "Write throughput against none") {
      share = true;
      CHECK(t.run == "100 subscribers");
      CHECK(t.value == doctest::Approx(60));
      CHECK(!t.met);  // 60% < 70%
      CHECK(t.plot_value == doctest::Approx(70'000));
    } else if (t.run.empty()) {
      worst = true;
      CHECK(t.value == doctest::Approx(104));  // 100 subscribers, the last at 5 + 99 ms
      CHECK(!t.met);
    } else {
      ++notify;
      CHECK(t.limit == doctest::Approx(12));  // window + 2 ms
    }
  }
  CHECK(share);
  CHECK(worst);
  CHECK(notify == 3);  // 1 subscriber twice and 10 at the fixed rate; 10 unlimited failed
  REQUIRE(r.tables.size() == 2);
  CHECK(r.tables[0].caption == "Unlimited write rate (the page's scenario):");
  CHECK(r.tables[0].rows[2] ==
        std::vector<std::string>{"10 subscribers", "failed", "—", "—", "—", "—", "—", "—", "—"});
  CHECK(r.tables[0].rows[3][2] == "60%");
}

TEST_CASE("bench: a tiny scenario runs end to end on an embedded server") {
  Scenario s;
  s.name = "tiny";
  s.title = "Tiny";
  conv::cmd::LoadOptions o;
  o.workers = 1;
  o.entities = 50;
  o.subscribers = 1;
  o.readers = 1;
  s.runs = {{"tiny run", "", "", {{"n", 1}}, o, 50, 0}};
  s.columns = {
      {"Ops", [](const BenchRun& r, auto&) { return std::to_string(r.report.TotalAcked()); }}};
  s.targets = {{"ACK latency p99 within 100 windows", Metric::kAckP99Ms, true, 0, 100}};
  conv::cmd::BenchEnv env;
  env.fsync = false;
  env.duration = std::chrono::milliseconds(300);
  auto r = conv::cmd::RunScenario(s, env);
  std::string first_failure = r.failures.empty() ? "" : r.failures[0];
  INFO(first_failure);
  CHECK(r.failures.empty());
  REQUIRE(r.runs.size() == 1);
  REQUIRE(r.runs[0].ok());
  const auto& report = r.runs[0].report;
  CHECK(report.TotalAcked() > 0);
  CHECK(report.TotalAcked() == report.TotalSent());
  CHECK(report.Stat(report.stats_after, "entities") >= 50);  // populated first
  CHECK(report.query_ns.count() > 0);
  CHECK(!report.timeline.empty());
  REQUIRE(r.tables.size() == 1);
  CHECK(r.tables[0].rows[0][0] == std::to_string(report.TotalAcked()));
  REQUIRE(r.targets.size() == 1);
  CHECK(r.targets[0].run == "tiny run");
  conv::cmd::BenchResult b;
  b.scenarios.push_back(r);
  auto json = conv::testing::ParseJson(conv::cmd::BenchJson(b));
  REQUIRE(json.has_value());
  const auto* runs = json->Get("scenarios")->Get("tiny");
  REQUIRE(runs != nullptr);
  REQUIRE(runs->array.size() == 1);
  CHECK(runs->array[0].Get("n")->number == 1);
  CHECK(runs->array[0].Get("load")->Get("acked_ops")->number ==
        static_cast<double>(report.TotalAcked()));
}

TEST_CASE("bench: one short scenario from the command line writes Markdown, JSON and HTML") {
  conv::testing::TempDir dir("conv-bench");
  std::string out = dir.File("report.md");
  std::string html = dir.File("report.html");
  // Long enough for a few throughput samples (every 100 ms) and ACKs to plot, also
  // under the sanitizers.
  auto r = RunProcess({CONV_BINARY, "bench", "--scenario", "write", "--duration", "1s", "--fsync",
                       "none", "--out", out, "--html", html},
                      std::chrono::seconds(60));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  for (const char* line :
       {"# convergence performance", "| fsync | none |", "## Write throughput (no subscribers)",
        "| Aggregate throughput |", "Per core: ", "| Workers | 9 (each a separate source) |"}) {
    CHECK_MESSAGE(r.out.find(line) != std::string::npos, line);
  }
  std::ifstream in(out);
  std::stringstream written;
  written << in.rdbuf();
  CHECK(written.str() == r.out);
  std::ifstream hin(html);
  std::stringstream page;
  page << hin.rdbuf();
  CHECK(page.str().find("<svg") != std::string::npos);
  CHECK(page.str().find("data-chart=\"write-acked\"") != std::string::npos);
  CHECK(page.str().find("data-chart=\"write-cdf-ack\"") != std::string::npos);

  r = RunProcess({CONV_BINARY, "bench", "--scenario", "write", "--duration", "300ms", "--json"},
                 std::chrono::seconds(60));
  REQUIRE(r.exit_code == 0);
  auto json = conv::testing::ParseJson(r.out);
  REQUIRE(json.has_value());
  CHECK(json->Get("fsync")->string == "window");
  const auto* write = json->Get("scenarios")->Get("write");
  REQUIRE(write != nullptr);
  CHECK(write->Get("workers")->number == 9);
  CHECK(json->Get("scenarios")->Get("reads") == nullptr);
}

TEST_CASE("bench: an unknown scenario or an unwritable file is refused before anything runs") {
  auto r = RunProcess({CONV_BINARY, "bench", "--scenario", "warp"}, std::chrono::seconds(30));
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("warp") != std::string::npos);
  for (const char* flag : {"--out", "--html"}) {
    r = RunProcess({CONV_BINARY, "bench", "--scenario", "write", flag, "/nonexistent/dir/x"},
                   std::chrono::seconds(30));
    CAPTURE(flag);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find(std::string(flag) + ": cannot write '/nonexistent/dir/x'") !=
          std::string::npos);
    CHECK(r.out.empty());
  }
}

TEST_CASE("bench: --scale-entities takes whole numbers in range, each once") {
  auto ok = conv::cmd::ParseScaleEntities({"1000", "100000000", "25000"});
  REQUIRE(ok.ok());
  CHECK(*ok == std::vector<uint64_t>{1000, 100000000, 25000});
  struct Bad {
    std::vector<std::string> items;
    const char* error;
  };
  for (const Bad& b : std::vector<Bad>{
           {{"10k"}, "--scale-entities: '10k' is not a whole number of entities"},
           {{""}, "--scale-entities: '' is not a whole number of entities"},
           {{"-5"}, "--scale-entities: '-5' is not a whole number of entities"},
           {{"999"},
            "--scale-entities: 999 is out of range; each size must be 1,000 to "
            "100,000,000 entities"},
           {{"100000001"}, "--scale-entities: 100000001 is out of range"},
           {{"5000", "5000"}, "--scale-entities: 5000 is given twice"},
           {{}, "--scale-entities: no size given"},
       }) {
    auto r = conv::cmd::ParseScaleEntities(b.items);
    REQUIRE_FALSE(r.ok());
    CHECK_MESSAGE(r.message().find(b.error) == 0, r.message());
  }
  // One run per size, in the order given; the targets hold at their sizes only.
  Scenario s = conv::cmd::ScaleScenario({2000, 1000});
  REQUIRE(s.runs.size() == 2);
  CHECK(s.runs[0].label == "2,000 entities");
  CHECK(s.runs[1].options.entities == 1000);
  CHECK(s.runs[1].options.workers == 9);
  CHECK(s.measure != nullptr);
}

TEST_CASE("bench: the scale targets read the runs' bootstrap and restart times") {
  Scenario s = conv::cmd::ScaleScenario({1'000'000, 10'000'000});
  std::vector<BenchRun> runs;
  for (const auto& spec : s.runs) {
    BenchRun run = Measured(spec, 1, 0, 1000);
    bool big = spec.options.entities == 10'000'000;
    run.tags.emplace_back("bootstrap_us", big ? 900'000 : 250'000);
    run.tags.emplace_back("restart_us", big ? 12'000'000 : 1'000'000);
    runs.push_back(run);
  }
  auto result = conv::cmd::EvaluateScenario(s, runs, {});
  REQUIRE(result.targets.size() == 2);
  CHECK(result.targets[0].run == "1,000,000 entities");
  CHECK(result.targets[0].value == doctest::Approx(0.25));
  CHECK(result.targets[0].met);
  CHECK(result.targets[1].run == "10,000,000 entities");
  CHECK(result.targets[1].value == doctest::Approx(12.0));
  CHECK_FALSE(result.targets[1].met);
  REQUIRE(result.tables.size() == 1);
  CHECK(result.tables[0].rows[0][0] == "1,000,000");
  CHECK(result.tables[0].rows[1].back() == "12000 ms");
}

TEST_CASE("bench: the scale scenario measures each size from preload to restart") {
  // 1 s of writes per size: 300 ms was taken up by starting the writers once, under the
  // sanitizers with another test beside.
  auto r = RunProcess({CONV_BINARY, "bench", "--scenario", "scale", "--scale-entities", "2000,1000",
                       "--duration", "1s", "--fsync", "none", "--json"},
                      std::chrono::seconds(120));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto json = conv::testing::ParseJson(r.out);
  REQUIRE(json.has_value());
  const auto* runs = json->Get("scenarios")->Get("scale");
  REQUIRE(runs != nullptr);
  REQUIRE(runs->array.size() == 2);
  CHECK(runs->array[0].Get("entities")->number == 2000);
  CHECK(runs->array[1].Get("entities")->number == 1000);
  for (const auto& run : runs->array) {
    CAPTURE(run.Get("entities")->number);
    // Every entity was preloaded; the mix retracts some, so the state holds at most that.
    CHECK(run.Get("state_entities")->number > 0);
    CHECK(run.Get("state_entities")->number <= run.Get("entities")->number);
    CHECK(run.Get("checkpoint_records")->number >= run.Get("state_entities")->number);
    CHECK(run.Get("checkpoint_bytes")->number > 0);
    CHECK(run.Get("restart_us")->number > 0);
    CHECK(run.Get("populate_us")->number > 0);
    CHECK(run.Get("load")->Get("acked_ops")->number > 0);
  }
}

TEST_CASE("bench: a restart in a new process that fails is reported with the server's log") {
  conv::testing::TempDir dir("conv-bench-restart");
  std::string not_a_dir = dir.File("data");
  { std::ofstream(not_a_dir) << "a file, not a data dir"; }
  auto r = conv::cmd::RestartInChild(CONV_BINARY, not_a_dir, false);
  REQUIRE_FALSE(r.ok());
  CHECK(r.message().find("restarted server: stdout closed before a line starting with "
                         "'listening on '") != std::string::npos);
  CHECK(r.message().find("--data-dir: cannot create") != std::string::npos);
}

TEST_CASE("bench: --scale-entities and the scale scenario are refused where they cannot run") {
  struct Case {
    std::vector<std::string> args;
    const char* error;
  };
  for (const Case& c : std::vector<Case>{
           {{"--scenario", "scale", "--scale-entities", "12x"},
            "--scale-entities: '12x' is not a whole number of entities"},
           {{"--scenario", "write", "--scale-entities", "5000"},
            "--scale-entities: only the scale scenario uses it"},
           {{"--server", "127.0.0.1:1", "--scale-entities", "5000"},
            "--scale-entities: the scale scenario does not run with --server"},
           {{"--server", "127.0.0.1:1", "--scenario", "scale"},
            "--scenario scale measures an embedded server"},
       }) {
    std::vector<std::string> argv = {CONV_BINARY, "bench"};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    auto r = RunProcess(argv, std::chrono::seconds(30));
    CAPTURE(c.error);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find(c.error) != std::string::npos);
    CHECK(r.out.empty());
  }
}
