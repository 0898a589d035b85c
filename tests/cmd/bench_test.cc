// `convergence bench` run as a child process: every scenario end to end.

#include <doctest/doctest.h>

#include <fstream>
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
        "| Subscribers | Write throughput | vs none | Notifications/sec (all) |",
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
        "| Entities received | 100000 (server holds 100000) |"}) {
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
  CHECK(write < subs);
  CHECK(subs < reads);
  CHECK(reads < boot);
  CHECK(boot < coalescing);
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
