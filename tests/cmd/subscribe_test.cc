// `convergence subscribe` run as a separate process against an in-process server:
// flag errors and their exit codes, and the JSON lines it prints for a bootstrap,
// live changes, a projection, a resume, a stop signal and a server going away.

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "support/durable_server.h"
#include "support/json_value.h"
#include "support/process.h"
#include "support/serve_process.h"
#include "support/test_server.h"

using namespace conv;
using net::FrameType;
using testing::JsonValue;
using testing::Record;
using testing::WaitForAck;
using testing::WriteFrame;

namespace {

constexpr uint64_t kPlayer = engine::kPlayerSchemaId;
constexpr uint64_t kTs1 = 1'700'000'000'000'000;
constexpr uint64_t kTs2 = 1'700'000'000'500'000;
constexpr uint64_t kTs3 = 1'700'000'001'000'000;

// Runs CONV_BINARY with `args`; killed when it has not exited within `timeout`.
testing::ProcessResult Run(const std::vector<std::string>& args,
                           std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  std::vector<std::string> argv = {CONV_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  return testing::RunProcess(argv, timeout);
}

// `convergence subscribe` running in the background: its stdout read line by line,
// its stderr collected in a scratch file. Killed by the destructor if still running.
class Subscriber {
 public:
  Subscriber(const testing::TestServer& ts, std::vector<std::string> args)
      : Subscriber(ts.address(), std::move(args)) {}
  Subscriber(const std::string& server, std::vector<std::string> args) {
    std::vector<std::string> argv = {CONV_BINARY, "subscribe"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--server", server});
    auto c = testing::ChildProcess::Start(argv, dir_.File("stderr"));
    REQUIRE_MESSAGE(c.ok(), (c.ok() ? "" : c.message()));
    child_ = std::move(c).value();
  }

  // The next line of stdout; fails the test when none comes in time.
  std::string Line() {
    auto line = child_->WaitForLine("", testing::kReplyTimeout);
    REQUIRE_MESSAGE(line.ok(), (line.ok() ? "" : line.message()), "; stderr: ", err());
    return *line;
  }
  // The next line, or nullopt at the end of stdout.
  std::optional<std::string> TryLine() {
    auto line = child_->WaitForLine("", testing::kReplyTimeout);
    if (!line.ok()) return std::nullopt;
    return *line;
  }
  // The next line, parsed as JSON.
  JsonValue Json(std::string* text = nullptr) {
    std::string line = Line();
    if (text != nullptr) *text = line;
    auto v = testing::ParseJson(line);
    REQUIRE_MESSAGE(v.has_value(), "not JSON: ", line);
    REQUIRE(v->is(JsonValue::Kind::kObject));
    return *v;
  }
  // Reads the snapshot_end line and returns its window.
  uint64_t SnapshotEnd(uint64_t total, bool reset) {
    JsonValue v = Json();
    CHECK(Str(v, "type") == "snapshot_end");
    CHECK(Num(v, "total") == total);
    REQUIRE(v.Get("reset") != nullptr);
    CHECK(v.Get("reset")->boolean == reset);
    return Num(v, "window");
  }

  // Waits for the process to end; its exit code, or -1 when it did not exit normally
  // within the timeout.
  int ExitCode(std::chrono::milliseconds wait = testing::kReplyTimeout) {
    auto status = child_->Wait(wait);
    if (!status.has_value() || !WIFEXITED(*status)) return -1;
    return WEXITSTATUS(*status);
  }
  void Signal(int sig) { child_->Signal(sig); }
  std::string err() const { return testing::ReadFileOrEmpty(dir_.File("stderr")); }

  static std::string Str(const JsonValue& v, const std::string& key) {
    const JsonValue* m = v.Get(key);
    REQUIRE_MESSAGE(m != nullptr, "no member ", key);
    return m->string;
  }
  static uint64_t Num(const JsonValue& v, const std::string& key) {
    const JsonValue* m = v.Get(key);
    REQUIRE_MESSAGE(m != nullptr, "no member ", key);
    REQUIRE(m->is(JsonValue::Kind::kNumber));
    return static_cast<uint64_t>(m->number);
  }

 private:
  testing::TempDir dir_{"conv-subscribe"};
  std::unique_ptr<testing::ChildProcess> child_;
};

// A writer connection with its own seq counter.
class Writer {
 public:
  Writer(testing::TestServer& ts, const std::string& source) : client_(ts.Connect(source)) {}
  const engine::Schema& player() const { return *client_->FindSchema(kPlayer); }
  // Sends one op and waits until it is acknowledged (applied and durable).
  void Op(FrameType type, uint64_t ts, const std::string& id, const std::string& record = "") {
    REQUIRE(client_->Send(WriteFrame(type, ++seq_, ts, kPlayer, id, record)).ok());
    REQUIRE(WaitForAck(*client_, seq_));
  }

 private:
  std::unique_ptr<net::Client> client_;
  uint64_t seq_ = 0;
};

}  // namespace

TEST_CASE("subscribe cli: an unknown schema exits 4 and names it") {
  testing::TestServer ts;
  auto r = Run({"subscribe", "starship", "--server", ts.address()});
  CHECK(r.exit_code == 4);
  CHECK(r.out.empty());
  CHECK(r.err.find("unknown schema 'starship'") != std::string::npos);
  CHECK(r.err.find("player") != std::string::npos);  // names the known ones
}

TEST_CASE("subscribe cli: an unknown field in --fields exits 4 and names it") {
  testing::TestServer ts;
  auto r = Run({"subscribe", "player", "--fields", "x,altitude", "--server", ts.address()});
  CHECK(r.exit_code == 4);
  CHECK(r.out.empty());
  CHECK(r.err.find("unknown field 'altitude'") != std::string::npos);
  CHECK(r.err.find("health") != std::string::npos);  // names the schema's fields
}

TEST_CASE("subscribe cli: an unreachable server exits 3, a bad flag 2") {
  std::string addr = "127.0.0.1:" + std::to_string(testing::ClosedPort());
  auto r = Run({"subscribe", "player", "--server", addr});
  CHECK(r.exit_code == 3);
  CHECK(r.out.empty());
  CHECK(r.err.find("cannot connect") != std::string::npos);
  CHECK(r.err.find(addr) != std::string::npos);

  r = Run({"subscribe", "player", "--count", "many", "--server", addr});
  CHECK(r.exit_code == 2);
  r = Run({"subscribe", "--server", addr});
  CHECK(r.exit_code == 2);
}

TEST_CASE("subscribe cli: a refused handshake exits 3, a token file lets it in") {
  testing::TestServerOptions opt;
  opt.server.auth_token = "sub-token";
  testing::TestServer ts(opt);
  auto r = Run({"subscribe", "player", "--count", "1", "--server", ts.address()});
  CHECK(r.exit_code == 3);
  CHECK(r.err.find("auth_failed") != std::string::npos);

  testing::TempDir dir("conv-subscribe-token");
  std::string path = dir.File("token");
  FILE* f = std::fopen(path.c_str(), "w");
  REQUIRE(f != nullptr);
  std::fputs("sub-token\n", f);
  std::fclose(f);
  REQUIRE(::chmod(path.c_str(), 0600) == 0);
  Subscriber sub(ts, {"player", "--auth-token-file", path});
  sub.SnapshotEnd(0, false);
  sub.Signal(SIGTERM);
  CHECK(sub.ExitCode() == 0);
}

TEST_CASE("subscribe cli: a subscription the server refuses exits 5 with its message") {
  testing::TestServer ts;
  auto r = Run({"subscribe", "player", "--interval", "3600001", "--server", ts.address()});
  CHECK(r.exit_code == 5);
  CHECK(r.out.empty());
  CHECK(r.err.find("bad_value") != std::string::npos);

  r = Run({"subscribe", "player", "--prefix", std::string(256, 'p'), "--server", ts.address()});
  CHECK(r.exit_code == 5);
  CHECK(r.err.find("bad_id") != std::string::npos);
}

TEST_CASE("subscribe cli: --bootstrap prints the state, snapshot_end, then each change") {
  testing::TestServer ts;
  Writer w(ts, "game-1");
  const engine::Schema& p = w.player();
  w.Op(FrameType::kAssert, kTs1, "p-1",
       Record(p, {{"name", std::string("ann")}, {"x", 1.5}, {"health", int64_t{90}}}));
  w.Op(FrameType::kAssert, kTs1, "p-2", Record(p, {{"name", std::string("bob")}}));

  Subscriber sub(ts, {"player", "--bootstrap", "--include-prev", "--count", "2"});
  std::map<std::string, std::string> snapshot;
  for (int i = 0; i < 2; ++i) {
    std::string line;
    JsonValue v = sub.Json(&line);
    CHECK(Subscriber::Str(v, "type") == "snapshot");
    snapshot[Subscriber::Str(v, "id")] = line;
  }
  CHECK(snapshot == std::map<std::string, std::string>{
                        {"p-1",
                         "{\"type\":\"snapshot\",\"kind\":\"upsert\",\"id\":\"p-1\",\"record\":{"
                         "\"name\":\"ann\",\"x\":1.5,\"health\":90}}"},
                        {"p-2",
                         "{\"type\":\"snapshot\",\"kind\":\"upsert\",\"id\":\"p-2\",\"record\":{"
                         "\"name\":\"bob\"}}"},
                    });
  uint64_t start = sub.SnapshotEnd(2, true);
  CHECK(start > 0);

  // A write after snapshot_end: a change line with the new record and the old one.
  w.Op(FrameType::kPatch, kTs2, "p-1", Record(p, {{"x", 2.25}}));
  std::string line;
  JsonValue v = sub.Json(&line);
  uint64_t w1 = Subscriber::Num(v, "window");
  CHECK(w1 > start);
  CHECK(line == fmt::format("{{\"type\":\"change\",\"window\":{},\"kind\":\"upsert\",\"id\":\"p-"
                            "1\",\"changed\":[\"x\"],\"ts\":{},\"record\":{{\"name\":\"ann\","
                            "\"x\":2.25,\"health\":90}},\"prev\":{{\"name\":\"ann\",\"x\":1.5,"
                            "\"health\":90}}}}",
                            w1, kTs2));

  // A delete: an empty record, the previous one as prev.
  w.Op(FrameType::kRetract, kTs3, "p-2");
  v = sub.Json(&line);
  CAPTURE(line);
  uint64_t w2 = Subscriber::Num(v, "window");
  CHECK(w2 > w1);
  CHECK(Subscriber::Str(v, "type") == "change");
  CHECK(Subscriber::Str(v, "kind") == "delete");
  CHECK(Subscriber::Str(v, "id") == "p-2");
  CHECK(Subscriber::Num(v, "ts") == kTs3);
  CHECK(line.find(",\"record\":{},\"prev\":{\"name\":\"bob\"}}") != std::string::npos);

  // --count 2 reached: exit 0 with the summary.
  CHECK(sub.ExitCode() == 0);
  std::string err = sub.err();
  CAPTURE(err);
  CHECK(err.find("2 snapshot entries, 2 changes in 2 windows") != std::string::npos);
  CHECK(err.find(fmt::format("last window {}", w2)) != std::string::npos);
  CHECK(err.find(fmt::format("--resume {}", w2)) != std::string::npos);
}

TEST_CASE("subscribe cli: --prefix and --fields filter and project the changes") {
  testing::TestServer ts;
  Writer w(ts, "game-1");
  const engine::Schema& p = w.player();
  Subscriber sub(ts, {"player", "--prefix", "a-", "--fields", "x,health", "--count", "2"});
  // Without --bootstrap: no snapshot lines, a snapshot_end naming where changes start.
  uint64_t start = sub.SnapshotEnd(0, false);

  w.Op(FrameType::kPatch, kTs1, "b-1", Record(p, {{"x", 9.0}}));  // other prefix
  w.Op(FrameType::kPatch, kTs1, "a-1",
       Record(p, {{"name", std::string("ann")}}));  // no projected field changed
  w.Op(FrameType::kPatch, kTs2, "a-1", Record(p, {{"x", 3.5}, {"name", std::string("ann")}}));
  w.Op(FrameType::kPatch, kTs3, "a-1", Record(p, {{"health", int64_t{7}}}));

  std::string line;
  JsonValue v = sub.Json(&line);
  uint64_t w1 = Subscriber::Num(v, "window");
  CHECK(w1 > start);
  CHECK(line == fmt::format("{{\"type\":\"change\",\"window\":{},\"kind\":\"upsert\",\"id\":\"a-"
                            "1\",\"changed\":[\"x\"],\"ts\":{},\"record\":{{\"x\":3.5}}}}",
                            w1, kTs2));
  v = sub.Json(&line);
  uint64_t w2 = Subscriber::Num(v, "window");
  CHECK(w2 > w1);
  CHECK(line == fmt::format("{{\"type\":\"change\",\"window\":{},\"kind\":\"upsert\",\"id\":\"a-"
                            "1\",\"changed\":[\"health\"],\"ts\":{},\"record\":{{\"x\":3.5,"
                            "\"health\":7}}}}",
                            w2, kTs3));
  CHECK(sub.ExitCode() == 0);
  CHECK(sub.err().find("0 snapshot entries, 2 changes in 2 windows") != std::string::npos);
}

TEST_CASE("subscribe cli: --resume prints what changed since the window, then live changes") {
  testing::TestServer ts;
  Writer w(ts, "game-1");
  const engine::Schema& p = w.player();
  w.Op(FrameType::kAssert, kTs1, "p-1", Record(p, {{"score", int64_t{1}}}));
  w.Op(FrameType::kAssert, kTs1, "p-2", Record(p, {{"score", int64_t{2}}}));
  w.Op(FrameType::kAssert, kTs1, "p-4", Record(p, {{"score", int64_t{4}}}));

  uint64_t resume = 0;
  {
    Subscriber first(ts, {"player", "--count", "1"});
    first.SnapshotEnd(0, false);
    w.Op(FrameType::kPatch, kTs2, "p-1", Record(p, {{"score", int64_t{10}}}));
    resume = Subscriber::Num(first.Json(), "window");
    CHECK(first.ExitCode() == 0);
    CHECK(first.err().find(fmt::format("--resume {}", resume)) != std::string::npos);
  }

  // While no one listens: p-1 changes again, p-2 is deleted, p-3 appears; p-4 stays.
  w.Op(FrameType::kPatch, kTs3, "p-1", Record(p, {{"score", int64_t{11}}}));
  w.Op(FrameType::kRetract, kTs3, "p-2");
  w.Op(FrameType::kAssert, kTs3, "p-3", Record(p, {{"score", int64_t{3}}}));

  Subscriber sub(ts, {"player", "--resume", std::to_string(resume)});
  std::map<std::string, std::string> delta;
  for (int i = 0; i < 3; ++i) {
    std::string line;
    JsonValue v = sub.Json(&line);
    CHECK(Subscriber::Str(v, "type") == "snapshot");
    delta[Subscriber::Str(v, "id")] = line;
  }
  CHECK(
      delta ==
      std::map<std::string, std::string>{
          {"p-1",
           "{\"type\":\"snapshot\",\"kind\":\"upsert\",\"id\":\"p-1\",\"record\":{\"score\":11}}"},
          {"p-2", "{\"type\":\"snapshot\",\"kind\":\"delete\",\"id\":\"p-2\",\"record\":{}}"},
          {"p-3",
           "{\"type\":\"snapshot\",\"kind\":\"upsert\",\"id\":\"p-3\",\"record\":{\"score\":3}}"},
      });
  uint64_t start = sub.SnapshotEnd(3, false);
  CHECK(start > resume);

  // Then live changes.
  w.Op(FrameType::kPatch, kTs3, "p-4", Record(p, {{"score", int64_t{40}}}));
  JsonValue v = sub.Json();
  CHECK(Subscriber::Str(v, "id") == "p-4");
  CHECK(Subscriber::Num(v, "window") > start);
  sub.Signal(SIGINT);
  CHECK(sub.ExitCode() == 0);
  CHECK(sub.err().find("3 snapshot entries, 1 changes in 1 windows") != std::string::npos);
}

TEST_CASE("subscribe cli: SIGINT and SIGTERM stop it with exit 0 and a summary") {
  testing::TestServer ts;
  for (int sig : {SIGINT, SIGTERM}) {
    CAPTURE(sig);
    Subscriber sub(ts, {"player"});
    uint64_t start = sub.SnapshotEnd(0, false);
    sub.Signal(sig);
    CHECK(sub.ExitCode() == 0);
    std::string err = sub.err();
    CAPTURE(err);
    CHECK(err.find("0 snapshot entries, 0 changes in 0 windows") != std::string::npos);
    CHECK(err.find(fmt::format("last window {}", start)) != std::string::npos);
  }
}

TEST_CASE("subscribe cli: the server going away exits 3 with a message") {
  // --reconnect-for 0s: at once; 1s: after trying the server again for a second.
  for (const char* reconnect_for : {"0s", "1s"}) {
    CAPTURE(reconnect_for);
    testing::TestServer ts;
    Subscriber sub(ts, {"player", "--bootstrap", "--reconnect-for", reconnect_for});
    uint64_t start = sub.SnapshotEnd(0, true);
    auto stopped = std::chrono::steady_clock::now();
    ts.Shutdown();
    CHECK(sub.ExitCode() == 3);
    std::string err = sub.err();
    CAPTURE(err);
    CHECK((err.find("shutting_down") != std::string::npos ||
           err.find("closed the connection") != std::string::npos));
    CHECK(err.find("0 snapshot entries") != std::string::npos);  // the summary still comes
    if (std::string(reconnect_for) == "1s") {
      CHECK(err.find("could not resume within 1s: ") != std::string::npos);
      CHECK(std::chrono::steady_clock::now() - stopped >= std::chrono::seconds(1));
      CHECK(err.find(fmt::format("continue with --resume {}", start)) != std::string::npos);
    } else {
      CHECK(err.find("could not resume") == std::string::npos);
    }
  }
}

TEST_CASE("subscribe cli: a lost connection is resumed after the last window printed") {
  testing::TempDir dir("conv-subscribe-resume");
  testing::DurableServerOptions so;
  so.data_dir = dir.File("data");
  so.port = testing::ClosedPort();
  auto server = std::make_unique<testing::DurableServer>(so);
  const std::string address = server->address();
  uint64_t seq = 0;
  auto write = [&](const std::string& id, int64_t score) {
    auto w = server->Connect("game-1");
    const engine::Schema& p = *w->FindSchema(kPlayer);
    REQUIRE(w->Send(WriteFrame(FrameType::kAssert, ++seq, kTs1 + seq, kPlayer, id,
                               Record(p, {{"score", score}})))
                .ok());
    REQUIRE(WaitForAck(*w, seq));
  };
  write("p-1", 1);
  Subscriber sub(address, {"player", "--bootstrap"});
  REQUIRE(Subscriber::Str(sub.Json(), "id") == "p-1");
  uint64_t start = sub.SnapshotEnd(1, true);
  write("p-2", 2);
  JsonValue before = sub.Json();
  CHECK(Subscriber::Str(before, "id") == "p-2");
  uint64_t seen = Subscriber::Num(before, "window");
  CHECK(seen > start);

  // The server stops and comes back on the same port with the same data dir; a
  // change made once it is back comes after the resume, in a later window.
  server.reset();
  server = std::make_unique<testing::DurableServer>(so);
  CHECK(sub.SnapshotEnd(0, false) >= seen);
  write("p-3", 3);
  JsonValue after = sub.Json();
  CHECK(Subscriber::Str(after, "id") == "p-3");
  CHECK(Subscriber::Num(after, "window") > seen);
  sub.Signal(SIGINT);
  CHECK(sub.ExitCode() == 0);
  std::string err = sub.err();
  CAPTURE(err);
  CHECK(err.find(fmt::format("resuming after window {} on {}", seen, address)) !=
        std::string::npos);
  CHECK(err.find("1 snapshot entries, 2 changes in 2 windows") != std::string::npos);
}

TEST_CASE("subscribe cli: a server whose schema changed meanwhile is not resumed") {
  testing::TempDir dir("conv-subscribe-resume");
  testing::DurableServerOptions so;
  so.data_dir = dir.File("data");
  so.port = testing::ClosedPort();
  so.schema_text = "ship name:string hull:i64\n";
  auto server = std::make_unique<testing::DurableServer>(so);
  Subscriber sub(server->address(), {"ship", "--reconnect-for", "5s"});
  sub.SnapshotEnd(0, false);
  // Back with a field appended to the schema: the records to come would not read as
  // those printed.
  server.reset();
  so.schema_text = "ship name:string hull:i64 shield:f64\n";
  server = std::make_unique<testing::DurableServer>(so);
  CHECK(sub.ExitCode() == 3);
  std::string err = sub.err();
  CAPTURE(err);
  CHECK(err.find(fmt::format("subscribe: cannot resume on {}: its schema 'ship' is not the one "
                             "the subscription began with",
                             server->address())) != std::string::npos);
}

TEST_CASE("subscribe cli: a connection lost in the middle of a bootstrap is not resumed") {
  testing::TempDir dir("conv-subscribe-resume");
  testing::ServeProcess server = testing::StartServe(dir.File("data"), dir.File("serve.log"));
  constexpr uint64_t kEntities = 24'000;
  {
    // More state than the sockets and the server's queue hold: the bootstrap cannot
    // end while the subscriber's output is not read.
    net::Hello hello;
    hello.source = "game-1";
    auto w = net::Client::Connect(server.address, hello);
    REQUIRE_MESSAGE(w.ok(), w.message());
    const engine::Schema& p = *(*w)->FindSchema(kPlayer);
    // 24 MB: 24,000 entities of 1 KB (few ops: cheap under the sanitizers too).
    const std::string record = Record(p, {{"name", std::string(1000, 'n')}});
    for (uint64_t seq = 1; seq <= kEntities; ++seq) {
      REQUIRE((*w)->Send(WriteFrame(FrameType::kAssert, seq, kTs1, kPlayer,
                                    fmt::format("p-{}", seq), record))
                  .ok());
    }
    REQUIRE((*w)->Sync().ok());
  }
  Subscriber sub(server.address, {"player", "--bootstrap", "--reconnect-for", "1s"});
  CHECK(Subscriber::Str(sub.Json(), "type") == "snapshot");
  server.process->Signal(SIGKILL);
  // The lines that came before the loss, then the end.
  uint64_t lines = 1;
  for (auto next = sub.TryLine(); next.has_value(); next = sub.TryLine()) {
    ++lines;
    REQUIRE(next->find("\"type\":\"snapshot\"") != std::string::npos);
  }
  CHECK(lines < kEntities);
  CHECK(sub.ExitCode() == 3);
  std::string err = sub.err();
  CAPTURE(err);
  CHECK(err.find("subscribe: cannot resume: lost in the middle of the bootstrap") !=
        std::string::npos);
  CHECK(err.find("resuming") == std::string::npos);
}

TEST_CASE("subscribe cli: ids that are not UTF-8 print as base64, non-finite f64 as strings") {
  testing::TestServer ts;
  Writer w(ts, "game-1");
  const engine::Schema& p = w.player();
  // The bytes ff fe and the characters U+00FF U+00FE (c3 bf c3 be) must not print alike.
  const std::string raw_id = "\xff\xfe";
  const std::string text_id = "\xc3\xbf\xc3\xbe";
  w.Op(FrameType::kAssert, kTs1, raw_id,
       Record(p, {{"x", std::numeric_limits<double>::quiet_NaN()}}));
  w.Op(FrameType::kAssert, kTs1, text_id,
       Record(p, {{"x", std::numeric_limits<double>::infinity()}}));

  Subscriber sub(ts, {"player", "--bootstrap", "--include-prev", "--count", "1"});
  std::set<std::string> snapshot = {sub.Line(), sub.Line()};
  CHECK(snapshot ==
        std::set<std::string>{
            R"({"type":"snapshot","kind":"upsert","id":{"base64":"//4="},"record":{"x":"NaN"}})",
            "{\"type\":\"snapshot\",\"kind\":\"upsert\",\"id\":\"\xc3\xbf\xc3\xbe\","
            "\"record\":{\"x\":\"Infinity\"}}"});
  uint64_t w0 = sub.SnapshotEnd(2, true);

  w.Op(FrameType::kPatch, kTs2, raw_id,
       Record(p, {{"x", -std::numeric_limits<double>::infinity()}}));
  std::string line = sub.Line();
  auto v = testing::ParseJson(line);
  REQUIRE_MESSAGE(v.has_value(), "not JSON: ", line);
  uint64_t window = Subscriber::Num(*v, "window");
  CHECK(window > w0);
  CHECK(line ==
        fmt::format(R"({{"type":"change","window":{},"kind":"upsert","id":{{"base64":"//4="}},)"
                    R"("changed":["x"],"ts":{},"record":{{"x":"-Infinity"}},)"
                    R"("prev":{{"x":"NaN"}}}})",
                    window, kTs2));
  CHECK(sub.ExitCode() == 0);
}
