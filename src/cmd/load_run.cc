#include "cmd/load_run.h"

#include <fmt/format.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <thread>

#include "cmd/common.h"
#include "cmd/load_subscriber.h"
#include "cmd/load_worker.h"
#include "cmd/report.h"
#include "cmd/workload.h"
#include "net/client.h"
#include "util/clock.h"

namespace conv::cmd {

namespace {

using Clock = std::chrono::steady_clock;

// How long the load waits for every subscriber's SNAPSHOT_END, and after the writers
// for every subscriber to receive the sentinel.
constexpr auto kLiveTimeout = std::chrono::seconds(300);
constexpr auto kConnectTimeout = std::chrono::seconds(5);
constexpr auto kSentinelTimeout = std::chrono::seconds(30);
// How long the writers wait for their last ACK after the duration.
constexpr auto kDrainTimeout = std::chrono::seconds(10);
// Subscribers that step over every change to measure its latency; the others count
// changes from NOTIFY headers.
constexpr uint32_t kLatencySubscribers = 10;
constexpr auto kSubscribeSample =
    std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(kSubscribeSampleS));
constexpr auto kWriteSample =
    std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(kWriteSampleS));
// How often the live progress line is rewritten.
constexpr auto kProgressInterval = std::chrono::seconds(1);

uint64_t ToNanos(Clock::time_point t) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

// One point reader: QUERYs back to back on its own connection, one outstanding.
struct Reader {
  util::Histogram latency_ns;
  uint64_t found = 0;
  std::atomic<uint64_t> done{0};  // live count of completed QUERYs
  std::string error;

  void Run(const LoadOptions& o, const engine::Schema& schema, const std::string& token,
           const net::SslCtxPtr& tls, uint64_t seed, const std::atomic<bool>& stop) {
    net::Hello hello;
    hello.auth_token = token;
    auto c = net::Client::Connect(o.server, hello, kConnectTimeout, tls);
    if (!c.ok()) {
      error = c.message();
      return;
    }
    ::pthread_setname_np(::pthread_self(), "load-reader");
    Workload w(schema, o.entities, 0, Mix{}, seed);
    while (!stop.load(std::memory_order_relaxed)) {
      std::string_view id = w.Id(w.NextEntity());
      uint64_t t0 = util::MonoNanos();
      auto r = (*c)->Query(schema, id, false);
      uint64_t t1 = util::MonoNanos();
      if (!r.ok()) {
        error = r.message();
        return;
      }
      latency_ns.Record(t1 - t0);
      if (r->found) ++found;
      done.fetch_add(1, std::memory_order_relaxed);
    }
  }
};

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

// One run of the load generator; RunLoadGenerator calls its phases in order.
class LoadRun {
 public:
  explicit LoadRun(const LoadOptions& o)
      : o_(o), progress_(!o.quiet && !o.json && ::isatty(STDOUT_FILENO)) {}

  util::Status Connect(int* exit_code);
  void Subscribe();
  void Write();
  void Drain();
  void Sentinel();
  LoadReport Finish();

 private:
  LoadSample TakeSample(Clock::time_point now) const;
  void Record(Clock::time_point now);
  void PrintProgress(const LoadSample& then, const LoadSample& now);
  void StartWriters();
  void StartReaders();
  // Waits for every subscriber to receive `id`'s change (or fail), up to kSentinelTimeout.
  void AwaitSentinel(uint64_t ack_ns);

  const LoadOptions& o_;
  const bool progress_;
  std::string token_;
  net::SslCtxPtr tls_;  // null: plain TCP
  std::unique_ptr<net::Client> control_;
  engine::Schema schema_;
  LoadReport report_;
  SubscriberClock clock_;
  std::vector<std::unique_ptr<LoadSubscriber>> subs_;
  std::vector<std::thread> sub_threads_;
  std::vector<std::unique_ptr<LoadWorker>> workers_;
  std::vector<std::unique_ptr<Reader>> readers_;
  std::vector<std::thread> threads_;  // writers and readers
  std::atomic<bool> stop_readers_{false};
  std::atomic<size_t> running_{0};  // writer threads still running
  std::atomic<uint64_t> drained_ns_{0};
  std::mutex mu_;
  std::condition_variable cv_;  // a writer finished
  Clock::time_point run_start_;
  Clock::time_point start_;  // writers and readers start
  Clock::time_point end_;    // the duration ends
  LoadSample printed_;       // at the last progress line
  Clock::time_point printed_at_;
};

