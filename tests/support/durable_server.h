#pragma once

// An in-process server with a write-ahead log in a data dir, built the way `serve`
// builds one: schemas reconciled with the dir, the engine recovered, then a listener
// on a free loopback port. Tests restart it by destroying it and building another on
// the same dir.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "engine/engine.h"
#include "net/client.h"
#include "net/server.h"
#include "util/log.h"
#include "wal/replay.h"

namespace conv::testing {

struct DurableServerOptions {
  std::string data_dir;  // required
  uint32_t partitions = 2;
  uint32_t io_threads = 2;
  std::chrono::microseconds window{2'000};
  uint64_t segment_bytes = 1u << 20;
  std::chrono::microseconds checkpoint_interval{0};  // 0: only Engine::Checkpoint()
  bool fsync = true;
  bool salvage = false;
  bool parallel_recovery = true;  // EngineOptions::parallel_recovery
  std::chrono::microseconds resume_retention{600'000'000};
  size_t max_sources = engine::kDefaultMaxSources;
  std::string schema_text;    // extra schemas, schema-file syntax
  uint16_t port = 0;          // on 127.0.0.1; 0: a free port
  net::ServerOptions server;  // listen is overridden (127.0.0.1:port)
};

class DurableServer {
 public:
  // Fails the test when the schemas do not reconcile, recovery fails or the server
  // cannot listen.
  explicit DurableServer(DurableServerOptions options);
  ~DurableServer();
  DurableServer(const DurableServer&) = delete;
  DurableServer& operator=(const DurableServer&) = delete;

  std::string address() const { return "127.0.0.1:" + std::to_string(server_->port()); }
  engine::Engine& engine() { return *engine_; }
  const engine::SchemaSet& schemas() const { return schemas_; }
  const wal::RecoveryReport& recovery() const { return recovery_; }
  // Graceful stop: flushes the last window; idempotent.
  void Shutdown() { server_->Shutdown(); }

  // Connects and says HELLO as `source` (empty: a reader). Fails the test on error.
  std::unique_ptr<net::Client> Connect(const std::string& source = "");

 private:
  util::Logger log_{util::LogLevel::kWarn};
  engine::SchemaSet schemas_;
  std::unique_ptr<engine::SourceTable> sources_;
  wal::RecoveryReport recovery_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<net::Server> server_;
};

}  // namespace conv::testing
