// `convergence query` run as a separate process against an in-process server.

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "support/process.h"
#include "support/test_server.h"

using namespace conv;
using net::FrameType;
using testing::Record;
using testing::WaitForAck;
using testing::WriteFrame;

namespace {

// Runs CONV_BINARY with `args`; killed when it has not exited within `timeout`.
testing::ProcessResult Run(const std::vector<std::string>& args,
                           std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  std::vector<std::string> argv = {CONV_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  return testing::RunProcess(argv, timeout);
}

constexpr uint64_t kTs1 = 1'700'000'000'000'000;
constexpr uint64_t kTs2 = 1'700'000'000'500'000;

// game-1 asserts p-17; game-2 patches its x later.
void WriteP17(testing::TestServer& ts) {
  auto g1 = ts.Connect("game-1");
  auto g2 = ts.Connect("game-2");
  const engine::Schema& p = *g1->FindSchema("player");
  REQUIRE(g1->Send(WriteFrame(FrameType::kAssert, 1, kTs1, engine::kPlayerSchemaId, "p-17",
                              Record(p, {{"name", std::string("ann \"the\" ace")},
                                         {"team", std::string("red")},
                                         {"x", 1.5},
                                         {"health", int64_t{-90}},
                                         {"online", true}})))
              .ok());
  REQUIRE(WaitForAck(*g1, 1));
  REQUIRE(g2->Send(WriteFrame(FrameType::kPatch, 1, kTs2, engine::kPlayerSchemaId, "p-17",
                              Record(p, {{"x", 2.25}, {"level", int64_t{3}}})))
              .ok());
  REQUIRE(WaitForAck(*g2, 1));
}

}  // namespace

TEST_CASE("query: prints the converged record as JSON") {
  testing::TestServer ts;
  WriteP17(ts);
  auto r = Run({"query", "player", "p-17", "--server", ts.address()});
  CAPTURE(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out ==
        "{\"schema\":\"player\",\"id\":\"p-17\",\"record\":{\"name\":\"ann \\\"the\\\" "
        "ace\",\"team\":\"red\",\"x\":2.25,\"health\":-90,\"level\":3,\"online\":true}}\n");
  CHECK(r.err.empty());
}

TEST_CASE("query: --claims adds each source's claim") {
  testing::TestServer ts;
  WriteP17(ts);
  auto r = Run({"query", "player", "p-17", "--claims", "--server", ts.address()});
  CAPTURE(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out ==
        "{\"schema\":\"player\",\"id\":\"p-17\",\"record\":{\"name\":\"ann \\\"the\\\" "
        "ace\",\"team\":\"red\",\"x\":2.25,\"health\":-90,\"level\":3,\"online\":true},"
        "\"claims\":["
        "{\"source\":\"game-1\",\"ts\":1700000000000000,\"record\":{\"name\":\"ann "
        "\\\"the\\\" ace\",\"team\":\"red\",\"x\":1.5,\"health\":-90,\"online\":true}},"
        "{\"source\":\"game-2\",\"ts\":1700000000500000,\"record\":{\"x\":2.25,\"level\":3}}"
        "]}\n");
}

TEST_CASE("query: a missing entity exits 1 with a message") {
  testing::TestServer ts;
  WriteP17(ts);
  auto r = Run({"query", "player", "p-404", "--server", ts.address()});
  CHECK(r.exit_code == 1);
  CHECK(r.out.empty());
  CHECK(r.err.find("p-404") != std::string::npos);
  CHECK(r.err.find("does not exist") != std::string::npos);
}

TEST_CASE("query: an unknown schema exits 2 with a message") {
  testing::TestServer ts;
  auto r = Run({"query", "starship", "p-17", "--server", ts.address()});
  CHECK(r.exit_code == 2);
  CHECK(r.out.empty());
  CHECK(r.err.find("unknown schema 'starship'") != std::string::npos);
  CHECK(r.err.find("player") != std::string::npos);  // names the known ones
}

TEST_CASE("query: an unreachable server exits 2 with a message") {
  std::string addr = "127.0.0.1:" + std::to_string(testing::ClosedPort());
  auto r = Run({"query", "player", "p-17", "--server", addr});
  CHECK(r.exit_code == 2);
  CHECK(r.out.empty());
  CHECK(r.err.find("cannot connect") != std::string::npos);
  CHECK(r.err.find(addr) != std::string::npos);
}

TEST_CASE("query: --server with several servers: the first down, the next answers") {
  testing::TestServer ts;
  WriteP17(ts);
  std::string down = "127.0.0.1:" + std::to_string(testing::ClosedPort());
  auto r = Run({"query", "player", "p-17", "--server", down + "," + ts.address()});
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("\"id\":\"p-17\"") != std::string::npos);
}

TEST_CASE("query: --server with every server down names each, a malformed list its entry") {
  std::string a = "127.0.0.1:" + std::to_string(testing::ClosedPort());
  std::string b = "127.0.0.1:" + std::to_string(testing::ClosedPort());
  auto r = Run({"query", "player", "p-17", "--server", a + "," + b});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("no server took the connection (2 tried, 1 round(s) in ") != std::string::npos);
  CHECK(r.err.find(a + ": cannot connect to " + a) != std::string::npos);
  CHECK(r.err.find(b + ": cannot connect to " + b) != std::string::npos);
  for (const char* command : {"query", "subscribe", "load"}) {
    std::vector<std::string> args = {command, "player"};
    if (std::string(command) == "query") args.push_back("p-17");
    if (std::string(command) == "load") args.pop_back();
    args.insert(args.end(), {"--server", a + ",db2"});
    auto bad = Run(args);
    CHECK(bad.exit_code == 2);
    CHECK_MESSAGE(bad.err.find("--server: '" + a + ",db2': entry 2: 'db2' is not HOST:PORT") !=
                      std::string::npos,
                  command, ": ", bad.err);
  }
}

