// `convergence load` run as a child process against an in-test server.

#include <doctest/doctest.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <string>

#include "engine/record.h"
#include "net/messages.h"
#include "support/json_value.h"
#include "support/process.h"
#include "support/test_server.h"

using conv::testing::RunProcess;

namespace {

// The number after "key": in a flat JSON report.
double JsonNumber(const std::string& json, const std::string& key) {
  std::smatch m;
  std::regex re("\"" + key + "\":(-?[0-9.]+)");
  REQUIRE_MESSAGE(std::regex_search(json, m, re), key, " missing in ", json);
  return std::stod(m[1]);
}

// Checks the ACK latency percentiles of a JSON report: present, above 0, in order.
void CheckAckLatencyJson(const std::string& json) {
  std::smatch m;
  REQUIRE_MESSAGE(
      std::regex_search(json, m,
                        std::regex("\"ack_latency_ms\":\\{\"p50\":([0-9.]+),\"p99\":"
                                   "([0-9.]+),\"p999\":([0-9.]+),\"max\":([0-9.]+)\\}")),
      json);
  double p50 = std::stod(m[1]), p99 = std::stod(m[2]), p999 = std::stod(m[3]),
         max = std::stod(m[4]);
  INFO("ACK latency ms: ", p50, " / ", p99, " / ", p999, " max ", max);
  CHECK(p50 > 0);
  CHECK(p50 <= p99);
  CHECK(p99 <= p999);
  CHECK(p999 <= max);
  // Every acknowledged op has a latency.
  CHECK(JsonNumber(json, "ack_latency_samples") == JsonNumber(json, "acked_ops"));
  // The server's stages after a cut: each ends later than the one before.
  double queue = JsonNumber(json, "server_window_queue_p50_us");
  double seal = JsonNumber(json, "server_window_seal_p50_us");
  double durable = JsonNumber(json, "server_window_durable_p50_us");
  INFO("window stages p50 us: ", queue, " / ", seal, " / ", durable);
  CHECK(seal > 0);
  CHECK(queue <= seal);
  CHECK(seal <= durable);
  CHECK(JsonNumber(json, "server_window_durable_p50_us") <=
        JsonNumber(json, "server_window_durable_p99_us"));
}

// The server's counter `name`.
uint64_t ServerStat(conv::testing::TestServer& ts, const std::string& name) {
  for (const auto& [n, v] : ts.server().Stats()) {
    if (n == name) return v;
  }
  FAIL("no stat ", name);
  return 0;
}

// Runs `convergence load --server TS ARGS --json` for 1 s and checks it ran clean:
// exit 0, no error, every op acknowledged, and every op counted applied by the server
// once. Its report.
struct LoadRun {
  conv::testing::ProcessResult result;
  conv::testing::JsonValue json;
};
LoadRun RunCleanLoad(conv::testing::TestServer& ts, const std::vector<std::string>& args) {
  uint64_t applied_before = ServerStat(ts, "ops_applied");
  std::vector<std::string> argv = {CONV_BINARY,  "load", "--server", ts.address(),
                                   "--duration", "1s",   "--json"};
  argv.insert(argv.end(), args.begin(), args.end());
  LoadRun run;
  run.result = RunProcess(argv, std::chrono::seconds(60));
  INFO(run.result.err);
  REQUIRE(run.result.exit_code == 0);
  auto parsed = conv::testing::ParseJson(run.result.out);
  REQUIRE(parsed.has_value());
  run.json = *parsed;
  const conv::testing::JsonValue& j = run.json;
  CHECK(j.Get("errors")->number == 0);
  CHECK(j.Get("total_ops")->number > 0);
  CHECK(j.Get("acked_ops")->number == j.Get("total_ops")->number);
  CHECK(static_cast<double>(ServerStat(ts, "ops_applied") - applied_before) ==
        j.Get("acked_ops")->number);
  return run;
}

}  // namespace

TEST_CASE("load: writers sharing threads (--writer-threads) each write and are acknowledged once") {
  conv::testing::TestServer ts;
  LoadRun run = RunCleanLoad(ts, {"--workers", "5", "--writer-threads", "2", "--entities", "200"});
  const auto& workers = run.json.Get("per_worker")->array;
  REQUIRE(workers.size() == 5);
  for (const auto& w : workers)
    CHECK(w.Get("acked")->number > 0);
}

