// The scale scenario's measurement: the cost of one state size, from the preload to
// the restart, on one embedded server (bench_scenarios.cc defines the table).

#include <fmt/format.h>

#include "cmd/bench_scenarios.h"
#include "cmd/bench_server.h"
#include "cmd/load_run.h"
#include "util/clock.h"

namespace conv::cmd {

namespace {

uint64_t MicrosSince(uint64_t t0_ns) {
  return (util::MonoNanos() - t0_ns) / 1000;
}

uint64_t Above(uint64_t rss, uint64_t base) {
  return rss > base ? rss - base : 0;
}

}  // namespace

BenchRun MeasureScale(const RunSpec& spec, const BenchEnv& env) {
  BenchRun run{spec.label, spec.group, spec.key, spec.tags, spec.options, {}, ""};
  run.options.duration = env.duration;
  run.options.quiet = true;
  if (!env.server.empty()) {
    run.error =
        "the scale scenario measures an embedded server (its memory, checkpoint and restart), "
        "not --server";
    return run;
  }
  const uint64_t n = spec.options.entities;
  auto tag = [&run](const char* name, uint64_t v) { run.tags.emplace_back(name, v); };
  uint64_t rss_base = ProcessRssBytes();
  EmbeddedServer server(env.fsync);
  if (auto st = server.Start(); !st.ok()) {
    run.error = st.message();
    return run;
  }
  run.options.server = server.address();
  tag("rss_started_bytes", Above(ProcessRssBytes(), rss_base));

  uint64_t t0 = util::MonoNanos();
  if (auto st = PopulateAll(run.options.server, run.options.tls, run.options.schema, n); !st.ok()) {
    run.error = st.message();
    return run;
  }
  tag("populate_us", MicrosSince(t0));
  tag("rss_preloaded_bytes", Above(ProcessRssBytes(), rss_base));

  int code = 0;
  auto report = RunLoadGenerator(run.options, &code);
  if (!report.ok()) {
    run.error = report.message();
    return run;
  }
  run.report = std::move(report).value();
  tag("rss_bytes", Above(ProcessRssBytes(), rss_base));
  uint64_t held = server.engine().Stats().totals.entities;
  tag("state_entities", held);

  t0 = util::MonoNanos();
  if (auto st = server.engine().Checkpoint(); !st.ok()) {
    run.error = "checkpoint: " + st.message();
    return run;
  }
  tag("checkpoint_us", MicrosSince(t0));
  engine::CheckpointCounters cp = server.engine().Stats().checkpoints;
  tag("checkpoint_bytes", cp.last_bytes);
  tag("checkpoint_records", cp.last_records);

  LoadOptions b;
  b.server = run.options.server;
  b.schema = run.options.schema;
  b.workers = 0;
  b.subscribers = 1;
  b.bootstrap = true;
  b.entities = n;
  b.quiet = true;
  auto boot = RunLoadGenerator(b, &code);
  if (!boot.ok()) {
    run.error = "bootstrap: " + boot.message();
    return run;
  }
  SubscriberSummary sum = SummarizeSubscribers(*boot);
  if (boot->TotalErrors() > 0 || sum.entities_total != held) {
    run.error = fmt::format("bootstrap: {} entities received of {} held{}", sum.entities_total,
                            held, boot->TotalErrors() > 0 ? "; " + boot->DescribeErrors() : "");
    return run;
  }
  tag("bootstrap_us", static_cast<uint64_t>(sum.bootstrap_ms.max * 1e3));

  // The restart an operator sees: a new process on the stopped server's data dir.
  server.Stop();
  auto binary = ThisBinary();
  if (!binary.ok()) {
    run.error = "restart: " + binary.message();
    return run;
  }
  auto restarted = RestartInChild(*binary, server.data_dir(), env.fsync);
  if (!restarted.ok()) {
    run.error = "restart: " + restarted.message();
    return run;
  }
  tag("restart_us", restarted->listen_us);
  if (restarted->entities != held) {
    run.error = fmt::format("restart: {} entities recovered of {} held", restarted->entities, held);
  }
  return run;
}

}  // namespace conv::cmd
