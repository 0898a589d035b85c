#include "support/nats_cluster.h"

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

namespace conv::testing {

namespace {

std::string NatsServerBinary() {
  for (const char* p :
       {"/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  return "";
}

}  // namespace

NatsCluster::NatsCluster(const std::string& dir, int nodes) {
  const std::string binary = NatsServerBinary();
  REQUIRE_MESSAGE(!binary.empty(), "nats-server is not installed (scripts/setup.sh installs it)");
  nodes_.resize(static_cast<size_t>(nodes));
  for (int i = 0; i < nodes; ++i) {
    Node& n = nodes_[static_cast<size_t>(i)];
    n.name = fmt::format("n{}", i);
    n.client_port = ClosedPort();
    n.route_port = ClosedPort();
    n.conf = fmt::format("{}/{}.conf", dir, n.name);
    n.log = fmt::format("{}/{}.log", dir, n.name);
  }
  std::string routes;
  for (const Node& n : nodes_)
    routes += fmt::format("{}nats-route://127.0.0.1:{}", routes.empty() ? "" : ", ", n.route_port);
  for (Node& n : nodes_) {
    std::ofstream f(n.conf);
    f << fmt::format(
        "server_name: {0}\nlisten: 127.0.0.1:{1}\n"
        "jetstream {{ store_dir: \"{2}/store-{0}\", max_memory_store: 64MB, max_file_store: 1GB "
        "}}\n",
        n.name, n.client_port, dir);
    if (nodes > 1) {
      f << fmt::format("cluster {{ name: conv-test, listen: 127.0.0.1:{}, routes: [{}] }}\n",
                       n.route_port, routes);
    }
  }
  for (Node& n : nodes_) {
    auto child = ChildProcess::Start({binary, "-c", n.conf}, n.log);
    REQUIRE_MESSAGE(child.ok(), (child.ok() ? "" : child.message()));
    n.process = std::move(child).value();
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    // Every node ready and a metadata leader elected (a single server is its own);
    // JetStreamLog::Open tries again while the stream's replicas cannot be placed yet.
    bool ready = true;
    bool leader = nodes == 1;
    int late = 0;  // the node to show when it does not come up: the first not ready
    for (int i = 0; i < size(); ++i) {
      std::string log = ReadFileOrEmpty(nodes_[i].log);
      bool up = log.find("Server is ready") != std::string::npos;
      if (!up && ready) late = i;
      ready = ready && up;
      leader = leader || log.find("metadata leader") != std::string::npos;
    }
    if (ready && leader) break;
    REQUIRE_MESSAGE(std::chrono::steady_clock::now() < deadline,
                    "the NATS cluster did not come up within 30 s; node ", late, " log:\n",
                    Log(late));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

NatsCluster::~NatsCluster() {
  for (Node& n : nodes_) {
    if (n.process != nullptr && n.process->running()) {
      n.process->Signal(SIGCONT);  // a paused node still ends on SIGTERM after this
      n.process->Signal(SIGTERM);
      if (!n.process->Wait(std::chrono::seconds(5)).has_value()) n.process->Signal(SIGKILL);
    }
  }
}

std::string NatsCluster::url(int node) const {
  return fmt::format("nats://127.0.0.1:{}", nodes_[static_cast<size_t>(node)].client_port);
}

repl::ReplicationOptions NatsCluster::Options(const std::string& cluster_name) const {
  repl::ReplicationOptions o;
  o.urls = urls();
  o.cluster_name = cluster_name;
  return o;
}

std::string NatsCluster::urls() const {
  std::string out;
  for (int i = 0; i < size(); ++i)
    out += (i == 0 ? "" : ",") + url(i);
  return out;
}

pid_t NatsCluster::pid(int node) const {
  return nodes_[static_cast<size_t>(node)].process->pid();
}

void NatsCluster::Kill(int node) {
  auto& p = nodes_[static_cast<size_t>(node)].process;
  p->Signal(SIGKILL);
  REQUIRE(p->Wait(std::chrono::seconds(10)).has_value());
}

namespace {

// Whether every thread of `pid` is stopped (state T in /proc/PID/task/*/stat): a
// thread running when SIGSTOP came may go on until its next trip into the kernel.
bool AllThreadsStopped(pid_t pid) {
  std::error_code ec;
  for (const auto& t : std::filesystem::directory_iterator(fmt::format("/proc/{}/task", pid), ec)) {
    std::string stat = ReadFileOrEmpty(t.path().string() + "/stat");
    size_t paren = stat.rfind(')');
    if (paren == std::string::npos || paren + 2 >= stat.size()) return false;
    char state = stat[paren + 2];
    if (state != 'T' && state != 't') return false;
  }
  return !ec;
}

}  // namespace

void NatsCluster::PauseAll() {
  for (Node& n : nodes_)
    if (n.process->running()) n.process->Signal(SIGSTOP);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (Node& n : nodes_) {
    while (n.process->running() && !AllThreadsStopped(n.process->pid())) {
      REQUIRE_MESSAGE(std::chrono::steady_clock::now() < deadline, "nats-server ", n.name,
                      " did not stop on SIGSTOP within 5 s");
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
}

void NatsCluster::ResumeAll() {
  for (Node& n : nodes_)
    if (n.process->running()) n.process->Signal(SIGCONT);
}

std::string NatsCluster::Log(int node) const {
  return ReadFileOrEmpty(nodes_[static_cast<size_t>(node)].log);
}

}  // namespace conv::testing