TEST_CASE("load: a one-second run's figures agree with the server and with each other") {
  conv::testing::TestServer ts;
  LoadRun run = RunCleanLoad(ts, {"--workers", "2", "--entities", "200", "--readers", "1"});
  const conv::testing::JsonValue& j = run.json;
  const auto& r = run.result;
  auto num = [&j](const char* key) {
    const auto* v = j.Get(key);
    REQUIRE_MESSAGE(v != nullptr, key);
    return v->number;
  };
  CheckAckLatencyJson(r.out);
  // Throughput: ops acknowledged within the duration, per second, summed over workers.
  const auto& workers = j.Get("per_worker")->array;
  REQUIRE(workers.size() == 2);
  double sum = 0, acked = 0;
  for (const auto& w : workers) {
    sum += w.Get("ops_per_sec")->number;
    acked += w.Get("acked")->number;
    CHECK(w.Get("ack_p99_ms")->number > 0);
  }
  CHECK(num("ops_per_sec") == doctest::Approx(sum).epsilon(1e-3));
  CHECK(acked == num("acked_ops"));
  CHECK(num("duration_s") == 1);
  CHECK(num("ops_per_sec") * num("duration_s") <= num("acked_ops") + 1);
  CHECK(num("ops_per_sec") > 0);
  // The timeline counts the same ops and queries, in time order.
  const auto& timeline = j.Get("timeline")->array;
  REQUIRE(timeline.size() >= 10);  // a sample every 0.1 s
  for (size_t i = 1; i < timeline.size(); ++i) {
    CHECK(timeline[i].Get("t")->number >= timeline[i - 1].Get("t")->number);
    CHECK(timeline[i].Get("acked")->number >= timeline[i - 1].Get("acked")->number);
  }
  CHECK(timeline.back().Get("acked")->number == num("acked_ops"));
  CHECK(timeline.back().Get("queries")->number == num("queries"));
  CHECK(num("queries") > 0);
  CHECK(num("query_found") <= num("queries"));
  const auto* q = j.Get("query_us");
  CHECK(q->Get("p50")->number <= q->Get("p99")->number);
  CHECK(q->Get("p99")->number <= q->Get("p999")->number);
  CHECK(q->Get("p999")->number <= q->Get("max")->number);
}

TEST_CASE("load: --html writes one self-contained page with the run's charts") {
  conv::testing::TestServer ts;
  conv::testing::TempDir dir("conv-load");
  std::string html = dir.File("load.html");
  auto r = RunProcess(
      {CONV_BINARY, "load", "--server", ts.address(), "--workers", "1", "--entities", "100",
       "--duration", "500ms", "--readers", "1", "--subscribers", "1", "--html", html},
      std::chrono::seconds(60));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("| Aggregate throughput |") != std::string::npos);
  std::ifstream in(html);
  std::stringstream page;
  page << in.rdbuf();
  std::string text = page.str();
  CHECK(text.rfind("<!DOCTYPE html>", 0) == 0);
  for (const char* chart : {"load-acked", "load-queries", "load-changes", "load-cdf-ack",
                            "load-cdf-notify", "load-cdf-query"}) {
    CHECK_MESSAGE(text.find(std::string("data-chart=\"") + chart + "\"") != std::string::npos,
                  chart);
  }
  CHECK(text.find("<script") == std::string::npos);
  CHECK(text.find("<td>Aggregate throughput</td>") != std::string::npos);

  // A file that cannot be written is refused before the run.
  uint64_t ops_before = ServerStat(ts, "ops_in");
  r = RunProcess({CONV_BINARY, "load", "--server", ts.address(), "--duration", "1s", "--html",
                  "/nonexistent/dir/x.html"},
                 std::chrono::seconds(30));
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--html: cannot write '/nonexistent/dir/x.html'") != std::string::npos);
  CHECK(ServerStat(ts, "ops_in") == ops_before);
}

TEST_CASE("load: a rate-limited run reports ACK latency, and --workers defaults to 1") {
  conv::testing::TestServer ts;
  auto r = RunProcess({CONV_BINARY, "load", "--server", ts.address(), "--entities", "200",
                       "--duration", "1s", "--rate", "2000", "--readers", "1", "--json"},
                      std::chrono::seconds(60));
  INFO(r.err);
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  CHECK(JsonNumber(r.out, "workers") == 1);
  CHECK(JsonNumber(r.out, "total_ops") > 0);
  CheckAckLatencyJson(r.out);
}

