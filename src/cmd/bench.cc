#include "cmd/bench.h"

#include <fmt/format.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>

#include "cmd/common.h"
#include "cmd/load.h"
#include "engine/engine.h"
#include "net/server.h"
#include "util/duration.h"
#include "util/log.h"

namespace conv::cmd {

namespace {

// The scenarios of the performance page this build can run, in report order.
const std::vector<std::string> kScenarios = {"write", "reads", "coalescing"};

}  // namespace

CLI::App* RegisterBench(CLI::App& app, BenchOptions& o) {
  CLI::App* sub = app.add_subcommand(
      "bench", "Run the performance page's scenarios against an embedded server; print the report");
  sub->add_option("--scenario", o.scenarios, "Scenarios to run (default: all)")
      ->check(CLI::IsMember(kScenarios))
      ->delimiter(',');
  AddDurationOption(*sub, "--duration", o.duration, "How long each measurement runs");
  sub->add_flag("--quick", o.quick,
                "A short run of every scenario (2s each), for CI and the README");
  sub->add_option("--out", o.out, "Also write the report to this file");
  sub->add_flag("--json", o.json, "Print the report as JSON");
  sub->add_option("--server", o.server,
                  "Run against this server (HOST:PORT) instead of an embedded one");
  sub->add_option("--fsync", o.fsync, "The embedded server's --fsync mode")
      ->capture_default_str()
      ->check(CLI::IsMember({"window", "none"}));
  return sub;
}

namespace {

std::string ReadFirstMatch(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) {
        std::string v = line.substr(colon + 1);
        v.erase(0, v.find_first_not_of(" \t"));
        return v;
      }
    }
  }
  return "unknown";
}

struct Machine {
  std::string cpu;
  unsigned cores = 0;
  std::string memory;
  std::string os;
  std::string date;
};

Machine Describe() {
  Machine m;
  m.cpu = ReadFirstMatch("/proc/cpuinfo", "model name");
  m.cores = std::thread::hardware_concurrency();
  m.memory = ReadFirstMatch("/proc/meminfo", "MemTotal");
  utsname u{};
  ::uname(&u);
  m.os = fmt::format("{} {} ({})", u.sysname, u.release, u.machine);
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M UTC", std::gmtime(&t));
  m.date = buf;
  return m;
}

// A server in this process on a free loopback port, with a temporary data dir that
// is removed when it goes away.
class EmbeddedServer {
 public:
  explicit EmbeddedServer(bool fsync) {
    char tmpl[] = "/tmp/convergence-bench-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    engine::EngineOptions eo;
    eo.partitions = cores;
    eo.lanes = std::max(1u, cores / 2);
    eo.data_dir = dir_;
    eo.fsync = fsync;
    eo.log = &log_;
    engine_ = std::make_unique<engine::Engine>(eo, schemas_, sources_);
    net::ServerOptions so;
    so.listen = "127.0.0.1:0";
    server_ = std::make_unique<net::Server>(*engine_, so, log_);
  }
  ~EmbeddedServer() {
    if (server_) server_->Shutdown();
    server_.reset();
    engine_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  util::Status Start() {
    if (auto st = server_->Listen(); !st.ok()) return st;
    server_->Start();
    return util::Status::Ok();
  }
  std::string address() const { return fmt::format("127.0.0.1:{}", server_->port()); }

 private:
  util::Logger log_{util::LogLevel::kWarn};
  std::string dir_;
  engine::SchemaSet schemas_;
  engine::SourceTable sources_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<net::Server> server_;
};

struct Run {
  LoadOptions options;
  LoadReport report;
};

// Runs one load, against the external server or a fresh embedded one; `populate`,
// when given, runs first on the same server and is not reported.
util::Result<Run> Measure(const BenchOptions& b, LoadOptions o,
                          const LoadOptions* populate = nullptr) {
  std::unique_ptr<EmbeddedServer> embedded;
  if (b.server.empty()) {
    embedded = std::make_unique<EmbeddedServer>(b.fsync == "window");
    if (auto st = embedded->Start(); !st.ok()) return st;
    o.server = embedded->address();
  } else {
    o.server = b.server;
  }
  o.quiet = true;
  int code = 0;
  if (populate != nullptr) {
    LoadOptions p = *populate;
    p.server = o.server;
    p.quiet = true;
    auto report = RunLoadGenerator(p, &code);
    if (!report.ok()) return report.status();
  }
  auto report = RunLoadGenerator(o, &code);
  if (!report.ok()) return report.status();
  return Run{o, std::move(report).value()};
}

std::string Human(double v) {
  if (v >= 1e6) return fmt::format("{:.2f}M", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.0f}K", v / 1e3);
  return fmt::format("{:.0f}", v);
}

double Throughput(const LoadReport& r) {
  double total = 0;
  for (const auto& w : r.workers)
    total += static_cast<double>(w.acked_in_time) / r.seconds;
  return total;
}

std::string Us(uint64_t ns) {
  return fmt::format("{:.1f}", static_cast<double>(ns) / 1e3);
}

}  // namespace

