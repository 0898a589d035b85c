#include "cmd/load.h"

#include <fmt/format.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "cmd/common.h"
#include "cmd/load_subscriber.h"
#include "cmd/load_worker.h"
#include "cmd/workload.h"
#include "net/client.h"
#include "util/clock.h"
#include "util/duration.h"
#include "util/json.h"

namespace conv::cmd {

CLI::App* RegisterLoad(CLI::App& app, LoadOptions& o) {
  CLI::App* sub = app.add_subcommand(
      "load",
      "Generate load: writers (each its own source), subscribers and point readers; print a "
      "report");
  sub->add_option("--server", o.server, "Server address, HOST:PORT")->capture_default_str();
  CLI::Option* workers =
      sub->add_option("--workers", o.workers,
                      "Writer connections, each a separate source (default 1; none with "
                      "--subscribers N --bootstrap)")
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
  // The page's bootstrap measurement (`--subscribers 1 --bootstrap`) times a
  // bootstrap alone: no writer unless --workers asks for some.
  sub->callback([&o, workers] {
    if (workers->count() == 0 && o.subscribers > 0 && o.bootstrap) o.workers = 0;
  });
  return sub;
}

namespace {

util::Status Validate(const LoadOptions& o) {
  if (o.workers > 1024) return util::Status::Error("--workers: at most 1024");
  if (o.readers > 1024) return util::Status::Error("--readers: at most 1024");
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
  ::pthread_setname_np(::pthread_self(), "load-reader");
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

uint64_t LoadReport::StatDelta(const std::string& name) const {
  uint64_t a = Stat(stats_after, name);
  uint64_t b = Stat(stats_before, name);
  return a > b ? a - b : 0;
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
  uint64_t n = reader_errors + (sentinel_error.empty() ? 0 : 1);
  for (const auto& w : workers)
    n += w.errors;
  for (const auto& s : subscribers)
    n += s.errors;
  return n;
}
std::string LoadReport::DescribeErrors() const {
  std::string first = sentinel_error;
  for (const auto& w : workers) {
    if (first.empty() && !w.first_error.empty()) first = w.source + ": " + w.first_error;
  }
  for (size_t i = 0; i < subscribers.size(); ++i) {
    if (first.empty() && !subscribers[i].first_error.empty()) {
      first = fmt::format("subscriber {}: {}", i + 1, subscribers[i].first_error);
    }
  }
  if (first.empty()) first = first_reader_error;
  return fmt::format("{} errors (first: {})", TotalErrors(), first.empty() ? "?" : first);
}

uint64_t LoadReport::TotalChanges() const {
  uint64_t n = 0;
  for (const auto& s : subscribers)
    n += s.changes;
  return n;
}
uint64_t LoadReport::TotalNotifyFrames() const {
  uint64_t n = 0;
  for (const auto& s : subscribers)
    n += s.notify_frames;
  return n;
}
double LoadReport::NotificationRate() const {
  if (seconds <= 0) return 0;
  uint64_t n = 0;
  for (const auto& s : subscribers)
    n += s.changes_in_time;
  return static_cast<double>(n) / seconds;
}

namespace {

uint64_t ToNanos(std::chrono::steady_clock::time_point t) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

// How long the load waits for every subscriber's SNAPSHOT_END, and after the writers
// for every subscriber to receive the sentinel.
constexpr auto kLiveTimeout = std::chrono::seconds(300);
constexpr auto kSentinelTimeout = std::chrono::seconds(30);
// Subscribers that step over every change to measure its latency; the others count
// changes from NOTIFY headers.
constexpr uint32_t kLatencySubscribers = 10;

// Sends one op on `c` (a source) and waits for its ACK; fails on an ERROR for it.
util::Status SendAndAck(net::Client& c, const net::WriteOp& op) {
  std::string frame;
  net::EncodeWriteOp(frame, op);
  if (auto st = c.Send(frame); !st.ok()) return st;
  for (;;) {
    auto f = c.ReadFrame();
    if (!f.ok()) return f.status();
    if (f->type == static_cast<uint8_t>(net::FrameType::kAck)) {
      uint64_t seq;
      if (net::DecodeAck(f->payload, &seq) && seq >= op.seq) return util::Status::Ok();
    } else if (f->type == static_cast<uint8_t>(net::FrameType::kError)) {
      net::Error e;
      if (net::DecodeError(f->payload, &e)) {
        return util::Status::Error(fmt::format("{}: {}", net::ErrorCodeName(e.code), e.message));
      }
    }
  }
}

// After the writers drained: one more source asserts an entity of its own (a fresh
// id) and waits for its ACK; every subscriber that receives that change has received
// every window before it (NOTIFYs come in window order, and a conflated subscriber
// gets its merged changes before or with it). Then the entity is retracted again.
void RunSentinel(const LoadOptions& o, const engine::Schema& schema, const std::string& token,
                 uint64_t drained_ns, SubscriberClock& clock,
                 std::vector<std::unique_ptr<LoadSubscriber>>& subs, LoadReport& report) {
  net::Hello hello;
  hello.source = o.source_prefix + "-sentinel";
  hello.auth_token = token;
  auto c = net::Client::Connect(o.server, hello);
  if (!c.ok()) {
    report.sentinel_error = "sentinel writer: " + c.message();
    return;
  }
  net::Client& client = **c;
  uint64_t seq = client.welcome().last_applied_seq;
  Workload w(schema, 1, 0, Mix{}, 42);
  clock.sentinel_id = fmt::format("{}-sentinel-{}", o.source_prefix, util::WallMicros());
  clock.sentinel_armed.store(true, std::memory_order_release);
  net::WriteOp op;
  op.type = net::FrameType::kAssert;
  op.seq = ++seq;
  op.schema_id = schema.id;
  op.id = clock.sentinel_id;
  op.record = w.FullRecord();
  op.ts = util::WallMicros();
  uint64_t sent_ns = util::MonoNanos();
  if (auto st = SendAndAck(client, op); !st.ok()) {
    report.sentinel_error = "sentinel ASSERT: " + st.message();
    return;
  }
  uint64_t ack_ns = util::MonoNanos();
  report.sentinel_sent = true;
  report.sentinel_ack_ms = static_cast<double>(ack_ns - sent_ns) / 1e6;
  auto deadline = std::chrono::steady_clock::now() + kSentinelTimeout;
  for (;;) {
    bool all = true;
    for (const auto& s : subs)
      all = all && (s->got_sentinel() || s->failed());
    if (all || std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  for (size_t i = 0; i < subs.size(); ++i) {
    uint64_t got = subs[i]->sentinel_ns();
    if (got == 0) continue;
    report.subscribers[i].converge_ms = static_cast<double>(got - drained_ns) / 1e6;
    report.subscribers[i].sentinel_after_ack_ms =
        (static_cast<double>(got) - static_cast<double>(ack_ns)) / 1e6;
  }
  op.type = net::FrameType::kRetract;
  op.seq = ++seq;
  op.record = {};
  op.ts = util::WallMicros();
  if (auto st = SendAndAck(client, op); !st.ok()) {
    report.sentinel_error = "sentinel RETRACT: " + st.message();
  }
}

}  // namespace

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
    return util::Status::Error(
        fmt::format("--schema '{}' is not known to the server (it knows: {})", o.schema,
                    KnownSchemas((*control)->welcome())));
  }
  const engine::Schema schema = *found;
  LoadReport report;
  report.window_us = (*control)->welcome().window_us;
  if (auto s = (*control)->Stats(); s.ok()) report.stats_before = *s;
  bool progress = !o.quiet && !o.json && ::isatty(STDOUT_FILENO);

  // Subscribers first; the writers start once every one of them is live
  // (SNAPSHOT_END received), so that the writing phase is measured whole.
  SubscriberClock clock;
  std::vector<std::unique_ptr<LoadSubscriber>> subs;
  std::vector<std::thread> sub_threads;
  // Latency is measured on at most kLatencySubscribers of them, spread evenly.
  uint32_t stride =
      std::max<uint32_t>(1, (o.subscribers + kLatencySubscribers - 1) / kLatencySubscribers);
  for (uint32_t i = 0; i < o.subscribers; ++i) {
    subs.push_back(std::make_unique<LoadSubscriber>(o, schema, token, clock, i % stride == 0));
    if (i % stride == 0) ++report.latency_subscribers;
  }
  for (auto& s : subs) {
    sub_threads.emplace_back([sp = s.get()] {
      ::pthread_setname_np(::pthread_self(), "load-subscriber");
      sp->Run();
    });
  }
  auto sub_start = std::chrono::steady_clock::now();
  if (!subs.empty()) {
    auto deadline = sub_start + kLiveTimeout;
    auto next_print = sub_start + std::chrono::seconds(1);
    for (;;) {
      size_t live = 0;
      uint64_t entities = 0;
      for (const auto& s : subs) {
        live += (s->live() || s->failed()) ? 1 : 0;
        entities += s->entities_live();
      }
      auto now = std::chrono::steady_clock::now();
      if (live == subs.size() || now >= deadline) break;
      if (progress && now >= next_print) {
        std::fprintf(stdout, "\r[%5.1fs] subscribing: %zu/%zu live, %s snapshot entities   ",
                     std::chrono::duration<double>(now - sub_start).count(), live, subs.size(),
                     Human(static_cast<double>(entities)).c_str());
        std::fflush(stdout);
        next_print = now + std::chrono::seconds(1);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

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

  // Subscribers alone (a bootstrap measurement): the run ends once they are live.
  bool timed = o.workers > 0 || o.readers > 0;
  auto start = std::chrono::steady_clock::now();
  auto end = timed ? start + o.duration : start;
  clock.writers_start_ns.store(ToNanos(start));
  clock.writers_end_ns.store(ToNanos(end));
  for (uint32_t i = 0; i < o.readers; ++i) {
    threads.emplace_back(ReaderLoop, std::cref(o), std::cref(schema), std::cref(token), 5000 + i,
                         std::cref(stop_readers), &hists[i], &founds[i], &reader_errors[i]);
  }
  std::atomic<size_t> running{workers.size()};
  std::atomic<uint64_t> drained_ns{0};
  std::mutex mu;
  std::condition_variable cv;
  for (auto& w : workers) {
    threads.emplace_back([&, wp = w.get()] {
      ::pthread_setname_np(::pthread_self(), "load-writer");
      wp->Run(end, std::chrono::seconds(10));
      if (running.fetch_sub(1) == 1) {
        drained_ns.store(util::MonoNanos());
        std::lock_guard lock(mu);
        cv.notify_all();
      }
    });
  }
  if (timed) {
    std::unique_lock lock(mu);
    uint64_t last = 0;
    uint64_t last_changes = 0;
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
      uint64_t changes = 0;
      for (auto& s : subs)
        changes += s->changes_live();
      auto now = std::chrono::steady_clock::now();
      double dt = std::chrono::duration<double>(now - last_t).count();
      double elapsed = std::chrono::duration<double>(now - start).count();
      std::string notes;
      if (!subs.empty()) {
        notes = fmt::format(", {} changes/s notified",
                            Human(static_cast<double>(changes - last_changes) / dt));
      }
      std::fprintf(stdout, "\r[%5.1fs] %s ops/s acked, %s total%s   ", elapsed,
                   Human(static_cast<double>(acked - last) / dt).c_str(),
                   Human(static_cast<double>(acked)).c_str(), notes.c_str());
      std::fflush(stdout);
      last = acked;
      last_changes = changes;
      last_t = now;
    }
  }
  stop_readers = true;
  for (auto& t : threads)
    t.join();
  if (progress) std::fprintf(stdout, "\r%78s\r", "");
  report.seconds = timed ? std::chrono::duration<double>(o.duration).count()
                         : std::chrono::duration<double>(start - sub_start).count();
  for (auto& w : workers) {
    report.workers.push_back(w->report());
    report.ack_latency_ns.Merge(w->ack_latency_ns());
  }
  for (uint32_t i = 0; i < o.readers; ++i) {
    report.query_ns.Merge(hists[i]);
    report.queries_found += founds[i];
    if (!reader_errors[i].empty()) {
      ++report.reader_errors;
      if (report.first_reader_error.empty()) report.first_reader_error = reader_errors[i];
    }
  }
  report.subscribers.resize(subs.size());
  if (!subs.empty() && !workers.empty()) {
    RunSentinel(o, schema, token, drained_ns.load(), clock, subs, report);
  }
  clock.stop = true;
  for (auto& t : sub_threads)
    t.join();
  for (size_t i = 0; i < subs.size(); ++i) {
    SubscriberReport& r = report.subscribers[i];
    double converge = r.converge_ms;
    double after_ack = r.sentinel_after_ack_ms;
    r = subs[i]->report();
    r.converge_ms = converge;
    r.sentinel_after_ack_ms = after_ack;
    report.notify_latency_us.Merge(subs[i]->latency_us());
    if (r.errors == 0 && r.subscribe_ms < 0) {
      ++r.errors;
      r.first_error = fmt::format("no SNAPSHOT_END within {} s", kLiveTimeout.count());
    }
    if (r.errors == 0 && report.sentinel_sent && r.converge_ms < 0) {
      ++r.errors;
      r.first_error = fmt::format(
          "did not receive the final state (the sentinel change) within {} s after the writers "
          "drained",
          kSentinelTimeout.count());
    }
  }
  if (auto s = (*control)->Stats(); s.ok()) report.stats_after = *s;
  *exit_code = kExitOk;
  return report;
}

namespace {

struct Spread {
  double min = 0;
  double median = 0;
  double max = 0;
  size_t n = 0;
};

Spread SpreadOf(std::vector<double> v) {
  Spread s;
  s.n = v.size();
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.min = v.front();
  s.max = v.back();
  s.median = v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  return s;
}

std::string Ms(uint64_t us) {
  return fmt::format("{:.2f}", static_cast<double>(us) / 1e3);
}

std::string MsOfNs(uint64_t ns) {
  return fmt::format("{:.2f}", static_cast<double>(ns) / 1e6);
}

std::string SpreadJson(const Spread& s, int decimals) {
  return fmt::format("{{\"min\":{:.{}f},\"median\":{:.{}f},\"max\":{:.{}f}}}", s.min, decimals,
                     s.median, decimals, s.max, decimals);
}

}  // namespace

SubscriberSummary SummarizeSubscribers(const LoadReport& r) {
  SubscriberSummary s;
  std::vector<double> rates, boot, entities, converge, after_ack;
  for (const auto& sub : r.subscribers) {
    if (r.seconds > 0) rates.push_back(static_cast<double>(sub.changes_in_time) / r.seconds);
    if (sub.subscribe_ms >= 0) boot.push_back(sub.subscribe_ms);
    entities.push_back(static_cast<double>(sub.snapshot_entries));
    if (sub.converge_ms >= 0) {
      converge.push_back(sub.converge_ms);
      after_ack.push_back(sub.sentinel_after_ack_ms);
    }
  }
  auto put = [](const Spread& sp, double* lo, double* med, double* hi) {
    *lo = sp.min;
    *med = sp.median;
    *hi = sp.max;
  };
  put(SpreadOf(rates), &s.rate_min, &s.rate_median, &s.rate_max);
  put(SpreadOf(boot), &s.bootstrap_ms_min, &s.bootstrap_ms_median, &s.bootstrap_ms_max);
  put(SpreadOf(entities), &s.entities_min, &s.entities_median, &s.entities_max);
  Spread c = SpreadOf(converge);
  put(c, &s.converge_ms_min, &s.converge_ms_median, &s.converge_ms_max);
  s.converged = c.n;
  Spread a = SpreadOf(after_ack);
  put(a, &s.after_ack_ms_min, &s.after_ack_ms_median, &s.after_ack_ms_max);
  for (const auto& sub : r.subscribers)
    s.entities_total += sub.snapshot_entries;
  return s;
}

std::string FormatLoadReport(const LoadOptions& o, const LoadReport& r) {
  Mix mix = *ParseMix(o.mix);
  std::string out;
  out += "Configuration:\n\n| Parameter | Value |\n|---|---|\n";
  out += fmt::format("| Server | {} |\n", o.server);
  out += fmt::format("| Workers | {} |\n",
                     o.workers == 0 ? std::string("0 (no writers)")
                                    : fmt::format("{} (each a separate source)", o.workers));
  out += fmt::format("| Entity pool | {} ({} schema) |\n", o.entities, o.schema);
  out += fmt::format("| Operation mix | {}% ASSERT / {}% PATCH / {}% RETRACT |\n", mix.assert_pct,
                     mix.patch_pct, mix.retract_pct);
  out +=
      fmt::format("| Write pattern | {} |\n",
                  o.hot_pct == 0 ? std::string("uniform")
                                 : fmt::format("{}% of entities receive 90% of writes", o.hot_pct));
  out += fmt::format("| Rate limit | {} |\n", o.rate == 0 ? std::string("None (unlimited)")
                                                          : fmt::format("{} ops/sec", o.rate));
  out += fmt::format("| Duration | {} |\n",
                     o.workers == 0 && o.readers == 0
                         ? std::string("until every subscriber is live (no writers)")
                         : util::FormatDuration(o.duration));
  out += fmt::format("| Readers | {} |\n", o.readers);
  std::string flags;
  if (o.bootstrap) flags += ", bootstrap";
  if (o.include_prev) flags += ", include_prev";
  out += fmt::format("| Subscribers | {}{} |\n", o.subscribers,
                     o.subscribers == 0
                         ? std::string()
                         : " (each its own connection, all of the schema" + flags + ")");

  std::vector<double> rates;
  for (const auto& w : r.workers)
    rates.push_back(static_cast<double>(w.acked_in_time) / r.seconds);
  double total = 0;
  for (double x : rates)
    total += x;
  out += "\nResults:\n\n| Metric | Value |\n|---|---|\n";
  if (o.workers > 0) {
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
    const util::Histogram& a = r.ack_latency_ns;
    out += fmt::format(
        "| ACK latency p50 / p99 / p999 | {} / {} / {} ms (max {} ms; op generated → its ACK "
        "received) |\n",
        MsOfNs(a.Percentile(0.5)), MsOfNs(a.Percentile(0.99)), MsOfNs(a.Percentile(0.999)),
        MsOfNs(a.max()));
  }
  out += fmt::format("| Errors | {} |\n", r.TotalErrors());
  if (o.workers > 0) {
    out += fmt::format("| Server coalescing ratio | {:.2f} ops per claim change |\n",
                       r.CoalescingRatio());
  }
  if (o.readers > 0) {
    out += fmt::format("| Queries | {} ({:.0f}/sec, {} found) |\n", r.query_ns.count(),
                       static_cast<double>(r.query_ns.count()) / r.seconds, r.queries_found);
    out += fmt::format("| Query round trip p50 / p99 / p999 | {} / {} / {} µs |\n",
                       Micros(r.query_ns.Percentile(0.5)), Micros(r.query_ns.Percentile(0.99)),
                       Micros(r.query_ns.Percentile(0.999)));
  }
  if (o.subscribers > 0) {
    SubscriberSummary s = SummarizeSubscribers(r);
    if (o.workers > 0) {
      const util::Histogram& h = r.notify_latency_us;
      out += fmt::format("| Notifications received | {} changes in {} NOTIFY frames |\n",
                         Human(static_cast<double>(r.TotalChanges())), r.TotalNotifyFrames());
      out += fmt::format(
          "| Notification rate | {} changes/sec (per subscriber {} — {}, median {}) |\n",
          Human(r.NotificationRate()), Human(s.rate_min), Human(s.rate_max), Human(s.rate_median));
      out += fmt::format(
          "| Notification latency p50 / p99 / p999 | {} / {} / {} ms (max {} ms; window {} ms{}) "
          "|\n",
          Ms(h.Percentile(0.5)), Ms(h.Percentile(0.99)), Ms(h.Percentile(0.999)), Ms(h.max()),
          Ms(r.window_us),
          r.latency_subscribers < r.subscribers.size()
              ? fmt::format("; every change of {} subscribers spread over the {}",
                            r.latency_subscribers, r.subscribers.size())
              : "");
      out += fmt::format("| Server conflations | {} ({} changes merged) |\n",
                         r.StatDelta("conflations"), r.StatDelta("conflated_changes"));
      out += fmt::format("| Server notify lag p99 (op ts → NOTIFY queued) | {} ms |\n",
                         Ms(r.Stat(r.stats_after, "notify_lag_p99_us")));
      if (s.converged > 0) {
        out += fmt::format(
            "| Converged after writers drained | max {:.1f} ms (median {:.1f}); sentinel ACK → "
            "its change max {:.1f} ms |\n",
            s.converge_ms_max, s.converge_ms_median, s.after_ack_ms_max);
      }
    }
    if (o.bootstrap) {
      out += fmt::format(
          "| Bootstrap time (SUBSCRIBE → SNAPSHOT_END) | min {:.1f} / median {:.1f} / max {:.1f} "
          "ms |\n",
          s.bootstrap_ms_min, s.bootstrap_ms_median, s.bootstrap_ms_max);
      out += fmt::format(
          "| Bootstrap entities received | {} per subscriber{} |\n",
          s.entities_min == s.entities_max
              ? fmt::format("{:.0f}", s.entities_min)
              : fmt::format("{:.0f} — {:.0f}", s.entities_min, s.entities_max),
          r.subscribers.size() > 1 ? fmt::format(" ({} in all)", s.entities_total) : "");
    }
  }
  for (const auto& w : r.workers) {
    if (!w.first_error.empty())
      out += fmt::format("\nfirst error of {}: {}\n", w.source, w.first_error);
  }
  if (!r.first_reader_error.empty()) {
    out += fmt::format("\nfirst reader error: {}\n", r.first_reader_error);
  }
  for (size_t i = 0; i < r.subscribers.size(); ++i) {
    if (!r.subscribers[i].first_error.empty()) {
      out +=
          fmt::format("\nfirst error of subscriber {}: {}\n", i + 1, r.subscribers[i].first_error);
      break;
    }
  }
  if (!r.sentinel_error.empty()) out += fmt::format("\n{}\n", r.sentinel_error);
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
        ",\"ops_per_sec\":{:.1f},\"sent\":{},\"acked\":{},\"errors\":{},\"reconnects\":{},"
        "\"ack_p99_ms\":{}",
        rate, w.sent, w.acked, w.errors, w.reconnects, MsOfNs(w.ack_p99_ns));
    if (!w.first_error.empty()) {
      workers += ",\"first_error\":";
      util::AppendJsonString(workers, w.first_error);
    }
    workers += '}';
  }
  std::string out = "{";
  out += fmt::format(
      "\"server\":\"{}\",\"workers\":{},\"entities\":{},\"schema\":\"{}\",\"mix\":\"{}\","
      "\"hot_pct\":{},\"rate\":{},\"duration_s\":{:.3f},\"readers\":{},\"subscribers\":{},"
      "\"bootstrap\":{},\"include_prev\":{},\"window_us\":{},",
      o.server, o.workers, o.entities, o.schema, o.mix, o.hot_pct, o.rate, r.seconds, o.readers,
      o.subscribers, o.bootstrap, o.include_prev, r.window_us);
  out += fmt::format(
      "\"ops_per_sec\":{:.1f},\"total_ops\":{},\"acked_ops\":{},\"errors\":{},"
      "\"coalescing_ratio\":{:.3f},",
      total, r.TotalSent(), r.TotalAcked(), r.TotalErrors(), r.CoalescingRatio());
  const util::Histogram& a = r.ack_latency_ns;
  out += fmt::format(
      "\"ack_latency_ms\":{{\"p50\":{},\"p99\":{},\"p999\":{},\"max\":{}}},\"ack_latency_samples\":"
      "{},",
      MsOfNs(a.Percentile(0.5)), MsOfNs(a.Percentile(0.99)), MsOfNs(a.Percentile(0.999)),
      MsOfNs(a.max()), a.count());
  out += fmt::format(
      "\"queries\":{},\"query_found\":{},\"query_us\":{{\"p50\":{},\"p99\":{},\"p999\":{},"
      "\"max\":{}}},",
      r.query_ns.count(), r.queries_found, Micros(r.query_ns.Percentile(0.5)),
      Micros(r.query_ns.Percentile(0.99)), Micros(r.query_ns.Percentile(0.999)),
      Micros(r.query_ns.max()));
  if (o.subscribers > 0) {
    SubscriberSummary s = SummarizeSubscribers(r);
    const util::Histogram& h = r.notify_latency_us;
    uint64_t with_prev = 0;
    uint64_t sub_errors = 0;
    for (const auto& sub : r.subscribers) {
      with_prev += sub.with_prev;
      sub_errors += sub.errors;
    }
    out += fmt::format(
        "\"notifications\":{},\"notify_frames\":{},\"notifications_with_prev\":{},"
        "\"notifications_per_sec\":{:.1f},\"notifications_per_sec_per_subscriber\":{},",
        r.TotalChanges(), r.TotalNotifyFrames(), with_prev, r.NotificationRate(),
        SpreadJson({s.rate_min, s.rate_median, s.rate_max, 0}, 1));
    out += fmt::format(
        "\"notify_latency_ms\":{{\"p50\":{},\"p99\":{},\"p999\":{},\"max\":{}}},"
        "\"latency_samples\":{},\"latency_subscribers\":{},",
        Ms(h.Percentile(0.5)), Ms(h.Percentile(0.99)), Ms(h.Percentile(0.999)), Ms(h.max()),
        h.count(), r.latency_subscribers);
    out += fmt::format(
        "\"server_conflations\":{},\"server_conflated_changes\":{},"
        "\"server_notify_lag_p99_us\":{},\"subscriber_errors\":{},",
        r.StatDelta("conflations"), r.StatDelta("conflated_changes"),
        r.Stat(r.stats_after, "notify_lag_p99_us"), sub_errors);
    out += fmt::format(
        "\"bootstrap_ms\":{},\"bootstrap_entities\":{},\"bootstrap_entities_total\":{},",
        SpreadJson({s.bootstrap_ms_min, s.bootstrap_ms_median, s.bootstrap_ms_max, 0}, 3),
        SpreadJson({s.entities_min, s.entities_median, s.entities_max, 0}, 0), s.entities_total);
    out += fmt::format(
        "\"converged_subscribers\":{},\"converge_ms\":{},\"sentinel_after_ack_ms\":{},"
        "\"sentinel_ack_ms\":{:.3f},",
        s.converged, SpreadJson({s.converge_ms_min, s.converge_ms_median, s.converge_ms_max, 0}, 3),
        SpreadJson({s.after_ack_ms_min, s.after_ack_ms_median, s.after_ack_ms_max, 0}, 3),
        r.sentinel_ack_ms);
  }
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