TEST_CASE("load: --workers 0 --readers N measures reads alone") {
  conv::testing::TestServer ts;
  uint64_t ops_before = ServerStat(ts, "ops_in");
  auto r = RunProcess({CONV_BINARY, "load", "--server", ts.address(), "--workers", "0", "--readers",
                       "2", "--duration", "1s", "--json"},
                      std::chrono::seconds(60));
  INFO(r.err);
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  CHECK(JsonNumber(r.out, "workers") == 0);
  CHECK(JsonNumber(r.out, "readers") == 2);
  CHECK(JsonNumber(r.out, "total_ops") == 0);
  CHECK(JsonNumber(r.out, "errors") == 0);
  CHECK(JsonNumber(r.out, "queries") > 0);
  CHECK(r.out.find("\"per_worker\":[]") != std::string::npos);
  CHECK(ServerStat(ts, "ops_in") == ops_before);
  CHECK(ServerStat(ts, "sources") == 0);

  r = RunProcess({CONV_BINARY, "load", "--server", ts.address(), "--workers", "0", "--readers", "1",
                  "--duration", "1s"},
                 std::chrono::seconds(60));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("| Workers | 0 (no writers) |") != std::string::npos);
  CHECK(r.out.find("| Query round trip p50 / p99 / p999 |") != std::string::npos);
  CHECK(r.out.find("| Aggregate throughput |") == std::string::npos);
  CHECK(r.out.find("| ACK latency") == std::string::npos);
}

TEST_CASE("load: the Markdown report has the page's metrics") {
  conv::testing::TestServer ts;
  auto r = RunProcess(
      {CONV_BINARY, "load", "--server", ts.address(), "--workers", "3", "--entities", "100",
       "--duration", "1s", "--hot-pct", "10", "--rate", "3000", "--mix", "60/30/10"},
      std::chrono::seconds(60));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  for (const char* row :
       {"| Aggregate throughput |", "| Per-worker average |", "| Per-worker range |",
        "| Total operations |", "| Errors | 0 |", "| Acknowledged |", "| Server coalescing ratio |",
        "| Operation mix | 60% ASSERT / 30% PATCH / 10% RETRACT |", "| Rate limit | 3000 ops/sec |",
        "| Workers | 3 (each a separate source) |"}) {
    CHECK_MESSAGE(r.out.find(row) != std::string::npos, row);
  }
  std::smatch m;
  REQUIRE(std::regex_search(
      r.out, m,
      std::regex("\\| ACK latency p50 / p99 / p999 \\| ([0-9.]+) / ([0-9.]+) / ([0-9.]+) ms")));
  double p50 = std::stod(m[1]), p99 = std::stod(m[2]), p999 = std::stod(m[3]);
  INFO("ACK latency ms: ", p50, " / ", p99, " / ", p999);
  CHECK(p50 > 0);
  CHECK(p50 <= p99);
  CHECK(p99 <= p999);
}

TEST_CASE("load: subscribers report notifications, their latency and convergence") {
  conv::testing::TestServer ts;
  auto r =
      RunProcess({CONV_BINARY, "load", "--server", ts.address(), "--workers", "2", "--entities",
                  "200", "--duration", "1s", "--subscribers", "2", "--include-prev", "--json"},
                 std::chrono::seconds(60));
  INFO(r.err);
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  CHECK(JsonNumber(r.out, "subscribers") == 2);
  CHECK(JsonNumber(r.out, "errors") == 0);
  CHECK(JsonNumber(r.out, "subscriber_errors") == 0);
  CHECK(JsonNumber(r.out, "notifications") > 0);
  CHECK(JsonNumber(r.out, "notify_frames") > 0);
  CHECK(JsonNumber(r.out, "notifications_per_sec") > 0);
  CHECK(JsonNumber(r.out, "notifications_with_prev") > 0);
  std::smatch m;
  REQUIRE(std::regex_search(r.out, m, std::regex("\"notify_latency_ms\":\\{\"p50\":([0-9.]+)")));
  CHECK(std::stod(m[1]) > 0);
  // Both subscribers received the sentinel written after the writers drained.
  CHECK(JsonNumber(r.out, "converged_subscribers") == 2);
  for (const char* key :
       {"server_conflations", "server_conflated_changes", "server_notify_lag_p99_us"}) {
    CHECK(JsonNumber(r.out, key) >= 0);
  }
}

