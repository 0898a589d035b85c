// The performance page's scenarios. Everything the page says about a scenario lives
// in its entry here; bench_eval.cc runs and evaluates entries without knowing them.

#include "cmd/bench_scenarios.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <thread>

namespace conv::cmd {

namespace {

constexpr uint64_t kPlayers = 10'000;
constexpr uint64_t kBootstrapPlayers = 100'000;
constexpr uint64_t kFixedRate = 100'000;

std::string P50P99(const util::Histogram& h, double divisor, int decimals) {
  return fmt::format("{:.{}f} / {:.{}f}", static_cast<double>(h.Percentile(0.5)) / divisor,
                     decimals, static_cast<double>(h.Percentile(0.99)) / divisor, decimals);
}

std::string P3(uint64_t p50, uint64_t p99, uint64_t p999, double divisor, int decimals) {
  return fmt::format("{:.{}f} / {:.{}f} / {:.{}f}", static_cast<double>(p50) / divisor, decimals,
                     static_cast<double>(p99) / divisor, decimals,
                     static_cast<double>(p999) / divisor, decimals);
}

std::string Ops(double v) {
  return Human(v) + " ops/sec";
}

// The page's write scenario: 9 writers, 10,000 players, 70/20/10, no rate limit.
LoadOptions Writers(uint32_t subscribers = 0, uint64_t rate = 0, uint32_t readers = 0) {
  LoadOptions o;
  o.workers = 9;
  o.entities = kPlayers;
  o.subscribers = subscribers;
  o.rate = rate;
  o.readers = readers;
  return o;
}

std::string Plural(uint32_t n, const char* what) {
  return fmt::format("{} {}{}", n, what, n == 1 ? "" : "s");
}

const BenchRun* Find(const std::vector<BenchRun>& runs, const std::string& label) {
  for (const BenchRun& r : runs) {
    if (r.label == label && r.ok()) return &r;
  }
  return nullptr;
}

Scenario Write() {
  Scenario s;
  s.name = "write";
  s.title = "Write throughput (no subscribers)";
  s.runs = {{"9 writers", "", "", {}, Writers()}};
  s.load_tables = true;
  s.single_run = true;
  s.notes = [](const std::vector<BenchRun>& runs) -> std::vector<std::string> {
    if (runs.empty() || !runs[0].ok()) return {};
    unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    return {fmt::format("Per core: {} over {} cores.", Ops(runs[0].report.Throughput() / cores),
                        cores)};
  };
  s.outro =
      "Page: 3.7M ops/sec on a 10-core laptop (~370K per core); design target 200,000 ASSERT/s "
      "per partition per core.";
  return s;
}

Scenario Subscribers() {
  Scenario s;
  s.name = "subscribers";
  s.title = "Write throughput with subscribers";
  s.intro =
      "The write scenario (9 workers, 10,000 players, 70/20/10) with 0, 1, 10 and 100 "
      "subscribers, each its own connection subscribed to every player; writers start once "
      "every subscriber is live. Latency: a subscriber's receive wall time minus the change's "
      "ts (the newest op ts of the entity in its window, stamped by the writer when it "
      "generated the op), over every change received. Converged: after every writer's last "
      "ACK one more source asserts a sentinel entity; the time until the last subscriber "
      "receives that change (it comes after every earlier window, so it includes the "
      "sentinel's own window).";
  s.groups = {{"unlimited", "Unlimited write rate (the page's scenario):"},
              {"fixed_rate", fmt::format("The same at a fixed {} write rate, below saturation (at "
                                         "saturation the latency is the writers' queue in the "
                                         "server: see below):",
                                         Ops(kFixedRate))}};
  for (uint32_t n : {0u, 1u, 10u, 100u}) {
    s.runs.push_back(
        {Plural(n, "subscriber"), "unlimited", "", {{"subscribers", n}, {"rate", 0}}, Writers(n)});
  }
  for (uint32_t n : {1u, 10u, 100u}) {
    s.runs.push_back({fmt::format("{} at {}", Plural(n, "subscriber"), Ops(kFixedRate)),
                      "fixed_rate",
                      "",
                      {{"subscribers", n}, {"rate", kFixedRate}},
                      Writers(n, kFixedRate)});
  }
  auto subs = [](const BenchRun& r) { return r.options.subscribers > 0; };
  s.columns = {
      {"Subscribers",
       [](const BenchRun& r, auto&) { return fmt::format("{}", r.options.subscribers); }},
      {"Write throughput", [](const BenchRun& r, auto&) { return Ops(r.report.Throughput()); }},
      {"vs none",
       [](const BenchRun& r, const std::vector<BenchRun>& runs) -> std::string {
         const BenchRun* none = Find(runs, "0 subscribers");
         if (r.options.rate != 0 || none == nullptr || none->report.Throughput() <= 0) return "—";
         return fmt::format("{:.0f}%", 100.0 * r.report.Throughput() / none->report.Throughput());
       }},
      {"ACK p50 / p99 ms",
       [](const BenchRun& r, auto&) { return P50P99(r.report.ack_latency_ns, 1e6, 2); }},
      {"Notifications/sec (all)",
       [subs](const BenchRun& r, auto&) {
         return subs(r) ? Human(r.report.NotificationRate()) : "—";
       }},
      {"Per subscriber",
       [subs](const BenchRun& r, auto&) -> std::string {
         if (!subs(r)) return "—";
         Spread rate = SummarizeSubscribers(r.report).rate;
         return fmt::format("{} — {}", Human(rate.min), Human(rate.max));
       }},
      {"Latency p50 / p99 / p999 ms",
       [subs](const BenchRun& r, auto&) -> std::string {
         const util::Histogram& h = r.report.notify_latency_us;
         return subs(r) ? P3(h.Percentile(0.5), h.Percentile(0.99), h.Percentile(0.999), 1e3, 2)
                        : "—";
       }},
      {"Conflations (changes merged)",
       [subs](const BenchRun& r, auto&) -> std::string {
         return subs(r) ? fmt::format("{} ({})", r.report.StatDelta("conflations"),
                                      r.report.StatDelta("conflated_changes"))
                        : "—";
       }},
      {"Converged after writers drained (max)",
       [subs](const BenchRun& r, auto&) -> std::string {
         if (!subs(r)) return "—";
         Spread c = SummarizeSubscribers(r.report).converge_ms;
         size_t n = r.report.subscribers.size();
         return c.n == n ? fmt::format("{:.1f} ms", c.max)
                         : fmt::format("{} of {} never", n - c.n, n);
       }},
  };
  s.targets = {
      {"Write throughput against none", Metric::kThroughputShare, false, 70, 0,
       [](const LoadOptions& o) { return o.subscribers == 100 && o.rate == 0; }, false,
       "0 subscribers"},
      {"Notification latency p99 within window + 2 ms", Metric::kNotifyP99Ms, true, 2, 1,
       [](const LoadOptions& o) { return o.subscribers <= 10; }},
      {"Every subscriber holds the final state after the writers drained", Metric::kConvergeMs,
       true, 100, 0, nullptr, true},
  };
  s.outro =
      "Page: not yet measured; design target: notification latency within one coalescing "
      "window of the last ASSERT. At an unlimited rate the writers keep up to their credit "
      "of ops in flight and the server queues what it reads in the partitions, so an op "
      "waits behind that queue before its window can close: the latency there is the write "
      "path's queueing, the same delay an ACK sees.";
  return s;
}

Scenario Reads() {
  Scenario s;
  s.name = "reads";
  s.title = "Point read latency";
  s.intro =
      "One reader issues QUERYs back to back (one outstanding) while writers run at a fixed "
      "rate, after every entity was written once. Server: from the QUERY frame handled to "
      "its RESULT encoded (design target 5 µs p50, 20 µs p99). Round trip: what the reader "
      "saw over loopback.";
  for (uint64_t rate : {uint64_t{0}, uint64_t{100'000}, uint64_t{200'000}}) {
    LoadOptions o;
    o.workers = rate == 0 ? 0 : 2;
    o.rate = rate;
    o.readers = 1;
    o.entities = kPlayers;
    o.mix = "100/0/0";
    s.runs.push_back(
        {Ops(static_cast<double>(rate)) + " of writes", "", "", {{"rate", rate}}, o, kPlayers});
  }
  auto stat = [](const BenchRun& r, const char* name) {
    return r.report.Stat(r.report.stats_after, name);
  };
  s.columns = {
      {"Background write rate",
       [](const BenchRun& r, auto&) { return Ops(static_cast<double>(r.options.rate)); }},
      {"Queries/sec",
       [](const BenchRun& r, auto&) {
         return fmt::format("{:.0f}",
                            static_cast<double>(r.report.query_ns.count()) / r.report.seconds);
       }},
      {"Server p50 / p99 / p999 µs",
       [stat](const BenchRun& r, auto&) {
         return P3(stat(r, "query_p50_ns"), stat(r, "query_p99_ns"), stat(r, "query_p999_ns"), 1e3,
                   1);
       }},
      {"Round trip p50 / p99 / p999 µs",
       [](const BenchRun& r, auto&) {
         const util::Histogram& h = r.report.query_ns;
         return P3(h.Percentile(0.5), h.Percentile(0.99), h.Percentile(0.999), 1e3, 1);
       }},
      {"Writes acked/sec", [](const BenchRun& r, auto&) { return Human(r.report.Throughput()); }},
      {"ACK p50 / p99 ms",
       [](const BenchRun& r, auto&) -> std::string {
         return r.options.rate == 0 ? "—" : P50P99(r.report.ack_latency_ns, 1e6, 2);
       }},
  };
  s.targets = {
      {"QUERY server time p50", Metric::kQueryServerP50Us, true, 5},
      {"QUERY server time p99", Metric::kQueryServerP99Us, true, 20},
  };
  return s;
}

Scenario Bootstrap() {
  Scenario s;
  s.name = "bootstrap";
  s.title = "Subscriber bootstrap";
  s.intro =
      "100,000 players written once each (one ASSERT, acknowledged before the subscriber "
      "starts), then one subscriber with bootstrap and no writers.";
  LoadOptions o;
  o.workers = 0;
  o.subscribers = 1;
  o.bootstrap = true;
  o.entities = kBootstrapPlayers;
  s.runs = {{"1 subscriber", "", "", {}, o, kBootstrapPlayers, kBootstrapPlayers}};
  s.single_run = true;
  s.columns = {
      {"Entities received",
       [](const BenchRun& r, auto&) {
         return fmt::format("{}", SummarizeSubscribers(r.report).entities_total);
       }},
      {"Server holds",
       [](const BenchRun& r, auto&) {
         return fmt::format("{}", r.report.Stat(r.report.stats_after, "entities"));
       }},
      {"Time to receive the complete bootstrap (SUBSCRIBE → SNAPSHOT_END)",
       [](const BenchRun& r, auto&) {
         return fmt::format("{:.0f} ms", SummarizeSubscribers(r.report).bootstrap_ms.max);
       }},
      {"Rate",
       [](const BenchRun& r, auto&) {
         SubscriberSummary sum = SummarizeSubscribers(r.report);
         double secs = sum.bootstrap_ms.max / 1e3;
         return Human(secs > 0 ? static_cast<double>(sum.entities_total) / secs : 0) +
                " entities/sec";
       }},
  };
  s.targets = {
      {"Bootstrap of 100,000 entities, the page's design target", Metric::kBootstrapS, true, 2},
      {"Bootstrap of 100,000 entities, this project's target", Metric::kBootstrapS, true, 0.3},
  };
  return s;
}

Scenario Coalescing() {
  Scenario s;
  s.name = "coalescing";
  s.title = "Coalescing efficiency";
  LoadOptions o = Writers();
  o.hot_pct = 10;
  s.runs = {{"9 writers, 10% hot", "", "", {}, o}};
  s.load_tables = true;
  s.single_run = true;
  auto delta = [](const BenchRun& r, const char* name) { return r.report.StatDelta(name); };
  auto ratio = [](uint64_t ops, uint64_t records) {
    return fmt::format(
        "{:.1f} : 1", records == 0 ? 0.0 : static_cast<double>(ops) / static_cast<double>(records));
  };
  s.columns = {
      {"Ops in",
       [delta](const BenchRun& r, auto&) { return fmt::format("{}", delta(r, "window_ops")); }},
      {"WAL claim records",
       [delta](const BenchRun& r, auto&) { return fmt::format("{}", delta(r, "claim_changes")); }},
      {"Ratio", [=](const BenchRun& r,
                    auto&) { return ratio(delta(r, "window_ops"), delta(r, "claim_changes")); }},
      {"Ops in, entities updated more than 10 times in a window",
       [delta](const BenchRun& r, auto&) { return fmt::format("{}", delta(r, "hot_window_ops")); }},
      {"Their claim records",
       [delta](const BenchRun& r, auto&) {
         return fmt::format("{}", delta(r, "hot_claim_changes"));
       }},
      {"Their ratio",
       [=](const BenchRun& r, auto&) {
         return ratio(delta(r, "hot_window_ops"), delta(r, "hot_claim_changes"));
       }},
  };
  s.targets = {{"Coalescing of entities updated more than 10 times per window",
                Metric::kHotCoalescing, false, 10}};
  s.outro =
      "A claim is (entity, source): with 9 writers, a hot entity has up to 9 claims, each "
      "logged once per window.";
  return s;
}

Scenario Saturation() {
  Scenario s;
  s.name = "saturation";
  s.title = "Latency at saturation";
  s.intro =
      "The write scenario (9 workers, 10,000 players, 70/20/10, no rate limit) with one point "
      "reader, then with 1, 10 and 100 subscribers (as in the subscribers scenario), and one "
      "reader alone on an idle server holding the 10,000 players. ACK latency: from an op's "
      "generation to the receipt of the first ACK covering it, over every acknowledged op. "
      "Notification latency: receive wall time minus the change's ts. QUERY: one reader, one "
      "QUERY outstanding; round trip as the reader saw it, server side from STATS.";
  s.runs = {
      {"9 writers + 1 reader", "", "reader", {}, Writers(0, 0, 1)},
      {"9 writers + 1 subscriber", "", "subscribers_1", {}, Writers(1)},
      {"9 writers + 10 subscribers", "", "subscribers_10", {}, Writers(10)},
      {"9 writers + 100 subscribers", "", "subscribers_100", {}, Writers(100)},
  };
  LoadOptions idle;
  idle.workers = 0;
  idle.readers = 1;
  idle.entities = kPlayers;
  s.runs.push_back({"1 reader alone (idle server)", "", "idle_reader", {}, idle, kPlayers});
  auto query_server_p99 = [](const BenchRun& r) {
    return r.report.Stat(r.report.stats_after, "query_p99_ns");
  };
  s.columns = {
      {"Run", [](const BenchRun& r, auto&) { return r.label; }},
      {"Write throughput",
       [](const BenchRun& r, auto&) -> std::string {
         return r.options.workers > 0 ? Ops(r.report.Throughput()) : "—";
       }},
      {"ACK p50 / p99 ms",
       [](const BenchRun& r, auto&) -> std::string {
         return r.options.workers > 0 ? P50P99(r.report.ack_latency_ns, 1e6, 2) : "—";
       }},
      {"Notification p99 ms",
       [](const BenchRun& r, auto&) -> std::string {
         return r.options.subscribers > 0
                    ? fmt::format(
                          "{:.2f}",
                          static_cast<double>(r.report.notify_latency_us.Percentile(0.99)) / 1e3)
                    : "—";
       }},
      {"QUERY round trip p50 / p99 µs",
       [](const BenchRun& r, auto&) -> std::string {
         return r.options.readers > 0 ? P50P99(r.report.query_ns, 1e3, 1) : "—";
       }},
      {"QUERY server p99 µs",
       [=](const BenchRun& r, auto&) -> std::string {
         return r.options.readers > 0
                    ? fmt::format("{:.1f}", static_cast<double>(query_server_p99(r)) / 1e3)
                    : "—";
       }},
  };
  s.targets = {
      {"ACK latency p99 within 3 windows", Metric::kAckP99Ms, true, 0, 3},
      {"Notification latency p99 within 2 windows", Metric::kNotifyP99Ms, true, 0, 2},
  };
  s.notes = [query_server_p99](const std::vector<BenchRun>& runs) -> std::vector<std::string> {
    const BenchRun* busy = Find(runs, "9 writers + 1 reader");
    const BenchRun* idle = Find(runs, "1 reader alone (idle server)");
    if (busy == nullptr) return {};
    auto us = [](uint64_t ns) { return fmt::format("{:.1f} µs", static_cast<double>(ns) / 1e3); };
    std::string line =
        fmt::format("QUERY round trip p99 at saturation: {} (server side {})",
                    us(busy->report.query_ns.Percentile(0.99)), us(query_server_p99(*busy)));
    if (idle != nullptr) {
      line += fmt::format("; idle: {} (server side {})", us(idle->report.query_ns.Percentile(0.99)),
                          us(query_server_p99(*idle)));
    }
    return {line + "."};
  };
  return s;
}

std::string Thousands(uint64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string Bytes(double v) {
  return Human(v) + "B";
}

}  // namespace

uint64_t Tag(const BenchRun& run, const std::string& name) {
  for (const auto& [k, v] : run.tags) {
    if (k == name) return v;
  }
  return 0;
}

Scenario ScaleScenario(const std::vector<uint64_t>& entities) {
  Scenario s;
  s.name = "scale";
  s.title = "Cost as the state grows";
  s.intro =
      "For each size, a fresh server: every player asserted once from one source (pipelined, "
      "acknowledged), then the write scenario (9 workers, 70/20/10, no rate limit) over that "
      "many players, then a checkpoint of the whole state on the idle server, one subscriber "
      "bootstrapping every entity, and a restart (the server stopped without a final "
      "checkpoint; timed: a new `convergence serve` process on its data dir, from its start "
      "until it listens, as an operator restarts one). RSS: the bench "
      "process's resident set minus its own before the server started (the loaders make ids "
      "on demand, so what remains is the server's); per entity: its growth over the started, "
      "empty server (as a running Redis's growth is measured), over the entities held. A "
      "size after the first reuses memory the previous server freed, so its RSS is low by "
      "up to that much: measure one size per run for its memory.";
  for (uint64_t n : entities) {
    LoadOptions o = Writers();
    o.entities = n;
    s.runs.push_back({Thousands(n) + " entities", "", "", {{"entities", n}}, o});
  }
  // The state's own memory, as Redis's is measured (a running server's growth): the
  // total over the bench's own RSS, and per entity its growth over the started, empty
  // server.
  auto per_entity = [](const BenchRun& r, const char* rss, const char* held) {
    uint64_t bytes = Tag(r, rss);
    uint64_t started = Tag(r, "rss_started_bytes");
    uint64_t grown = bytes > started ? bytes - started : 0;
    uint64_t n = Tag(r, held);
    return fmt::format("{} ({:.0f} B/entity)", Bytes(static_cast<double>(bytes)),
                       n == 0 ? 0.0 : static_cast<double>(grown) / static_cast<double>(n));
  };
  auto ms = [](uint64_t us) { return fmt::format("{:.0f} ms", static_cast<double>(us) / 1e3); };
  s.columns = {
      {"Entities", [](const BenchRun& r, auto&) { return Thousands(r.options.entities); }},
      {"Preload (one source)",
       [ms](const BenchRun& r, auto&) {
         double secs = static_cast<double>(Tag(r, "populate_us")) / 1e6;
         return fmt::format("{} ({}/s)", ms(Tag(r, "populate_us")),
                            Human(secs > 0 ? static_cast<double>(r.options.entities) / secs : 0));
       }},
      {"RSS after preload",
       [per_entity](const BenchRun& r, auto&) {
         return per_entity(r, "rss_preloaded_bytes", "entities");
       }},
      {"Write throughput", [](const BenchRun& r, auto&) { return Ops(r.report.Throughput()); }},
      {"Claim records/s",
       [](const BenchRun& r, auto&) {
         return Human(static_cast<double>(r.report.StatDelta("claim_changes")) / r.report.seconds);
       }},
      {"ACK p50 / p99 ms",
       [](const BenchRun& r, auto&) { return P50P99(r.report.ack_latency_ns, 1e6, 2); }},
      {"RSS after writes",
       [per_entity](const BenchRun& r, auto&) {
         return per_entity(r, "rss_bytes", "state_entities");
       }},
      {"Checkpoint (idle)",
       [ms](const BenchRun& r, auto&) {
         return fmt::format("{}, {}", ms(Tag(r, "checkpoint_us")),
                            Bytes(static_cast<double>(Tag(r, "checkpoint_bytes"))));
       }},
      {"Bootstrap of the whole state",
       [ms](const BenchRun& r, auto&) {
         return fmt::format("{} ({} entities)", ms(Tag(r, "bootstrap_us")),
                            Thousands(Tag(r, "state_entities")));
       }},
      {"Restart", [ms](const BenchRun& r, auto&) { return ms(Tag(r, "restart_us")); }},
  };
  s.targets = {
      {"Bootstrap of 1,000,000 entities", Metric::kStateBootstrapS, true, 0.3, 0,
       [](const LoadOptions& o) { return o.entities == 1'000'000; }},
      {"Restart with 10,000,000 entities", Metric::kRestartS, true, 10, 0,
       [](const LoadOptions& o) { return o.entities == 10'000'000; }},
  };
  s.measure = MeasureScale;
  return s;
}

util::Result<std::vector<uint64_t>> ParseScaleEntities(const std::vector<std::string>& items) {
  std::vector<uint64_t> out;
  for (const std::string& item : items) {
    uint64_t n = 0;
    auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), n);
    if (item.empty() || ec != std::errc() || end != item.data() + item.size()) {
      return util::Status::Error(
          fmt::format("--scale-entities: '{}' is not a whole number of entities", item));
    }
    if (n < kMinScaleEntities || n > kMaxScaleEntities) {
      return util::Status::Error(
          fmt::format("--scale-entities: {} is out of range; each size must be {} to {} entities",
                      n, Thousands(kMinScaleEntities), Thousands(kMaxScaleEntities)));
    }
    if (std::find(out.begin(), out.end(), n) != out.end()) {
      return util::Status::Error(fmt::format("--scale-entities: {} is given twice", n));
    }
    out.push_back(n);
  }
  if (out.empty()) return util::Status::Error("--scale-entities: no size given");
  return out;
}

const std::vector<Scenario>& BenchScenarios() {
  static const std::vector<Scenario> kScenarios = {Write(),
                                                   Subscribers(),
                                                   Reads(),
                                                   Bootstrap(),
                                                   Coalescing(),
                                                   Saturation(),
                                                   ScaleScenario(kScaleEntities)};
  return kScenarios;
}

std::vector<std::string> BenchScenarioNames() {
  std::vector<std::string> names;
  for (const Scenario& s : BenchScenarios())
    names.push_back(s.name);
  return names;
}

}  // namespace conv::cmd