util::Status LoadRun::Connect(int* exit_code) {
  if (auto st = ValidateLoadOptions(o_); !st.ok()) return st;
  if (!o_.auth_token_file.empty()) {
    auto t = ReadTokenFile(o_.auth_token_file);
    if (!t.ok()) return t.status();
    token_ = *t;
  }
  auto tls = TlsClientContext(o_.tls);
  if (!tls.ok()) return tls.status();
  tls_ = std::move(tls).value();
  net::Hello hello;
  hello.auth_token = token_;
  auto control = net::Client::Connect(o_.server, hello, kConnectTimeout, tls_);
  if (!control.ok()) {
    *exit_code = kLoadExitConnect;
    return control.status();
  }
  control_ = std::move(control).value();
  const engine::Schema* found = control_->FindSchema(o_.schema);
  if (found == nullptr) {
    *exit_code = kLoadExitSchema;
    return util::Status::Error(
        fmt::format("--schema '{}' is not known to the server (it knows: {})", o_.schema,
                    KnownSchemas(control_->welcome())));
  }
  schema_ = *found;
  report_.window_us = control_->welcome().window_us;
  if (auto s = control_->Stats(); s.ok()) report_.stats_before = *s;
  return util::Status::Ok();
}

LoadSample LoadRun::TakeSample(Clock::time_point now) const {
  LoadSample s;
  s.t = std::chrono::duration<double>(now - run_start_).count();
  for (const auto& w : workers_)
    s.acked += w->acked_live();
  for (const auto& sub : subs_) {
    s.changes += sub->changes_live();
    s.snapshot_entries += sub->entities_live();
  }
  for (const auto& r : readers_)
    s.queries += r->done.load(std::memory_order_relaxed);
  return s;
}

void LoadRun::Record(Clock::time_point now) {
  report_.timeline.push_back(TakeSample(now));
  if (!progress_ || now - printed_at_ < kProgressInterval) return;
  PrintProgress(printed_, report_.timeline.back());
  printed_ = report_.timeline.back();
  printed_at_ = now;
}

