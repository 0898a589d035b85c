#include "support/crash_cycles.h"

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/schema.h"
#include "net/client.h"
#include "net/messages.h"
#include "support/op_model.h"

namespace conv::testing {

namespace {

using namespace std::chrono_literals;

constexpr size_t kSources = 4;
constexpr size_t kEntities = 24;
constexpr uint64_t kMaxInFlight = 1024;  // unacknowledged ops a writer allows itself
constexpr uint64_t kBatch = 16;          // ops per send
constexpr auto kReplyTimeout = 10s;

std::string SourceName(size_t s) {
  return fmt::format("crash-writer-{}", s);
}

// Starts the server on `dir`. Every other run: two I/O threads (windows cut across
// lanes) and background checkpoints (kills land mid-checkpoint too).
ServeProcess StartServer(const std::string& dir, const std::string& log_path, bool variant,
                         const std::vector<std::string>& more) {
  std::vector<std::string> extra = {"--window", "2ms"};
  if (variant) extra.insert(extra.end(), {"--io-threads", "2", "--checkpoint-interval", "50ms"});
  extra.insert(extra.end(), more.begin(), more.end());
  return StartServe(dir, log_path, extra);
}

std::unique_ptr<net::Client> Connect(const std::string& address, const std::string& source) {
  net::Hello hello;
  hello.source = source;
  auto c = net::Client::Connect(address, hello, std::chrono::milliseconds(kReplyTimeout));
  REQUIRE_MESSAGE(c.ok(), (c.ok() ? "" : c.message()));
  return std::move(c).value();
}

uint64_t StatOf(net::Client& c, std::string_view name) {
  auto stats = c.Stats();
  REQUIRE_MESSAGE(stats.ok(), (stats.ok() ? "" : stats.message()));
  for (const auto& [n, v] : *stats) {
    if (n == name) return v;
  }
  FAIL("STATS has no ", name);
  return 0;
}

// Reads frames until an ACK of at least `seq`; false on an error frame, a closed
// connection or the timeout.
bool AwaitAck(net::Client& c, uint64_t seq, std::string* why) {
  c.set_timeout(std::chrono::milliseconds(kReplyTimeout));
  auto deadline = std::chrono::steady_clock::now() + kReplyTimeout;
  while (std::chrono::steady_clock::now() < deadline) {
    auto f = c.ReadFrame();
    if (!f.ok()) {
      *why = f.message();
      return false;
    }
    if (f->type == static_cast<uint8_t>(net::FrameType::kError)) {
      net::Error e;
      *why = net::DecodeError(f->payload, &e) ? e.message : "malformed ERROR";
      return false;
    }
    uint64_t acked = 0;
    if (f->type == static_cast<uint8_t>(net::FrameType::kAck) &&
        net::DecodeAck(f->payload, &acked) && acked >= seq) {
      return true;
    }
  }
  *why = "timed out";
  return false;
}

// One source's writer for one server life: sends ops from `next` on, pipelined, with
// at most kMaxInFlight unacknowledged, until the connection breaks or `stop`.
struct Writer {
  size_t source = 0;
  std::unique_ptr<net::Client> client;
  uint64_t next = 1;
  std::atomic<uint64_t>* acked = nullptr;  // highest seq ever ACKed
  std::atomic<uint64_t>* sent = nullptr;   // highest seq ever sent
  std::string error;                       // an ERROR from the server: a failure

