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

 private:
  util::Logger log_{util::LogLevel::kWarn};
  std::string dir_;
  engine::SchemaSet schemas_;
  engine::SourceTable sources_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<net::Server> server_;
};

// Asserts entities 0 .. n-1 of `schema_name` once each, from one source, pipelined,
// and waits until the last is acknowledged (durable).
util::Status PopulateAll(const std::string& server, const net::TlsClientOptions& tls,
                         const std::string& schema_name, uint64_t n);

// This machine: CPU, cores, memory, OS, and the time now.
Machine DescribeMachine();

}  // namespace conv::cmd
