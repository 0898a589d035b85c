#pragma once

// An in-process server on a free loopback port, for end-to-end tests.

#include <memory>
#include <string>

#include "engine/engine.h"
#include "net/client.h"
#include "net/server.h"
#include "util/log.h"

namespace conv::testing {

struct TestServerOptions {
  uint32_t partitions = 2;
  uint32_t io_threads = 2;
  std::chrono::microseconds window{2'000};
  net::ServerOptions server;
  std::string schema_text;  // extra schemas, schema-file syntax
};

class TestServer {
 public:
  explicit TestServer(TestServerOptions options = {});
  ~TestServer();

  std::string address() const { return "127.0.0.1:" + std::to_string(server_->port()); }
  uint16_t port() const { return server_->port(); }
  engine::Engine& engine() { return *engine_; }
  net::Server& server() { return *server_; }
  void Shutdown() { server_->Shutdown(); }

  // Connects and says HELLO as `source` (empty: a reader). Fails the test on error.
  std::unique_ptr<net::Client> Connect(const std::string& source = "",
                                       const std::string& token = "");

 private:
  util::Logger log_{util::LogLevel::kWarn};
  engine::SchemaSet schemas_;
  engine::SourceTable sources_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<net::Server> server_;
};

}  // namespace conv::testing
