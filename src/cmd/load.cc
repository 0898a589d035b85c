#include "cmd/load.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "cmd/common.h"
#include "cmd/load_worker.h"
#include "cmd/workload.h"
#include "net/client.h"
#include "util/clock.h"
#include "util/duration.h"
#include "util/json.h"

namespace conv::cmd {

CLI::App* RegisterLoad(CLI::App& app, LoadOptions& o) {
  CLI::App* sub = app.add_subcommand(
      "load", "Generate load: writers (each its own source) and point readers; print a report");
  sub->add_option("--server", o.server, "Server address, HOST:PORT")->capture_default_str();
  sub->add_option("--workers", o.workers, "Writer connections, each a separate source")
      ->capture_default_str();
  sub->add_option("--entities", o.entities, "Entity pool size")->capture_default_str();
  sub->add_option("--schema", o.schema, "Schema to write")->capture_default_str();
  sub->add_option("--rate", o.rate, "Total ops/s over all workers (0: unlimited)")
      ->capture_default_str();
  sub->add_option("--mix", o.mix, "ASSERT/PATCH/RETRACT percentages")->capture_default_str();
  sub->add_option("--hot-pct", o.hot_pct,
                  "That percent of the entities receives 90% of the writes (0: uniform)")
      ->capture_default_str();
  AddDurationOption(*sub, "--duration", o.duration, "How long to write, e.g. 10s");
  sub->add_flag("--quiet", o.quiet, "No live progress line");
  sub->add_flag("--json", o.json, "Print the report as JSON");
  sub->add_option("--readers", o.readers,
                  "Connections issuing point QUERYs back to back, measuring latency")
      ->capture_default_str();
  sub->add_option("--auth-token-file", o.auth_token_file,
                  "File (mode 0600) holding the server's auth token")
      ->check(CLI::ExistingFile);
  return sub;
}

namespace {

util::Status Validate(const LoadOptions& o) {
  if (o.workers == 0 && !(o.allow_no_writers && o.readers > 0)) {
    return util::Status::Error("--workers 0: at least one writer is needed (the load is writes)");
  }
  if (o.workers > 1024) return util::Status::Error("--workers: at most 1024");
  if (o.readers > 1024) return util::Status::Error("--readers: at most 1024");
  if (o.entities == 0) return util::Status::Error("--entities 0: the entity pool is empty");
  if (o.entities > 100'000'000) return util::Status::Error("--entities: at most 100,000,000");
  if (o.hot_pct >= 100) {
    return util::Status::Error(
        fmt::format("--hot-pct {}: must be below 100 (0 for a uniform spread)", o.hot_pct));
  }
  if (o.duration.count() <= 0) return util::Status::Error("--duration must be above 0");
  if (auto m = ParseMix(o.mix); !m.ok()) return m.status();
  return util::Status::Ok();
}

std::string Human(double v) {
  if (v >= 1e9) return fmt::format("{:.2f}G", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.2f}M", v / 1e6);
  if (v >= 1e4) return fmt::format("{:.0f}K", v / 1e3);
  if (v >= 1e3) return fmt::format("{:.1f}K", v / 1e3);
  return fmt::format("{:.0f}", v);
}

std::string Micros(uint64_t ns) {
  return fmt::format("{:.1f}", static_cast<double>(ns) / 1e3);
}

void ReaderLoop(const LoadOptions& o, const engine::Schema& schema, const std::string& token,
                uint64_t seed, const std::atomic<bool>& stop, util::Histogram* hist,
                uint64_t* found, std::string* error) {
  net::Hello hello;
  hello.auth_token = token;
  auto c = net::Client::Connect(o.server, hello);
  if (!c.ok()) {
    *error = c.message();
    return;
  }
  Workload w(schema, o.entities, 0, Mix{}, seed);
  while (!stop.load(std::memory_order_relaxed)) {
    const std::string& id = w.Id(w.NextEntity());
    uint64_t t0 = util::MonoNanos();
    auto r = (*c)->Query(schema, id, false);
    uint64_t t1 = util::MonoNanos();
    if (!r.ok()) {
      *error = r.message();
      return;
    }
    hist->Record(t1 - t0);
    if (r->found) ++*found;
  }
}

}  // namespace

uint64_t LoadReport::Stat(const net::StatList& s, const std::string& name) const {
  for (const auto& [n, v] : s) {
    if (n == name) return v;
  }
  return 0;
}

double LoadReport::CoalescingRatio() const {
  uint64_t ops = Stat(stats_after, "window_ops") - Stat(stats_before, "window_ops");
  uint64_t changes = Stat(stats_after, "claim_changes") - Stat(stats_before, "claim_changes");
  return changes == 0 ? 0 : static_cast<double>(ops) / static_cast<double>(changes);
}

uint64_t LoadReport::TotalSent() const {
  uint64_t n = 0;
  for (const auto& w : workers)
    n += w.sent;
  return n;
}
uint64_t LoadReport::TotalAcked() const {
  uint64_t n = 0;
  for (const auto& w : workers)
    n += w.acked;
  return n;
}
uint64_t LoadReport::TotalErrors() const {
  uint64_t n = reader_errors;
  for (const auto& w : workers)
    n += w.errors;
  return n;
}

util::Result<LoadReport> RunLoadGenerator(const LoadOptions& o, int* exit_code) {
  *exit_code = kExitError;
  if (auto st = Validate(o); !st.ok()) return st;
  std::string token;
  if (!o.auth_token_file.empty()) {
    auto t = ReadTokenFile(o.auth_token_file);
    if (!t.ok()) return t.status();
    token = *t;
  }
  net::Hello hello;
  hello.auth_token = token;
  auto control = net::Client::Connect(o.server, hello);
  if (!control.ok()) {
    *exit_code = kLoadExitConnect;
    return control.status();
  }
  const engine::Schema* found = (*control)->FindSchema(o.schema);
  if (found == nullptr) {
    *exit_code = kLoadExitSchema;
    std::string known;
    for (const auto& s : (*control)->welcome().schemas)
      known += (known.empty() ? "" : ", ") + s.name;
    return util::Status::Error(
        fmt::format("--schema '{}' is not known to the server (it knows: {})", o.schema, known));
  }
  const engine::Schema schema = *found;
  LoadReport report;
  if (auto s = (*control)->Stats(); s.ok()) report.stats_before = *s;

  std::vector<std::unique_ptr<LoadWorker>> workers;
  for (uint32_t i = 0; i < o.workers; ++i) {
    uint64_t rate = o.rate == 0 ? 0 : std::max<uint64_t>(1, o.rate / o.workers);
    workers.push_back(std::make_unique<LoadWorker>(
        o, schema, fmt::format("{}-{}", o.source_prefix, i + 1), token, rate, 1000 + i));
  }
  std::atomic<bool> stop_readers{false};
  std::vector<util::Histogram> hists(o.readers);
  std::vector<uint64_t> founds(o.readers, 0);
  std::vector<std::string> reader_errors(o.readers);
  std::vector<std::thread> threads;

  auto start = std::chrono::steady_clock::now();
  auto end = start + o.duration;
  for (uint32_t i = 0; i < o.readers; ++i) {
    threads.emplace_back(ReaderLoop, std::cref(o), std::cref(schema), std::cref(token), 5000 + i,
                         std::cref(stop_readers), &hists[i], &founds[i], &reader_errors[i]);
  }
  std::atomic<size_t> running{workers.size()};
  std::mutex mu;
  std::condition_variable cv;
  for (auto& w : workers) {
    threads.emplace_back([&, wp = w.get()] {
      wp->Run(end, std::chrono::seconds(10));
      if (running.fetch_sub(1) == 1) {
        std::lock_guard lock(mu);
        cv.notify_all();
      }
    });
  }
  bool progress = !o.quiet && !o.json && ::isatty(STDOUT_FILENO);
  {
    std::unique_lock lock(mu);
    uint64_t last = 0;
    auto last_t = start;
    // Writers end by themselves (duration, then the drain); readers run until `end`.
    auto finished = [&] { return running.load() == 0 && std::chrono::steady_clock::now() >= end; };
    for (;;) {
      auto before = std::chrono::steady_clock::now();
      auto step =
          std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::seconds(1));
      if (before < end) step = std::min(step, end - before);
      if (cv.wait_for(lock, step, finished)) break;
      if (std::chrono::steady_clock::now() >= end) stop_readers = true;
      if (!progress) continue;
      uint64_t acked = 0;
      for (auto& w : workers)
        acked += w->acked_live();
      auto now = std::chrono::steady_clock::now();
      double dt = std::chrono::duration<double>(now - last_t).count();
      double elapsed = std::chrono::duration<double>(now - start).count();
      std::fprintf(stdout, "\r[%5.1fs] %s ops/s acked, %s total   ", elapsed,
                   Human(static_cast<double>(acked - last) / dt).c_str(),
                   Human(static_cast<double>(acked)).c_str());
      std::fflush(stdout);
      last = acked;
      last_t = now;
    }
  }
  stop_readers = true;
  for (auto& t : threads)
    t.join();
  if (progress) std::fprintf(stdout, "\r%60s\r", "");
  report.seconds = std::chrono::duration<double>(o.duration).count();
  for (auto& w : workers)
    report.workers.push_back(w->report());
  for (uint32_t i = 0; i < o.readers; ++i) {
    report.query_ns.Merge(hists[i]);
    report.queries_found += founds[i];
    if (!reader_errors[i].empty()) {
      ++report.reader_errors;
      if (report.first_reader_error.empty()) report.first_reader_error = reader_errors[i];
    }
  }
  if (auto s = (*control)->Stats(); s.ok()) report.stats_after = *s;
  *exit_code = kExitOk;
  return report;
}