TEST_CASE("load: the Markdown report has the subscriber rows, a bootstrap alone counts entities") {
  conv::testing::TestServer ts;
  {
    // 300 entities, each asserted at least once.
    auto w = ts.Connect("seed");
    const conv::engine::Schema* player = w->FindSchema("player");
    REQUIRE(player != nullptr);
    std::string frames;
    for (int i = 0; i < 300; ++i) {
      conv::engine::RecordBuilder b(*player);
      REQUIRE(b.Set("name", std::string("n")).ok());
      std::string record = b.Encode();
      std::string id = "p-" + std::to_string(i);
      conv::net::WriteOp op;
      op.seq = static_cast<uint64_t>(i + 1);
      op.schema_id = player->id;
      op.id = id;
      op.record = record;
      conv::net::EncodeWriteOp(frames, op);
    }
    REQUIRE(w->Send(frames).ok());
    REQUIRE(w->Sync().ok());
  }
  uint64_t ops_before = ServerStat(ts, "ops_in");
  // The page's bootstrap step: no --workers, so no writer starts.
  auto r = RunProcess({CONV_BINARY, "load", "--server", ts.address(), "--subscribers", "2",
                       "--bootstrap", "--json"},
                      std::chrono::seconds(60));
  INFO(r.err);
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  CHECK(JsonNumber(r.out, "bootstrap_entities_total") == 600);
  CHECK(JsonNumber(r.out, "errors") == 0);
  CHECK(JsonNumber(r.out, "workers") == 0);
  CHECK(JsonNumber(r.out, "total_ops") == 0);
  CHECK(ServerStat(ts, "ops_in") == ops_before);
  CHECK(ServerStat(ts, "sources") == 1);  // "seed" only
  // An explicit --workers 0 is the same.
  r = RunProcess({CONV_BINARY, "load", "--server", ts.address(), "--workers", "0", "--subscribers",
                  "1", "--bootstrap", "--json"},
                 std::chrono::seconds(60));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(JsonNumber(r.out, "bootstrap_entities_total") == 300);
  CHECK(ServerStat(ts, "ops_in") == ops_before);

  r = RunProcess({CONV_BINARY, "load", "--server", ts.address(), "--workers", "2", "--entities",
                  "100", "--duration", "1s", "--subscribers", "1", "--bootstrap"},
                 std::chrono::seconds(60));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  for (const char* row :
       {"| Workers | 2 (each a separate source) |",
        "| Subscribers | 1 (each its own connection, all of the schema, bootstrap) |",
        "| ACK latency p50 / p99 / p999 |", "| Notifications received |", "| Notification rate |",
        "| Notification latency p50 / p99 / p999 |", "| Server conflations |",
        "| Server notify lag p99", "| Converged after writers drained |",
        "| Bootstrap time (SUBSCRIBE → SNAPSHOT_END) |", "| Bootstrap entities received |"}) {
    CHECK_MESSAGE(r.out.find(row) != std::string::npos, row);
  }
}

TEST_CASE("load: bad flags and unreachable servers get clear messages and distinct exit codes") {
  conv::testing::TestServer ts;
  struct Case {
    std::vector<std::string> args;
    int code;
    std::string message;
  };
  std::vector<Case> cases = {
      {{"--mix", "80/30/0"}, 2, "add up to 110"},
      {{"--mix", "70-20-10"}, 2, "is not A/P/R"},
      {{"--workers", "0"}, 2, "--workers 0: nothing to run; add --readers N"},
      {{"--workers", "0", "--bootstrap"}, 2, "--bootstrap is for subscribers"},
      {{"--workers", "0", "--include-prev"}, 2, "--include-prev is for subscribers"},
      {{"--hot-pct", "100"}, 2, "--hot-pct 100"},
      {{"--duration", "10"}, 2, "has no unit"},
      {{"--schema", "spaceship"}, 4, "--schema 'spaceship' is not known"},
      {{"--bootstrap"}, 2, "--bootstrap is for subscribers: add --subscribers N"},
      {{"--include-prev", "--workers", "2"}, 2, "--include-prev is for subscribers"},
      {{"--subscribers", "2000"}, 2, "--subscribers: at most 1024"},
      {{"--writer-threads", "2000"}, 2, "--writer-threads: at most 1024"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> argv = {CONV_BINARY, "load", "--server", ts.address()};
    if (c.args[0] != "--duration") argv.insert(argv.end(), {"--duration", "1s"});
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    auto r = RunProcess(argv, std::chrono::seconds(30));
    std::string args;
    for (const auto& a : c.args)
      args += a + " ";
    INFO(args, ": ", r.err);
    CHECK(r.exit_code == c.code);
    CHECK(r.err.find(c.message) != std::string::npos);
  }
  // A port nothing listens on: bind one, learn its number, close it.
  uint16_t port;
  {
    conv::testing::TestServer gone;
    port = gone.port();
  }
  auto r = RunProcess(
      {CONV_BINARY, "load", "--server", "127.0.0.1:" + std::to_string(port), "--duration", "1s"},
      std::chrono::seconds(30));
  INFO(r.err);
  CHECK(r.exit_code == 3);
  CHECK(r.err.find("cannot connect") != std::string::npos);
}