  void Run(const OpGenerator& gen, const std::atomic<bool>& stop) {
    client->set_timeout(1s);  // only after poll says there are bytes
    // Room for more: ops after the last ACK (or after what the server had at the
    // start of this connection, which needs no ACK of its own) below the limit.
    const uint64_t floor = next - 1;
    auto room = [&] { return next - 1 < std::max(acked->load(), floor) + kMaxInFlight; };
    while (!stop.load()) {
      if (room()) {
        std::string frames;
        for (uint64_t k = 0; k < kBatch; ++k) {
          frames += gen.Frame(source, next + k);
        }
        next += kBatch;
        // Counted as sent before the send: a kill may cut it short after the server
        // has taken some of it.
        uint64_t s = sent->load();
        while (s < next - 1 && !sent->compare_exchange_weak(s, next - 1)) {
        }
        if (!client->Send(frames).ok()) return;  // killed
      }
      pollfd p{client->fd(), POLLIN, 0};
      int rc = ::poll(&p, 1, room() ? 0 : 50);
      if (rc <= 0) continue;
      do {
        auto f = client->ReadFrame();
        if (!f.ok()) return;  // killed
        if (f->type == static_cast<uint8_t>(net::FrameType::kAck)) {
          uint64_t seq = 0;
          if (net::DecodeAck(f->payload, &seq)) {
            uint64_t a = acked->load();
            while (a < seq && !acked->compare_exchange_weak(a, seq)) {
            }
          }
        } else if (f->type == static_cast<uint8_t>(net::FrameType::kError)) {
          net::Error e;
          error = net::DecodeError(f->payload, &e) ? e.message : "malformed ERROR";
          return;
        }
      } while (client->HasBufferedFrame());
    }
  }
};

}  // namespace

CrashTotals RunCrashCycles(const CrashRun& run) {
  std::mt19937_64 rng(run.seed);
  TempDir root("conv-crash");
  const std::string dir = root.File("data");
  const std::string log_path = root.File("server.log");
  OpGenerator gen(engine::PlayerSchema(), run.seed, kEntities);
  const auto ids = gen.EntityIds();

  std::atomic<uint64_t> acked[kSources];
  std::atomic<uint64_t> sent[kSources];
  for (size_t s = 0; s < kSources; ++s) {
    acked[s] = 0;
    sent[s] = 0;
  }
  // The model: each source's ops 1..model_seq[s], applied in order.
  StateModel model(gen.schema());
  std::vector<uint64_t> model_seq(kSources, 0);
  CrashTotals totals;
  auto started = std::chrono::steady_clock::now();
  auto since = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  };

  // Checks a freshly started server against the model; returns the writers, connected
  // and positioned after each source's last applied op.
  auto verify = [&](const ServeProcess& child, uint64_t cycle) {
    std::vector<Writer> writers(kSources);
    for (size_t s = 0; s < kSources; ++s) {
      Writer& w = writers[s];
      w.source = s;
      w.client = Connect(child.address, SourceName(s));
      w.acked = &acked[s];
      w.sent = &sent[s];
      uint64_t applied = w.client->welcome().last_applied_seq;
      uint64_t a = acked[s].load();
      if (applied < a) {
        totals.lost += a - applied;
        FAIL_CHECK("cycle ", cycle, ": ", SourceName(s), " has ops up to ", applied,
                   " but ops up to ", a, " were acknowledged");
      }
      CHECK_MESSAGE(applied <= sent[s].load(), "cycle ", cycle, ": ", SourceName(s), " applied ",
                    applied, " of ", sent[s].load(), " sent");
      if (applied < model_seq[s]) {  // only after a loss: rebuild the model
        model.Reset(SourceName(s));
        model_seq[s] = 0;
      }
      for (; model_seq[s] < applied; ++model_seq[s]) {
        model.Apply(SourceName(s), gen.Op(s, model_seq[s] + 1));
      }
      w.next = applied + 1;
    }
    StateByEntity want = model.State();
    auto reader = Connect(child.address, "");
    auto got = QueryState(*reader, gen.schema(), ids);
    REQUIRE_MESSAGE(got.ok(), (got.ok() ? "" : got.message()));
    if (!(*got == want)) {
      ++totals.mismatches;
      FAIL_CHECK("cycle ", cycle, ": the state is not each source's applied ops in order:\n",
                 DescribeDifference(want, *got));
    }

    // Resend the last few applied ops of each source: skipped, acknowledged, no change.
    uint64_t resent = 0;
    for (auto& w : writers) {
      uint64_t applied = w.next - 1;
      if (applied == 0) continue;
      uint64_t from = applied > 5 ? applied - 4 : 1;
      std::string frames;
      for (uint64_t q = from; q <= applied; ++q) {
        frames += gen.Frame(w.source, q);
      }
      REQUIRE(w.client->Send(frames).ok());
      resent += applied - from + 1;
      std::string why;
      bool ok = AwaitAck(*w.client, applied, &why);
      CHECK_MESSAGE(ok, "cycle ", cycle, ": resent ops of ", SourceName(w.source),
                    " not acknowledged: ", why);
      // The duplicate's ACK is cumulative: everything up to `applied` is durable.
      uint64_t a = w.acked->load();
      if (ok && a < applied) w.acked->store(applied);
    }
    totals.resent += resent;
    CHECK_MESSAGE(StatOf(*reader, "duplicates") == resent, "cycle ", cycle);
    CHECK_MESSAGE(StatOf(*reader, "ops_applied") == 0, "cycle ", cycle);
    auto again = QueryState(*reader, gen.schema(), ids);
    REQUIRE(again.ok());
    CHECK_MESSAGE(*again == *got, "cycle ", cycle, ": resent duplicates changed the state");
    return writers;
  };