std::string FormatLoadReport(const LoadOptions& o, const LoadReport& r) {
  Mix mix = *ParseMix(o.mix);
  std::string out;
  out += "Configuration:\n\n| Parameter | Value |\n|---|---|\n";
  out += fmt::format("| Server | {} |\n", o.server);
  out += fmt::format("| Workers | {} (each a separate source) |\n", o.workers);
  out += fmt::format("| Entity pool | {} ({} schema) |\n", o.entities, o.schema);
  out += fmt::format("| Operation mix | {}% ASSERT / {}% PATCH / {}% RETRACT |\n", mix.assert_pct,
                     mix.patch_pct, mix.retract_pct);
  out +=
      fmt::format("| Write pattern | {} |\n",
                  o.hot_pct == 0 ? std::string("uniform")
                                 : fmt::format("{}% of entities receive 90% of writes", o.hot_pct));
  out += fmt::format("| Rate limit | {} |\n", o.rate == 0 ? std::string("None (unlimited)")
                                                          : fmt::format("{} ops/sec", o.rate));
  out += fmt::format("| Duration | {} |\n", util::FormatDuration(o.duration));
  out += fmt::format("| Readers | {} |\n", o.readers);

  std::vector<double> rates;
  for (const auto& w : r.workers)
    rates.push_back(static_cast<double>(w.acked_in_time) / r.seconds);
  double total = 0;
  for (double x : rates)
    total += x;
  out += "\nResults:\n\n| Metric | Value |\n|---|---|\n";
  out += fmt::format("| Aggregate throughput | {} ops/sec |\n", Human(total));
  if (!rates.empty()) {
    auto [lo, hi] = std::minmax_element(rates.begin(), rates.end());
    out += fmt::format("| Per-worker average | ~{} ops/sec |\n",
                       Human(total / static_cast<double>(rates.size())));
    out += fmt::format("| Per-worker range | {} — {} ops/sec |\n", Human(*lo), Human(*hi));
  }
  out += fmt::format("| Total operations | {} |\n", Human(static_cast<double>(r.TotalSent())));
  out += fmt::format("| Acknowledged | {} ({}) |\n", Human(static_cast<double>(r.TotalAcked())),
                     r.TotalAcked() == r.TotalSent() ? "all" : "NOT all");
  out += fmt::format("| Errors | {} |\n", r.TotalErrors());
  out += fmt::format("| Server coalescing ratio | {:.2f} ops per claim change |\n",
                     r.CoalescingRatio());
  if (o.readers > 0) {
    out += fmt::format("| Queries | {} ({:.0f}/sec, {} found) |\n", r.query_ns.count(),
                       static_cast<double>(r.query_ns.count()) / r.seconds, r.queries_found);
    out += fmt::format("| Query round trip p50 / p99 / p999 | {} / {} / {} µs |\n",
                       Micros(r.query_ns.Percentile(0.5)), Micros(r.query_ns.Percentile(0.99)),
                       Micros(r.query_ns.Percentile(0.999)));
  }
  for (const auto& w : r.workers) {
    if (!w.first_error.empty())
      out += fmt::format("\nfirst error of {}: {}\n", w.source, w.first_error);
  }
  if (!r.first_reader_error.empty()) {
    out += fmt::format("\nfirst reader error: {}\n", r.first_reader_error);
  }
  return out;
}

