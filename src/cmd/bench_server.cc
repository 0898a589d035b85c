#include "cmd/bench_server.h"

#include <fmt/format.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <thread>

#include "cmd/common.h"
#include "cmd/workload.h"
#include "net/client.h"
#include "util/child_process.h"
#include "util/clock.h"
#include "wal/replay.h"

namespace conv::cmd {

namespace {

std::string ReadFirstMatch(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) != 0) continue;
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string v = line.substr(colon + 1);
    v.erase(0, v.find_first_not_of(" \t"));
    return v;
  }
  return "unknown";
}

}  // namespace

EmbeddedServer::EmbeddedServer(bool fsync) : fsync_(fsync) {
  char tmpl[] = "/tmp/convergence-bench-XXXXXX";
  dir_ = ::mkdtemp(tmpl);
  Build(std::make_unique<engine::SchemaSet>());
}

void EmbeddedServer::Build(std::unique_ptr<engine::SchemaSet> schemas) {
  schemas_ = std::move(schemas);
  sources_ = std::make_unique<engine::SourceTable>();
  unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  engine::EngineOptions eo;
  eo.partitions = cores;
  eo.lanes = std::max(1u, cores / 2);
  eo.data_dir = dir_;
  eo.fsync = fsync_;
  eo.log = &log_;
  engine_ = std::make_unique<engine::Engine>(eo, *schemas_, *sources_);
  net::ServerOptions so;
  so.listen = "127.0.0.1:0";
  server_ = std::make_unique<net::Server>(*engine_, so, log_);
}

EmbeddedServer::~EmbeddedServer() {
  if (server_) server_->Shutdown();
  server_.reset();
  engine_.reset();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

util::Status EmbeddedServer::Start() {
  if (auto st = server_->Listen(); !st.ok()) return st;
  server_->Start();
  return util::Status::Ok();
}

void EmbeddedServer::Stop() {
  server_->Shutdown();
  server_.reset();
  engine_.reset();
}

util::Result<std::string> ThisBinary() {
  char exe[4096];
  ssize_t len = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (len <= 0) return util::Status::Error("cannot find this binary (/proc/self/exe)");
  return std::string(exe, static_cast<size_t>(len));
}

util::Result<ChildRestart> RestartInChild(const std::string& binary, const std::string& data_dir,
                                          bool fsync) {
  std::string log_path = data_dir + ".serve.log";
  struct RemoveLog {
    std::string path;
    ~RemoveLog() { std::remove(path.c_str()); }
  } remove_log{log_path};
  auto failed = [&log_path](const std::string& what) {
    std::ifstream in(log_path);
    std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return util::Status::Error(
        fmt::format("restarted server: {}{}", what, log.empty() ? "" : "; its log: " + log));
  };
  uint64_t t0 = util::MonoNanos();
  auto child = util::ChildProcess::Start(
      {binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir, "--log-level", "warn",
       "--fsync", fsync ? "window" : "none", "--checkpoint-interval", "0s"},
      log_path);
  if (!child.ok()) return child.status();
  auto line = (*child)->WaitForLine("listening on ", std::chrono::minutes(10));
  ChildRestart r;
  r.listen_us = (util::MonoNanos() - t0) / 1000;
  if (!line.ok()) return failed(line.message());
  std::string address = line->substr(line->find(' ', line->find(' ') + 1) + 1);
  auto c = net::Client::Connect(address, net::Hello{});
  if (!c.ok()) return failed(c.message());
  auto stats = (*c)->Stats();
  if (!stats.ok()) return failed(stats.message());
  for (const auto& [name, v] : *stats) {
    if (name == "entities") r.entities = v;
  }
  c->reset();
  (*child)->Signal(SIGTERM);
  auto status = (*child)->Wait(std::chrono::seconds(30));
  if (!status || !WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
    return failed("it did not stop cleanly on SIGTERM");
  }
  return r;
}

uint64_t ProcessRssBytes() {
  std::string kb = ReadFirstMatch("/proc/self/status", "VmRSS");
  return kb == "unknown" ? 0 : std::strtoull(kb.c_str(), nullptr, 10) * 1024;
}

std::string EmbeddedServer::address() const {
  return fmt::format("127.0.0.1:{}", server_->port());
}

util::Status PopulateAll(const std::string& server, const net::TlsClientOptions& tls,
                         const std::string& schema_name, uint64_t n) {
  auto ctx = TlsClientContext(tls);
  if (!ctx.ok()) return ctx.status();
  net::Hello hello;
  hello.source = "populate-all";
  auto c = net::Client::Connect(server, hello, std::chrono::seconds(5), *ctx);
  if (!c.ok()) return c.status();
  net::Client& client = **c;
  const engine::Schema* schema = client.FindSchema(schema_name);
  if (schema == nullptr) return util::Status::Error("populate: unknown schema " + schema_name);
  Workload w(*schema, n, 0, Mix{100, 0, 0}, 7);
  uint64_t seq = client.welcome().last_applied_seq;
  std::string buf;
  for (uint64_t i = 0; i < n; ++i) {
    net::WriteOp op;
    op.type = net::FrameType::kAssert;
    op.seq = ++seq;
    op.ts = util::WallMicros();
    op.schema_id = schema->id;
    op.id = w.Id(i);
    op.record = w.FullRecord();
    net::EncodeWriteOp(buf, op);
    if (buf.size() >= (1u << 20) || i + 1 == n) {
      if (auto st = client.Send(buf); !st.ok()) return st;
      buf.clear();
    }
  }
  client.set_timeout(std::chrono::seconds(60));
  for (;;) {
    auto f = client.ReadFrame();
    if (!f.ok()) return util::Status::Error("populate: " + f.message());
    if (f->type == static_cast<uint8_t>(net::FrameType::kAck)) {
      uint64_t acked;
      if (net::DecodeAck(f->payload, &acked) && acked >= seq) return util::Status::Ok();
    } else if (f->type == static_cast<uint8_t>(net::FrameType::kError)) {
      net::Error e;
      if (net::DecodeError(f->payload, &e)) return util::Status::Error("populate: " + e.message);
    }
  }
}

Machine DescribeMachine() {
  Machine m;
  m.cpu = ReadFirstMatch("/proc/cpuinfo", "model name");
  m.cores = std::thread::hardware_concurrency();
  m.memory = ReadFirstMatch("/proc/meminfo", "MemTotal");
  utsname u{};
  ::uname(&u);
  m.os = fmt::format("{} {} ({})", u.sysname, u.release, u.machine);
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M UTC", std::gmtime(&t));
  m.date = buf;
  return m;
}

}  // namespace conv::cmd
