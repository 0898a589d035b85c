// `convergence load` run as a child process against an in-test server.

#include <doctest/doctest.h>

#include <regex>
#include <string>

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

}  // namespace

TEST_CASE("load: a one-second run reports ops, no errors and every op acknowledged") {
  conv::testing::TestServer ts;
  auto r = RunProcess({CONV_BINARY, "load", "--server", ts.address(), "--workers", "2",
                       "--entities", "200", "--duration", "1s", "--readers", "1", "--json"},
                      std::chrono::seconds(60));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(JsonNumber(r.out, "ops_per_sec") > 0);
  CHECK(JsonNumber(r.out, "errors") == 0);
  CHECK(JsonNumber(r.out, "total_ops") > 0);
  CHECK(JsonNumber(r.out, "acked_ops") == JsonNumber(r.out, "total_ops"));
  CHECK(JsonNumber(r.out, "queries") > 0);
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
        "| Operation mix | 60% ASSERT / 30% PATCH / 10% RETRACT |",
        "| Rate limit | 3000 ops/sec |"}) {
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
      {{"--workers", "0"}, 2, "--workers 0"},
      {{"--hot-pct", "100"}, 2, "--hot-pct 100"},
      {{"--duration", "10"}, 2, "has no unit"},
      {{"--schema", "spaceship"}, 4, "--schema 'spaceship' is not known"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> argv = {CONV_BINARY, "load", "--server", ts.address()};
    if (c.args[0] != "--duration") argv.insert(argv.end(), {"--duration", "1s"});
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    auto r = RunProcess(argv, std::chrono::seconds(30));
    INFO(c.args[0], " ", c.args[1], ": ", r.err);
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