std::string LoadReportJson(const LoadOptions& o, const LoadReport& r) {
  double total = 0;
  std::string workers;
  for (const auto& w : r.workers) {
    double rate = static_cast<double>(w.acked_in_time) / r.seconds;
    total += rate;
    if (!workers.empty()) workers += ',';
    workers += "{\"source\":";
    util::AppendJsonString(workers, w.source);
    workers += fmt::format(
        ",\"ops_per_sec\":{:.1f},\"sent\":{},\"acked\":{},\"errors\":{},\"reconnects\":{}", rate,
        w.sent, w.acked, w.errors, w.reconnects);
    if (!w.first_error.empty()) {
      workers += ",\"first_error\":";
      util::AppendJsonString(workers, w.first_error);
    }
    workers += '}';
  }
  std::string out = "{";
  out += fmt::format(
      "\"server\":\"{}\",\"workers\":{},\"entities\":{},\"schema\":\"{}\",\"mix\":\"{}\","
      "\"hot_pct\":{},\"rate\":{},\"duration_s\":{:.3f},\"readers\":{},",
      o.server, o.workers, o.entities, o.schema, o.mix, o.hot_pct, o.rate, r.seconds, o.readers);
  out += fmt::format(
      "\"ops_per_sec\":{:.1f},\"total_ops\":{},\"acked_ops\":{},\"errors\":{},"
      "\"coalescing_ratio\":{:.3f},",
      total, r.TotalSent(), r.TotalAcked(), r.TotalErrors(), r.CoalescingRatio());
  out += fmt::format(
      "\"queries\":{},\"query_found\":{},\"query_us\":{{\"p50\":{},\"p99\":{},\"p999\":{},"
      "\"max\":{}}},",
      r.query_ns.count(), r.queries_found, Micros(r.query_ns.Percentile(0.5)),
      Micros(r.query_ns.Percentile(0.99)), Micros(r.query_ns.Percentile(0.999)),
      Micros(r.query_ns.max()));
  out += "\"per_worker\":[" + workers + "]}";
  return out;
}

int RunLoad(const LoadOptions& o) {
  int code = kExitError;
  auto report = RunLoadGenerator(o, &code);
  if (!report.ok()) {
    PrintError(report.message());
    return code;
  }
  std::string text = o.json ? LoadReportJson(o, *report) + "\n" : FormatLoadReport(o, *report);
  std::fwrite(text.data(), 1, text.size(), stdout);
  if (report->TotalErrors() > 0 || report->TotalAcked() != report->TotalSent()) {
    return kLoadExitRunErrors;
  }
  return kExitOk;
}

}  // namespace conv::cmd