// "[  3.0s] writing: 1.25M ops/s acked, 3.61M total, 2.50M changes/s notified", the
// rates since the previous line.
void LoadRun::PrintProgress(const LoadSample& then, const LoadSample& now) {
  double dt = std::max(now.t - then.t, 1e-9);
  auto rate = [dt](uint64_t a, uint64_t b) { return Human(static_cast<double>(a - b) / dt); };
  bool writing = start_ != Clock::time_point{};
  std::string line = fmt::format("\r[{:5.1f}s] {}:", now.t, writing ? "writing" : "subscribing");
  if (!workers_.empty()) {
    line += fmt::format(" {} ops/s acked, {} total", rate(now.acked, then.acked),
                        Human(static_cast<double>(now.acked)));
  }
  if (!readers_.empty()) line += fmt::format(" {} queries/s", rate(now.queries, then.queries));
  if (!subs_.empty()) {
    line += writing ? fmt::format(" {} changes/s notified", rate(now.changes, then.changes))
                    : fmt::format(" {} snapshot entities",
                                  Human(static_cast<double>(now.snapshot_entries)));
  }
  line += "   ";
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

// Phase 1: subscribers first; the writers start once every one of them is live
// (SNAPSHOT_END received), so that the writing phase is measured whole.
void LoadRun::Subscribe() {
  run_start_ = printed_at_ = Clock::now();
  report_.timeline.push_back(TakeSample(run_start_));
  // Latency is measured on at most kLatencySubscribers of them, spread evenly.
  uint32_t stride =
      std::max<uint32_t>(1, (o_.subscribers + kLatencySubscribers - 1) / kLatencySubscribers);
  for (uint32_t i = 0; i < o_.subscribers; ++i) {
    subs_.push_back(
        std::make_unique<LoadSubscriber>(o_, schema_, token_, tls_, clock_, i % stride == 0));
    if (i % stride == 0) ++report_.latency_subscribers;
  }
  for (auto& s : subs_) {
    sub_threads_.emplace_back([sp = s.get()] {
      ::pthread_setname_np(::pthread_self(), "load-subscriber");
      sp->Run();
    });
  }
  if (subs_.empty()) return;
  auto deadline = run_start_ + kLiveTimeout;
  auto next_sample = run_start_ + kSubscribeSample;
  for (;;) {
    size_t live = 0;
    for (const auto& s : subs_)
      live += (s->live() || s->failed()) ? 1 : 0;
    auto now = Clock::now();
    if (live == subs_.size() || now >= deadline) break;
    if (now >= next_sample) {
      Record(now);
      while (next_sample <= now)
        next_sample += kSubscribeSample;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  report_.timeline.push_back(TakeSample(Clock::now()));
}

void LoadRun::StartReaders() {
  for (uint32_t i = 0; i < o_.readers; ++i) {
    readers_.push_back(std::make_unique<Reader>());
    threads_.emplace_back([this, rp = readers_.back().get(), seed = 5000 + i] {
      rp->Run(o_, schema_, token_, tls_, seed, stop_readers_);
    });
  }
}

void LoadRun::StartWriters() {
  for (uint32_t i = 0; i < o_.workers; ++i) {
    uint64_t rate = o_.rate == 0 ? 0 : std::max<uint64_t>(1, o_.rate / o_.workers);
    workers_.push_back(std::make_unique<LoadWorker>(
        o_, schema_, fmt::format("{}-{}", o_.source_prefix, i + 1), token_, tls_, rate, 1000 + i));
  }
  // A thread per writer unless --writer-threads says fewer: on 2 cores, 9 writers
  // on 2 threads gave the point readers no core sooner (docs/performance.md,
  // Saturation, "Fewer writer threads").
  size_t threads = o_.writer_threads != 0 ? o_.writer_threads : workers_.size();
  threads = std::min(threads, workers_.size());
  std::vector<std::vector<LoadWorker*>> groups(threads);
  for (size_t i = 0; i < workers_.size(); ++i)
    groups[i % threads].push_back(workers_[i].get());
  running_ = groups.size();
  for (auto& g : groups) {
    threads_.emplace_back([this, group = std::move(g)] {
      ::pthread_setname_np(::pthread_self(), "load-writer");
      LoadWorker::RunGroup(group, end_, kDrainTimeout);
      if (running_.fetch_sub(1) == 1) {
        drained_ns_.store(util::MonoNanos());
        std::lock_guard lock(mu_);
        cv_.notify_all();
      }
    });
  }
}

// Phase 2: writers and readers for the duration (subscribers alone, a bootstrap
// measurement, end the run once they are live: no duration).
void LoadRun::Write() {
  bool timed = o_.workers > 0 || o_.readers > 0;
  start_ = Clock::now();
  end_ = timed ? start_ + o_.duration : start_;
  report_.writers_start_s = std::chrono::duration<double>(start_ - run_start_).count();
  report_.seconds = timed ? std::chrono::duration<double>(o_.duration).count()
                          : std::chrono::duration<double>(start_ - run_start_).count();
  clock_.writers_start_ns.store(ToNanos(start_));
  clock_.writers_end_ns.store(ToNanos(end_));
  StartReaders();
  StartWriters();
}

// Phase 3: samples until the duration is over and every writer drained (its last
// ACK, or kDrainTimeout), then collects the writers' and readers' figures.
void LoadRun::Drain() {
  {
    std::unique_lock lock(mu_);
    auto finished = [&] { return running_.load() == 0 && Clock::now() >= end_; };
    auto next_sample = start_ + kWriteSample;
    while (!finished()) {
      // Wake at `end` exactly, so that readers run for the duration and no longer.
      auto wake = Clock::now() < end_ ? std::min(next_sample, end_) : next_sample;
      if (cv_.wait_until(lock, wake, finished)) break;
      auto now = Clock::now();
      if (now >= end_) stop_readers_ = true;
      if (now >= next_sample) {
        Record(now);
        while (next_sample <= now)
          next_sample += kWriteSample;
      }
    }
  }
  stop_readers_ = true;
  for (auto& t : threads_)
    t.join();
  report_.timeline.push_back(TakeSample(Clock::now()));
  if (progress_) std::fprintf(stdout, "\r%78s\r", "");
  for (auto& w : workers_) {
    report_.workers.push_back(w->report());
    report_.ack_latency_ns.Merge(w->ack_latency_ns());
  }
  for (const auto& r : readers_) {
    report_.query_ns.Merge(r->latency_ns);
    report_.queries_found += r->found;
    if (r->error.empty()) continue;
    ++report_.reader_errors;
    if (report_.first_reader_error.empty()) report_.first_reader_error = r->error;
  }
  report_.subscribers.resize(subs_.size());
}

// Phase 4, after the writers drained: one more source asserts an entity of its own
// (a fresh id) and waits for its ACK; every subscriber that receives that change has
// received every window before it (NOTIFYs come in window order, and a conflated
// subscriber gets its merged changes before or with it). Then the entity is
// retracted again.
void LoadRun::Sentinel() {
  if (subs_.empty() || workers_.empty()) return;
  net::Hello hello;
  hello.source = o_.source_prefix + "-sentinel";
  hello.auth_token = token_;
  auto c = net::Client::Connect(o_.server, hello, kConnectTimeout, tls_);
  if (!c.ok()) {
    report_.sentinel_error = "sentinel writer: " + c.message();
    return;
  }
  net::Client& client = **c;
  uint64_t seq = client.welcome().last_applied_seq;
  Workload w(schema_, 1, 0, Mix{}, 42);
  clock_.sentinel_id = fmt::format("{}-sentinel-{}", o_.source_prefix, util::WallMicros());
  clock_.sentinel_armed.store(true, std::memory_order_release);
  net::WriteOp op;
  op.type = net::FrameType::kAssert;
  op.seq = ++seq;
  op.schema_id = schema_.id;
  op.id = clock_.sentinel_id;
  op.record = w.FullRecord();
  op.ts = util::WallMicros();
  uint64_t sent_ns = util::MonoNanos();
  if (auto st = SendAndAck(client, op); !st.ok()) {
    report_.sentinel_error = "sentinel ASSERT: " + st.message();
    return;
  }
  uint64_t ack_ns = util::MonoNanos();
  report_.sentinel_sent = true;
  report_.sentinel_ack_ms = static_cast<double>(ack_ns - sent_ns) / 1e6;
  AwaitSentinel(ack_ns);
  op.type = net::FrameType::kRetract;
  op.seq = ++seq;
  op.record = {};
  op.ts = util::WallMicros();
  if (auto st = SendAndAck(client, op); !st.ok()) {
    report_.sentinel_error = "sentinel RETRACT: " + st.message();
  }
}

void LoadRun::AwaitSentinel(uint64_t ack_ns) {
  auto deadline = Clock::now() + kSentinelTimeout;
  for (;;) {
    bool all = true;
    for (const auto& s : subs_)
      all = all && (s->got_sentinel() || s->failed());
    if (all || Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  uint64_t drained_ns = drained_ns_.load();
  for (size_t i = 0; i < subs_.size(); ++i) {
    uint64_t got = subs_[i]->sentinel_ns();
    if (got == 0) continue;
    report_.subscribers[i].converge_ms = static_cast<double>(got - drained_ns) / 1e6;
    report_.subscribers[i].sentinel_after_ack_ms =
        (static_cast<double>(got) - static_cast<double>(ack_ns)) / 1e6;
  }
}

// Stops the subscribers, collects their figures (a subscriber that never went live
// or never received the sentinel counts as an error) and the closing STATS.
LoadReport LoadRun::Finish() {
  clock_.stop = true;
  for (auto& t : sub_threads_)
    t.join();
  for (size_t i = 0; i < subs_.size(); ++i) {
    SubscriberReport& r = report_.subscribers[i];
    double converge = r.converge_ms;
    double after_ack = r.sentinel_after_ack_ms;
    r = subs_[i]->report();
    r.converge_ms = converge;
    r.sentinel_after_ack_ms = after_ack;
    report_.notify_latency_us.Merge(subs_[i]->latency_us());
    if (r.errors == 0 && r.subscribe_ms < 0) {
      ++r.errors;
      r.first_error = fmt::format("no SNAPSHOT_END within {} s", kLiveTimeout.count());
    }
    if (r.errors == 0 && report_.sentinel_sent && r.converge_ms < 0) {
      ++r.errors;
      r.first_error = fmt::format(
          "did not receive the final state (the sentinel change) within {} s after the writers "
          "drained",
          kSentinelTimeout.count());
    }
  }
  if (auto s = control_->Stats(); s.ok()) report_.stats_after = *s;
  return std::move(report_);
}

}  // namespace

util::Result<LoadReport> RunLoadGenerator(const LoadOptions& o, int* exit_code) {
  *exit_code = kExitError;
  LoadRun run(o);
  if (auto st = run.Connect(exit_code); !st.ok()) return st;
  run.Subscribe();
  run.Write();
  run.Drain();
  run.Sentinel();
  LoadReport report = run.Finish();
  *exit_code = kExitOk;
  return report;
}

}  // namespace conv::cmd
