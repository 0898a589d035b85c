#pragma once

// A NATS JetStream cluster for the replication tests: `nats-server` children on
// loopback, free ports, each with its own store dir under a directory of the
// test's, stopped by PID (the ChildProcess destructor kills what is left).

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "repl/jetstream.h"
#include "support/process.h"

namespace conv::testing {

class NatsCluster {
 public:
  // Starts `nodes` servers in one cluster under `dir` and waits (at most 30 s) until
  // JetStream has a metadata leader; fails the test otherwise.
  explicit NatsCluster(const std::string& dir, int nodes = 3);
  ~NatsCluster();
  NatsCluster(const NatsCluster&) = delete;
  NatsCluster& operator=(const NatsCluster&) = delete;

  // Every node's client URL, comma-separated (what --replicate takes).
  std::string urls() const;
  std::string url(int node) const;
  // Options for a cluster name replicated here: every node's URL, the default
  // confirm timeout (a cluster just started, on a loaded machine, may take seconds
  // to be ready for a new stream or bucket).
  repl::ReplicationOptions Options(const std::string& cluster_name) const;
  int size() const { return static_cast<int>(nodes_.size()); }
  pid_t pid(int node) const;
  // SIGKILL, and reap.
  void Kill(int node);
  // SIGSTOP or SIGCONT every node.
  void PauseAll();
  void ResumeAll();
  std::string Log(int node) const;

 private:
  struct Node {
    std::string name;
    uint16_t client_port = 0;
    uint16_t route_port = 0;
    std::string conf;
    std::string log;
    std::unique_ptr<ChildProcess> process;
  };
  std::vector<Node> nodes_;
};

}  // namespace conv::testing