  for (uint64_t cycle = 0; cycle < run.cycles; ++cycle) {
    CAPTURE(cycle);
    auto t0 = std::chrono::steady_clock::now();
    ServeProcess child = StartServer(dir, log_path, cycle % 2 == 1, run.serve_args);
    totals.start_seconds += since(t0);
    t0 = std::chrono::steady_clock::now();
    std::vector<Writer> writers = verify(child, cycle);
    totals.verify_seconds += since(t0);
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    for (auto& w : writers) {
      threads.emplace_back([&w, &gen, &stop] { w.Run(gen, stop); });
    }

    auto load = std::chrono::milliseconds(20 + rng() % 280);
    if (run.during_load) {
      run.during_load(child, load);
    } else {
      std::this_thread::sleep_for(load);
    }
    child.process->Signal(SIGKILL);
    if (run.verbose) {
      std::string line = fmt::format("cycle {}: killed after {} ms;", cycle, load.count());
      for (size_t s = 0; s < kSources; ++s) {
        line += fmt::format(" {} applied {} sent {} acked {};", SourceName(s), model_seq[s],
                            sent[s].load(), acked[s].load());
      }
      std::fprintf(stderr, "%s\n", line.c_str());
    }
    auto status = child.process->Wait(kReplyTimeout);
    stop = true;  // the writers also notice the connection ending
    for (auto& t : threads) {
      t.join();
    }
    REQUIRE_MESSAGE(status.has_value(), "the server did not die of SIGKILL");
    CHECK_MESSAGE((WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL),
                  "the server ended on its own (status ", *status, ") before the kill:\n",
                  ReadFileOrEmpty(log_path));
    for (const auto& w : writers) {
      CHECK_MESSAGE(w.error.empty(), SourceName(w.source), " got ERROR: ", w.error);
    }
    if (run.after_kill) {
      std::vector<std::pair<std::string, uint64_t>> acked_now;
      for (size_t s = 0; s < kSources; ++s)
        acked_now.emplace_back(SourceName(s), acked[s].load());
      run.after_kill(cycle, acked_now);
    }
  }

  // Acknowledged while writing (the last restart's duplicate ACKs add nothing new).
  for (size_t s = 0; s < kSources; ++s)
    totals.acked_ops += acked[s].load();

  // A last restart: everything checked once more, then a graceful stop.
  ServeProcess child = StartServer(dir, log_path, false, run.serve_args);
  verify(child, run.cycles);
  child.Stop(kReplyTimeout);
  if (run.at_end) run.at_end(dir);

  for (size_t s = 0; s < kSources; ++s)
    totals.applied_ops += model_seq[s];
  std::string log = ReadFileOrEmpty(log_path);
  for (size_t at = 0; (at = log.find("cut a torn tail", at)) != std::string::npos; ++at) {
    ++totals.torn_tails;
  }
  totals.seconds = since(started);
  return totals;
}

}  // namespace conv::testing
