#include "cmd/load.h"

#include <fmt/format.h>

#include <cstdio>

#include "cmd/common.h"
#include "cmd/load_run.h"
#include "cmd/report.h"
#include "cmd/workload.h"

namespace conv::cmd {

CLI::App* RegisterLoad(CLI::App& app, LoadOptions& o) {
  CLI::App* sub = app.add_subcommand(
      "load",
      "Generate load: writers (each its own source), subscribers and point readers; print a "
      "report");
  AddServerOption(
      *sub, o.server,
      "each writer connects to the first that takes it (following not_owner) and, after losing its "
      "connection, tries the list again for up to 10 s and resends what was not acknowledged");
  CLI::Option* workers =
      sub->add_option("--workers", o.workers,
                      "Writer connections, each a separate source (default 1; none with "
                      "--subscribers N --bootstrap)")
          ->capture_default_str();
  sub->add_option("--writer-threads", o.writer_threads,
                  "Threads the writers share, each polling its writers' connections: for many "
                  "--workers (0: one per writer)")
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
  sub->add_option("--html", o.html,
                  "Also write the report as one self-contained HTML page (charts of throughput "
                  "over time and latency CDFs) to this file");
  sub->add_option("--readers", o.readers,
                  "Connections issuing point QUERYs back to back, measuring latency")
      ->capture_default_str();
  sub->add_option("--subscribers", o.subscribers,
                  "Subscriber connections, each subscribed to all of --schema; measures "
                  "notification rate and latency")
      ->capture_default_str();
  sub->add_flag("--bootstrap", o.bootstrap,
                "Subscribers first receive the full state; reports the time to SNAPSHOT_END");
  sub->add_flag("--include-prev", o.include_prev,
                "Subscribers also receive each change's record as it was at the window start");
  sub->add_option("--auth-token-file", o.auth_token_file,
                  "File (mode 0600) holding the server's auth token")
      ->check(CLI::ExistingFile);
  AddTlsClientOptions(*sub, o.tls);
  // The page's bootstrap measurement (`--subscribers 1 --bootstrap`) times a
  // bootstrap alone: no writer unless --workers asks for some.
  sub->callback([&o, workers] {
    if (workers->count() == 0 && o.subscribers > 0 && o.bootstrap) o.workers = 0;
  });
  return sub;
}

util::Status ValidateLoadOptions(const LoadOptions& o) {
  if (o.workers > 1024) return util::Status::Error("--workers: at most 1024");
  if (o.readers > 1024) return util::Status::Error("--readers: at most 1024");
  if (o.writer_threads > 1024) return util::Status::Error("--writer-threads: at most 1024");
  if (o.subscribers > 1024) return util::Status::Error("--subscribers: at most 1024");
  if (o.bootstrap && o.subscribers == 0) {
    return util::Status::Error(
        "--bootstrap is for subscribers: add --subscribers N (N >= 1) to measure a bootstrap");
  }
  if (o.include_prev && o.subscribers == 0) {
    return util::Status::Error("--include-prev is for subscribers: add --subscribers N (N >= 1)");
  }
  if (o.workers == 0 && o.subscribers == 0 && o.readers == 0) {
    return util::Status::Error(
        "--workers 0: nothing to run; add --readers N to measure reads alone, or "
        "--subscribers N --bootstrap to measure a bootstrap alone");
  }
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

int RunLoad(const LoadOptions& o) {
  // Bad flags are reported before --html's file is created.
  if (auto st = ValidateLoadOptions(o); !st.ok()) {
    PrintError(st.message());
    return kExitError;
  }
  ReportFile html;
  if (!o.html.empty()) {
    if (auto st = html.Open("--html", o.html); !st.ok()) {
      PrintError(st.message());
      return kExitError;
    }
  }
  int code = kExitError;
  auto report = RunLoadGenerator(o, &code);
  if (!report.ok()) {
    PrintError(report.message());
    return code;
  }
  std::string text = o.json ? LoadJson(o, *report) + "\n" : LoadMarkdown(o, *report);
  std::fwrite(text.data(), 1, text.size(), stdout);
  if (html.is_open()) {
    if (auto st = html.Write(LoadHtml(o, *report)); !st.ok()) {
      PrintError(st.message());
      return kExitError;
    }
  }
  if (report->TotalErrors() > 0 || report->TotalAcked() != report->TotalSent()) {
    return kLoadExitRunErrors;
  }
  return kExitOk;
}

}  // namespace conv::cmd
