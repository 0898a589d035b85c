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
       {"# convergence performance", "| Machine |", "| Build |", "| fsync | window |",
        "## Write throughput (no subscribers)", "## Point read latency", "## Coalescing efficiency",
        "| Aggregate throughput |", "| 0 ops/sec |", "| 100K ops/sec |", "| 200K ops/sec |",
        "| Entities updated more than 10 times in a window |"}) {
    CHECK_MESSAGE(r.out.find(section) != std::string::npos, section);
  }
  std::ifstream in(out);
  std::stringstream written;
  written << in.rdbuf();
  CHECK(written.str() == r.out);
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
