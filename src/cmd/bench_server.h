#pragma once

#include <memory>
#include <string>

#include "cmd/report.h"
#include "engine/engine.h"
#include "net/server.h"
#include "util/log.h"
#include "util/status.h"

namespace conv::cmd {

// A server in this process on a free loopback port, with a temporary data dir that
// is removed when it goes away.
class EmbeddedServer {
 public:
  explicit EmbeddedServer(bool fsync);
  ~EmbeddedServer();
  EmbeddedServer(const EmbeddedServer&) = delete;
  EmbeddedServer& operator=(const EmbeddedServer&) = delete;

  util::Status Start();
  std::string address() const;
  engine::Engine& engine() { return *engine_; }
  const std::string& data_dir() const { return dir_; }
  // Stops the server without a final checkpoint or flush (what was acknowledged is
  // durable) and frees its state.
  void Stop();

 private:
  // A new engine and server over `schemas` (and a fresh source table).
  void Build(std::unique_ptr<engine::SchemaSet> schemas);

  bool fsync_;
  util::Logger log_{util::LogLevel::kWarn};
  std::string dir_;
  std::unique_ptr<engine::SchemaSet> schemas_;
  std::unique_ptr<engine::SourceTable> sources_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<net::Server> server_;
};

// A restart as an operator makes one: `binary serve` in a new process on
// `data_dir`, timed from its start until it listens (recovery: the newest
// checkpoint, then the log), then asked for STATS and stopped with SIGTERM.
struct ChildRestart {
  uint64_t listen_us = 0;  // from fork to its "listening on" line
  uint64_t entities = 0;   // STATS `entities` once it listens
};
util::Result<ChildRestart> RestartInChild(const std::string& binary, const std::string& data_dir,
                                          bool fsync);
// The path of the running binary (/proc/self/exe).
util::Result<std::string> ThisBinary();

// Asserts entities 0 .. n-1 of `schema_name` once each, from one source, pipelined,
// and waits until the last is acknowledged (durable).
util::Status PopulateAll(const std::string& server, const net::TlsClientOptions& tls,
                         const std::string& schema_name, uint64_t n);

// This process's resident set (VmRSS), bytes; 0 when /proc cannot tell.
uint64_t ProcessRssBytes();

// This machine: CPU, cores, memory, OS, and the time now.
Machine DescribeMachine();

}  // namespace conv::cmd