TEST_CASE("query: a server with an auth token needs --auth-token-file") {
  testing::TestServerOptions opt;
  opt.server.auth_token = "query-token";
  testing::TestServer ts(opt);
  auto w = ts.Connect("game-1", "query-token");
  const engine::Schema& p = *w->FindSchema("player");
  REQUIRE(w->Send(WriteFrame(FrameType::kAssert, 1, kTs1, engine::kPlayerSchemaId, "p-1",
                             Record(p, {{"score", int64_t{12}}})))
              .ok());
  REQUIRE(WaitForAck(*w, 1));

  auto r = Run({"query", "player", "p-1", "--server", ts.address()});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("auth_failed") != std::string::npos);

  std::string path =
      (std::filesystem::temp_directory_path() / ("conv-query-token-" + std::to_string(::getpid())))
          .string();
  FILE* f = std::fopen(path.c_str(), "w");
  REQUIRE(f != nullptr);
  std::fputs("query-token\n", f);
  std::fclose(f);
  REQUIRE(::chmod(path.c_str(), 0600) == 0);
  r = Run({"query", "player", "p-1", "--server", ts.address(), "--auth-token-file", path});
  CAPTURE(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out == "{\"schema\":\"player\",\"id\":\"p-1\",\"record\":{\"score\":12}}\n");
  std::filesystem::remove(path);
}

TEST_CASE("query: every field type is rendered as JSON") {
  testing::TestServerOptions opt;
  opt.schema_text = "gadget label:string blob:bytes ratio:f64 big:f64 odd:f64 on:bool n:i64\n";
  testing::TestServer ts(opt);
  auto w = ts.Connect("maker");
  const engine::Schema* g = w->FindSchema("gadget");
  REQUIRE(g != nullptr);
  REQUIRE(w->Send(WriteFrame(FrameType::kAssert, 1, kTs1, g->id, "g/1 \"q\"",
                             Record(*g, {{"label", std::string("tab\there\n\xc3\xa9")},
                                         {"blob", engine::Bytes{std::string("\x00\xff\x10", 3)}},
                                         {"ratio", 0.1},
                                         {"big", 1e300},
                                         {"odd", std::numeric_limits<double>::quiet_NaN()},
                                         {"on", false},
                                         {"n", std::numeric_limits<int64_t>::min()}})))
              .ok());
  REQUIRE(WaitForAck(*w, 1));
  auto r = Run({"query", "gadget", "g/1 \"q\"", "--server", ts.address()});
  CAPTURE(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out ==
        "{\"schema\":\"gadget\",\"id\":\"g/1 "
        "\\\"q\\\"\",\"record\":{\"label\":\"tab\\there\\n\xc3\xa9\","
        "\"blob\":\"AP8Q\",\"ratio\":0.1,\"big\":1e+300,\"odd\":\"NaN\",\"on\":false,"
        "\"n\":-9223372036854775808}}\n");
}

TEST_CASE("query: ids and sources that are not UTF-8 print as base64, non-finite f64 as strings") {
  testing::TestServerOptions opt;
  opt.schema_text = "probe v:f64 label:string\n";
  testing::TestServer ts(opt);
  // The bytes ff fe, and the two characters U+00FF U+00FE (c3 bf c3 be): two entities
  // that must not print alike. The second writer's name is not UTF-8 either.
  const std::string raw_id = "\xff\xfe";
  const std::string text_id = "\xc3\xbf\xc3\xbe";
  auto w = ts.Connect("maker");
  auto odd = ts.Connect("src-\xff");
  const engine::Schema* g = w->FindSchema("probe");
  REQUIRE(g != nullptr);
  REQUIRE(w->Send(WriteFrame(FrameType::kAssert, 1, kTs1, g->id, raw_id,
                             Record(*g, {{"v", std::numeric_limits<double>::infinity()}})) +
                  WriteFrame(FrameType::kAssert, 2, kTs1, g->id, text_id,
                             Record(*g, {{"v", -std::numeric_limits<double>::infinity()},
                                         {"label", std::string("NaN")}})))
              .ok());
  REQUIRE(WaitForAck(*w, 2));
  REQUIRE(odd->Send(WriteFrame(FrameType::kPatch, 1, kTs2, g->id, raw_id,
                               Record(*g, {{"label", std::string("x")}})))
              .ok());
  REQUIRE(WaitForAck(*odd, 1));

  auto r = Run({"query", "probe", raw_id, "--claims", "--server", ts.address()});
  CAPTURE(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out ==
        "{\"schema\":\"probe\",\"id\":{\"base64\":\"//4=\"},"
        "\"record\":{\"v\":\"Infinity\",\"label\":\"x\"},\"claims\":["
        "{\"source\":\"maker\",\"ts\":1700000000000000,\"record\":{\"v\":\"Infinity\"}},"
        "{\"source\":{\"base64\":\"c3JjLf8=\"},\"ts\":1700000000500000,"
        "\"record\":{\"label\":\"x\"}}]}\n");

  r = Run({"query", "probe", text_id, "--server", ts.address()});
  CAPTURE(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out ==
        "{\"schema\":\"probe\",\"id\":\"\xc3\xbf\xc3\xbe\","
        "\"record\":{\"v\":\"-Infinity\",\"label\":\"NaN\"}}\n");
}
