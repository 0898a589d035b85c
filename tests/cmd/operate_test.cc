// What an operator sees of the real binary: --version, `serve --log-format json`,
// `serve --metrics-listen`, and `cmake --install`.

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "net/client.h"
#include "support/http_client.h"
#include "support/json_value.h"
#include "support/process.h"
#include "support/test_server.h"

using namespace conv;
using testing::ProcessResult;
using testing::RunProcess;

namespace {

namespace fs = std::filesystem;

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    out.push_back(line);
  return out;
}

// The value of the sample `series` in a Prometheus exposition, or -1.
double Sample(const std::string& text, const std::string& series) {
  for (const auto& line : Lines(text)) {
    if (line.starts_with(series + " ")) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

uint16_t PortOf(const std::string& line) {
  size_t colon = line.rfind(':');
  return static_cast<uint16_t>(std::stoi(line.substr(colon + 1)));
}

}  // namespace

TEST_CASE("version: --version prints the version, git commit and build type") {
  ProcessResult r = RunProcess({CONV_BINARY, "--version"});
  CHECK(r.exit_code == 0);
  INFO(r.out);
  CHECK(r.out.starts_with("convergence "));
  CHECK(r.out.find(" (commit ") != std::string::npos);
  CHECK(r.out.ends_with(" build)\n"));
  CHECK(r.out.find("commit )") == std::string::npos);  // the commit is not empty
}

TEST_CASE("log: serve --log-format json writes one JSON object per line, and metrics scrape") {
  testing::TempDir dir("conv-operate");
  std::string err_path = dir.File("stderr");
  auto child = testing::ChildProcess::Start(
      {CONV_BINARY, "serve", "--listen", "127.0.0.1:0", "--data-dir", dir.File("data"),
       "--partitions", "1", "--io-threads", "1", "--window", "1ms", "--log-format", "json",
       "--metrics-listen", "127.0.0.1:0"},
      err_path);
  REQUIRE_MESSAGE(child.ok(), child.message());
  auto listening = (*child)->WaitForLine("listening on ", std::chrono::seconds(30));
  REQUIRE_MESSAGE(listening.ok(), listening.message(), testing::ReadFileOrEmpty(err_path));
  auto metrics_line = (*child)->WaitForLine("metrics on http://", std::chrono::seconds(10));
  REQUIRE_MESSAGE(metrics_line.ok(), metrics_line.message());
  CHECK(metrics_line->ends_with("/metrics"));
  uint16_t port = PortOf(*listening);
  uint16_t metrics_port =
      PortOf(metrics_line->substr(0, metrics_line->size() - std::string("/metrics").size()));

  // A few acknowledged (so fdatasynced) writes.
  {
    net::Hello hello;
    hello.source = "operator-test";
    auto c = net::Client::Connect(fmt::format("127.0.0.1:{}", port), hello);
    REQUIRE_MESSAGE(c.ok(), c.message());
    const engine::Schema* p = (*c)->FindSchema("player");
    REQUIRE(p != nullptr);
    for (uint64_t seq = 1; seq <= 3; ++seq) {
      REQUIRE((*c)->Send(testing::WriteFrame(net::FrameType::kAssert, seq, 0, p->id,
                                             fmt::format("p-{}", seq),
                                             testing::Record(*p, {{"score", int64_t{1}}})))
                  .ok());
      REQUIRE((*c)->Sync().ok());
    }
  }

  auto r = testing::HttpGet(metrics_port, "/metrics");
  REQUIRE_MESSAGE(r.ok(), r.message());
  CHECK(r->status == 200);
  CHECK(Sample(r->body, "convergence_ops_total{kind=\"assert\"}") == 3);
  CHECK(Sample(r->body, "convergence_entities") == 3);
  CHECK(Sample(r->body, "convergence_sources") == 1);
  CHECK(Sample(r->body, "convergence_wal_batches_total") >= 1);
  CHECK(Sample(r->body, "convergence_wal_bytes_total") > 0);
  CHECK(Sample(r->body, "convergence_wal_fsync_duration_seconds_count") >= 1);
  CHECK(Sample(r->body, "convergence_wal_fsync_duration_seconds_bucket{le=\"+Inf\"}") ==
        Sample(r->body, "convergence_wal_fsync_duration_seconds_count"));
  CHECK(Sample(r->body, "convergence_coalescing_ratio") > 0);
  CHECK(r->body.find("convergence_build_info{version=") != std::string::npos);

  (*child)->Signal(SIGTERM);
  auto status = (*child)->Wait(std::chrono::seconds(30));
  REQUIRE(status.has_value());
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);

  std::string err = testing::ReadFileOrEmpty(err_path);
  auto lines = Lines(err);
  REQUIRE(lines.size() >= 3);
  std::vector<std::string> messages;
  for (const auto& line : lines) {
    auto v = testing::ParseJson(line);
    REQUIRE_MESSAGE(v.has_value(), "not one JSON object: ", line);
    REQUIRE(v->is(testing::JsonValue::Kind::kObject));
    REQUIRE(v->Get("ts") != nullptr);
    REQUIRE(v->Get("level") != nullptr);
    REQUIRE(v->Get("msg") != nullptr);
    CHECK(v->Get("ts")->string.ends_with("Z"));
    messages.push_back(v->Get("level")->string + " " + v->Get("msg")->string);
  }
  auto has = [&](std::string_view prefix) {
    for (const auto& m : messages) {
      if (m.starts_with(prefix)) return true;
    }
    return false;
  };
  CHECK(has("info convergence serving on"));
  CHECK(has("info metrics at http://"));
  CHECK(has("info received SIGTERM"));
}