int RunBench(const BenchOptions& b) {
  std::vector<std::string> chosen = b.scenarios.empty() ? kScenarios : b.scenarios;
  auto duration = b.quick ? std::chrono::microseconds(2'000'000) : b.duration;
  unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  Machine m = Describe();
  std::string md;
  std::string js = "{";
  md += "# convergence performance\n\n";
  md += "| Component | Detail |\n|---|---|\n";
  md += fmt::format("| Machine | {}, {} cores, {} memory |\n", m.cpu, m.cores, m.memory);
  md += fmt::format("| OS | {} |\n", m.os);
  md += fmt::format("| Setup | {} |\n",
                    b.server.empty()
                        ? "Embedded server and load generator in one process, on loopback"
                        : "External server " + b.server);
  md += fmt::format("| Build | {} |\n", VersionText());
  md += fmt::format("| fsync | {} |\n", b.server.empty() ? b.fsync : "as the server runs");
  md += fmt::format("| Date | {} |\n", m.date);
  md += fmt::format("| Duration | {} per measurement{} |\n", util::FormatDuration(duration),
                    b.quick ? " (--quick)" : "");
  js += fmt::format(
      "\"machine\":{{\"cpu\":\"{}\",\"cores\":{},\"memory\":\"{}\",\"os\":\"{}\"}},"
      "\"build\":\"{}\",\"fsync\":\"{}\",\"date\":\"{}\",\"duration_s\":{:.1f},\"scenarios\":{{",
      m.cpu, m.cores, m.memory, m.os, VersionText(), b.fsync, m.date,
      std::chrono::duration<double>(duration).count());
  bool first_js = true;
  int failures = 0;
  auto fail = [&](const std::string& scenario, const std::string& why) {
    ++failures;
    md += fmt::format("\n**{} failed**: {}\n", scenario, why);
    PrintError(fmt::format("bench {}: {}", scenario, why));
  };

  for (const std::string& s : kScenarios) {
    if (std::find(chosen.begin(), chosen.end(), s) == chosen.end()) continue;
    if (!first_js) js += ",";
    first_js = false;
    if (s == "write" || s == "coalescing") {
      LoadOptions o;
      o.workers = 9;
      o.entities = 10'000;
      o.duration = duration;
      o.hot_pct = s == "coalescing" ? 10 : 0;
      auto run = Measure(b, o);
      if (!run.ok()) {
        fail(s, run.message());
        js += fmt::format("\"{}\":null", s);
        continue;
      }
      const LoadReport& r = run->report;
      double ops = Throughput(r);
      md += s == "write" ? "\n## Write throughput (no subscribers)\n\n"
                         : "\n## Coalescing efficiency\n\n";
      md += FormatLoadReport(run->options, r);
      if (s == "write") {
        md += fmt::format(
            "\nPer core: {} ops/sec over {} cores. Page: 3.7M ops/sec on a 10-core laptop "
            "(~370K per core); design target 200,000 ASSERT/s per partition per core.\n",
            Human(ops / cores), cores);
      } else {
        auto delta = [&](const char* name) {
          return r.Stat(r.stats_after, name) - r.Stat(r.stats_before, name);
        };
        uint64_t ops_in = delta("window_ops");
        uint64_t records = delta("claim_changes");
        uint64_t hot_ops = delta("hot_window_ops");
        uint64_t hot_records = delta("hot_claim_changes");
        double hot_ratio =
            hot_records == 0 ? 0 : static_cast<double>(hot_ops) / static_cast<double>(hot_records);
        md += fmt::format(
            "\n| Coalescing | Ops in | WAL claim records | Ratio |\n|---|---|---|---|\n"
            "| All entities | {} | {} | {:.1f} : 1 |\n"
            "| Entities updated more than 10 times in a window | {} | {} | {:.1f} : 1 |\n"
            "\nDesign target: 10 : 1 or better for entities updated more than 10 times per "
            "window. A claim is (entity, source): with 9 writers, a hot entity has up to 9 "
            "claims, each logged once per window.\n",
            ops_in, records, r.CoalescingRatio(), hot_ops, hot_records, hot_ratio);
      }
      js += fmt::format("\"{}\":{}", s, LoadReportJson(run->options, r));
      if (r.TotalErrors() > 0) fail(s, fmt::format("{} errors", r.TotalErrors()));
    } else if (s == "reads") {
      md += "\n## Point read latency\n\n";
      md +=
          "One reader issues QUERYs back to back (one outstanding) while writers run at a "
          "fixed rate. Server: from the QUERY frame handled to its RESULT encoded (design "
          "target 5 µs p50, 20 µs p99). Round trip: what the reader saw over loopback.\n\n";
      md +=
          "| Background write rate | Queries/sec | Server p50 / p99 / p999 µs | Round trip p50 / "
          "p99 / p999 µs | Writes acked/sec |\n";
      md += "|---|---|---|---|---|\n";
      js += "\"reads\":[";
      bool first = true;
      for (uint64_t rate : {uint64_t{0}, uint64_t{100'000}, uint64_t{200'000}}) {
        LoadOptions o;
        o.workers = rate == 0 ? 0 : 2;
        o.allow_no_writers = true;
        o.rate = rate;
        o.readers = 1;
        o.entities = 10'000;
        o.mix = "100/0/0";
        o.duration = duration;
        // Every entity exists before reads start (one writer, ASSERTs only).
        LoadOptions populate;
        populate.workers = 1;
        populate.entities = o.entities;
        populate.mix = "100/0/0";
        populate.duration = std::chrono::seconds(1);
        populate.source_prefix = "populate";
        auto run = Measure(b, o, &populate);
        if (!run.ok()) {
          fail(fmt::format("reads at {}", rate), run.message());
          continue;
        }
        const LoadReport& r = run->report;
        md += fmt::format(
            "| {} ops/sec | {:.0f} | {} / {} / {} | {} / {} / {} | {} |\n",
            Human(static_cast<double>(rate)), static_cast<double>(r.query_ns.count()) / r.seconds,
            Us(r.Stat(r.stats_after, "query_p50_ns")), Us(r.Stat(r.stats_after, "query_p99_ns")),
            Us(r.Stat(r.stats_after, "query_p999_ns")), Us(r.query_ns.Percentile(0.5)),
            Us(r.query_ns.Percentile(0.99)), Us(r.query_ns.Percentile(0.999)),
            Human(Throughput(r)));
        js += fmt::format("{}{{\"rate\":{},\"load\":{}}}", first ? "" : ",", rate,
                          LoadReportJson(run->options, r));
        first = false;
        if (r.TotalErrors() > 0) fail("reads", fmt::format("{} errors", r.TotalErrors()));
      }
      js += "]";
    }
  }
  js += "}}\n";
  std::string text = b.json ? js : md;
  std::fwrite(text.data(), 1, text.size(), stdout);
  if (!b.out.empty()) {
    std::ofstream out(b.out);
    out << text;
    if (!out) {
      PrintError(fmt::format("--out: cannot write '{}'", b.out));
      return kExitError;
    }
  }
  return failures == 0 ? kExitOk : kExitError;
}

}  // namespace conv::cmd
