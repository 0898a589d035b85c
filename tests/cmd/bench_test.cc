// `convergence bench` run as a child process: every scenario end to end.

#include <doctest/doctest.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <string>

#include "support/process.h"

using conv::testing::RunProcess;

TEST_CASE("bench: --quick runs every scenario end to end and the report has every table") {
  conv::testing::TempDir dir("conv-bench");
  std::string out = dir.File("report.md");
  auto r = RunProcess({CONV_BINARY, "bench", "--quick", "--out", out}, std::chrono::seconds(240));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  for (const char* section :
       {"# convergence performance",
        "| Machine |",
        "| Build |",
        "| fsync | window |",
        "## Write throughput (no subscribers)",
        "## Point read latency",
        "## Coalescing efficiency",
        "| Aggregate throughput |",
        "| 0 ops/sec |",
        "| 100K ops/sec |",
        "| 200K ops/sec |",
        "| Entities updated more than 10 times in a window |",
        "## Write throughput with subscribers",
        "Unlimited write rate (the page's scenario):",
        "| Subscribers | Write throughput | vs none | ACK p50 / p99 ms | Notifications/sec (all) |",
        "| 0 | ",
        "| 1 | ",
        "| 10 | ",
        "| 100 | ",
        "fixed 100K ops/sec write rate",
        "- Write throughput with 100 subscribers at least 70% of none:",
        "- Notification latency p99 within window + 2 ms",
        "- Every subscriber holds the final state within 100 ms",
        "## Subscriber bootstrap",
        "| Entity count | 100000 pre-populated",
        "| Time to receive the complete bootstrap (SUBSCRIBE → SNAPSHOT_END) |",
        "| Entities received | 100000 (server holds 100000) |",
        "| ACK latency p50 / p99 / p999 |",
        "## Latency at saturation",
        "| 9 writers + 1 reader | "}) {
    CHECK_MESSAGE(r.out.find(section) != std::string::npos, section);
  }
  std::ifstream in(out);
  std::stringstream written;
  written << in.rdbuf();
  CHECK(written.str() == r.out);
  // The scenarios come in the page's order.
  size_t write = r.out.find("## Write throughput (no subscribers)");
  size_t subs = r.out.find("## Write throughput with subscribers");
  size_t reads = r.out.find("## Point read latency");
  size_t boot = r.out.find("## Subscriber bootstrap");
  size_t coalescing = r.out.find("## Coalescing efficiency");
  size_t saturation = r.out.find("## Latency at saturation");
  CHECK(write < subs);
  CHECK(subs < reads);
  CHECK(reads < boot);
  CHECK(boot < coalescing);
  CHECK(coalescing < saturation);
}

TEST_CASE("bench: the saturation scenario prints its table and targets") {
  auto r = RunProcess({CONV_BINARY, "bench", "--scenario", "saturation", "--duration", "1s"},
                      std::chrono::seconds(120));
  INFO(r.err);
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  for (const char* line :
       {"## Latency at saturation",
        "| Run | Write throughput | ACK p50 / p99 ms | Notification p99 ms | QUERY round trip p50 "
        "/ p99 µs | QUERY server p99 µs |",
        "| 9 writers + 1 reader | ", "| 9 writers + 1 subscriber | ",
        "| 9 writers + 10 subscribers | ", "| 9 writers + 100 subscribers | ",
        "| 1 reader alone (idle server) | — | — | — | ",
        "- ACK latency p99 within 3 windows (30 ms), 9 writers + 1 reader: ",
        "- ACK latency p99 within 3 windows (30 ms), 9 writers + 100 subscribers: ",
        "- Notification latency p99 within 2 windows (20 ms), 1 subscriber: ",
        "- Notification latency p99 within 2 windows (20 ms), 10 subscribers: ",
        "- Notification latency p99 within 2 windows (20 ms), 100 subscribers: ",
        "- QUERY round trip p99 at saturation: "}) {
    CHECK_MESSAGE(r.out.find(line) != std::string::npos, line);
  }
  CHECK(r.out.find("failed") == std::string::npos);
  CHECK(r.out.find("## Write throughput") == std::string::npos);
  // Each run with writers reports an ACK latency above 0.
  std::regex row("\\| 9 writers \\+ [^|]+ \\| [0-9.]+[KM]? ops/sec \\| ([0-9.]+) / ([0-9.]+) \\|");
  int rows = 0;
  for (auto it = std::sregex_iterator(r.out.begin(), r.out.end(), row);
       it != std::sregex_iterator(); ++it) {
    ++rows;
    double p50 = std::stod((*it)[1]), p99 = std::stod((*it)[2]);
    CHECK(p50 > 0);
    CHECK(p50 <= p99);
  }
  CHECK(rows == 4);
}

TEST_CASE("bench: --json has the subscriber and bootstrap scenarios") {
  auto r = RunProcess(
      {CONV_BINARY, "bench", "--json", "--scenario", "bootstrap,subscribers", "--duration", "1s"},
      std::chrono::seconds(120));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("\"subscribers\":{\"unlimited\":[{\"subscribers\":0,") != std::string::npos);
  CHECK(r.out.find("\"fixed_rate\":[{\"subscribers\":1,") != std::string::npos);
  CHECK(r.out.find("\"bootstrap\":{") != std::string::npos);
  CHECK(r.out.find("\"bootstrap_entities_total\":100000,") != std::string::npos);
  CHECK(r.out.find("\"write\"") == std::string::npos);
}

TEST_CASE("bench: --json reports the chosen scenario only") {
  auto r = RunProcess(
      {CONV_BINARY, "bench", "--quick", "--json", "--scenario", "write", "--fsync", "none"},
      std::chrono::seconds(120));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("\"write\":{") != std::string::npos);
  CHECK(r.out.find("\"reads\"") == std::string::npos);
  CHECK(r.out.find("\"fsync\":\"none\"") != std::string::npos);
}

TEST_CASE("bench: an unknown scenario is refused with the list of known ones") {
  auto r = RunProcess({CONV_BINARY, "bench", "--scenario", "warp"}, std::chrono::seconds(30));
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("warp") != std::string::npos);
}