TEST_CASE("serve: a non-loopback --metrics-listen without a token is refused at start-up") {
  testing::TempDir dir("conv-operate");
  ProcessResult r = RunProcess({CONV_BINARY, "serve", "--listen", "127.0.0.1:0", "--data-dir",
                                dir.File("data"), "--metrics-listen", "0.0.0.0:0"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("refusing to serve metrics") != std::string::npos);
}

TEST_CASE("serve: subscription flags out of range are refused at start-up, naming the flag") {
  testing::TempDir dir("conv-operate");
  ProcessResult r = RunProcess({CONV_BINARY, "serve", "--listen", "127.0.0.1:0", "--data-dir",
                                dir.File("data"), "--subscriber-backlog", "1000"});
  CHECK(r.exit_code == 2);
  CHECK_MESSAGE(r.err.find("--subscriber-backlog") != std::string::npos, r.err);
  r = RunProcess({CONV_BINARY, "serve", "--listen", "127.0.0.1:0", "--data-dir", dir.File("data"),
                  "--resume-retention", "ten"});
  CHECK(r.exit_code == 2);
  CHECK_MESSAGE(r.err.find("--resume-retention") != std::string::npos, r.err);
}

TEST_CASE("serve: a --queue-goal out of range is refused at start-up, naming the flag") {
  testing::TempDir dir("conv-operate");
  for (const char* goal : {"50us", "11s"}) {
    ProcessResult r = RunProcess({CONV_BINARY, "serve", "--listen", "127.0.0.1:0", "--data-dir",
                                  dir.File("data"), "--queue-goal", goal});
    CHECK(r.exit_code == 2);
    CHECK_MESSAGE(r.err.find("--queue-goal") != std::string::npos, r.err);
    CHECK_MESSAGE(r.err.find("100us to 10s") != std::string::npos, r.err);
  }
}

TEST_CASE("serve: under a low open file limit it serves fewer connections and keeps logging") {
  // ulimit -n 200 (soft and hard): --max-connections 1000 cannot be met, so the
  // server says so and serves 200 - 64 connections; the rest get overloaded at once
  // instead of the accept loop spinning on EMFILE, and the log keeps its descriptors.
  testing::TempDir dir("conv-operate");
  std::string err_path = dir.File("stderr");
  auto child = testing::ChildProcess::Start(
      {"/bin/sh", "-c",
       fmt::format("ulimit -n 200 && exec {} serve --listen 127.0.0.1:0 --data-dir {} "
                   "--partitions 1 --io-threads 1 --window 1ms --max-connections 1000",
                   CONV_BINARY, dir.File("data"))},
      err_path);
  REQUIRE_MESSAGE(child.ok(), child.message());
  auto listening = (*child)->WaitForLine("listening on ", std::chrono::seconds(30));
  REQUIRE_MESSAGE(listening.ok(), listening.message());
  uint16_t port = PortOf(*listening);
  std::vector<std::unique_ptr<testing::RawConnection>> conns;
  int welcomed = 0, refused = 0;
  for (int i = 0; i < 170; ++i) {
    conns.push_back(std::make_unique<testing::RawConnection>(port));
    REQUIRE(conns.back()->Send(testing::HelloFrame("")));
    auto f = conns.back()->ReadFrame();
    REQUIRE_MESSAGE(f.ok(), "connection ", i, ": ", f.message());
    if (testing::IsType(*f, net::FrameType::kWelcome)) {
      ++welcomed;
    } else {
      CHECK(testing::ErrorOf(*f).code == static_cast<uint64_t>(net::ErrorCode::kOverloaded));
      ++refused;
    }
  }
  CHECK(welcomed == 136);
  CHECK(refused == 34);
  conns.clear();
  // Writes still reach the log, through new segments too.
  net::Hello hello;
  hello.source = "after";
  std::unique_ptr<net::Client> w;
  for (int i = 0; i < 100 && w == nullptr; ++i) {  // closed slots are given back shortly
    auto c = net::Client::Connect(fmt::format("127.0.0.1:{}", port), hello);
    if (c.ok()) {
      w = std::move(c).value();
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  REQUIRE(w != nullptr);
  const engine::Schema& p = *w->FindSchema("player");
  const std::string big(200'000, 'b');
  for (uint64_t seq = 1; seq <= 400; ++seq) {  // 80 MB: more than one 64 MiB segment
    REQUIRE(
        w->Send(testing::WriteFrame(net::FrameType::kAssert, seq, 0, p.id, fmt::format("e-{}", seq),
                                    testing::Record(p, {{"name", big}})))
            .ok());
  }
  CHECK(w->Sync().ok());
  CHECK(::kill((*child)->pid(), 0) == 0);
  std::ifstream err(err_path);
  std::string text((std::istreambuf_iterator<char>(err)), std::istreambuf_iterator<char>());
  CHECK_MESSAGE(text.find("serving at most 136 connections") != std::string::npos, text);
}

TEST_CASE("install: cmake --install puts the binary, man pages, completions and unit in place") {
  testing::TempDir prefix("conv-install");
  ProcessResult inst =
      RunProcess({CONV_CMAKE, "--install", CONV_BUILD_DIR, "--prefix", prefix.path()},
                 std::chrono::seconds(120));
  REQUIRE_MESSAGE(inst.exit_code == 0, inst.out, inst.err);
  const std::string p = prefix.path();
  for (const char* f :
       {"bin/convergence", "share/man/man1/convergence.1", "share/man/man1/convergence-serve.1",
        "share/man/man1/convergence-query.1", "share/man/man1/convergence-wal-dump.1",
        "share/bash-completion/completions/convergence", "share/zsh/site-functions/_convergence",
        "share/fish/vendor_completions.d/convergence.fish",
        "share/doc/convergence/examples/convergence.service",
        "share/doc/convergence/examples/schemas.txt"}) {
    CHECK_MESSAGE(fs::is_regular_file(p + "/" + f), std::string(f), " was not installed");
  }
  // Every committed page is installed.
  for (const auto& e : fs::directory_iterator(std::string(CONV_SOURCE_DIR) + "/man")) {
    CHECK(fs::is_regular_file(p + "/share/man/man1/" + e.path().filename().string()));
  }

  ProcessResult version = RunProcess({p + "/bin/convergence", "--version"});
  CHECK(version.exit_code == 0);

  ProcessResult man = RunProcess({"/usr/bin/env", "MANWIDTH=80", "MANPAGER=cat", "man", "-M",
                                  p + "/share/man", "convergence-serve"});
  REQUIRE_MESSAGE(man.exit_code == 0, man.err);
  CHECK(man.out.find("convergence-serve - run the convergence server") != std::string::npos);
  CHECK(man.out.find("--metrics-listen") != std::string::npos);
  CHECK(man.out.find("EXAMPLES") != std::string::npos);

  ProcessResult bash = RunProcess(
      {"/usr/bin/env", "bash", "--norc", "--noprofile", "-c",
       fmt::format("source '{}/share/bash-completion/completions/convergence' || exit 3\n"
                   "COMP_WORDS=(convergence ''); COMP_CWORD=1; _convergence convergence\n"
                   "printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                   p)});
  REQUIRE_MESSAGE(bash.exit_code == 0, bash.err);
  for (const char* sub : {"serve", "query", "load", "wal-dump"}) {
    CHECK_MESSAGE(bash.out.find(std::string(sub) + "\n") != std::string::npos, sub);
  }

  std::string unit =
      testing::ReadFileOrEmpty(p + "/share/doc/convergence/examples/convergence.service");
  CHECK(unit.find("ExecStart=") != std::string::npos);
  CHECK(unit.find(" serve --data-dir /var/lib/convergence") != std::string::npos);
  CHECK(unit.find("KillSignal=SIGTERM") != std::string::npos);
  CHECK(unit.find("TimeoutStopSec=") != std::string::npos);
}
