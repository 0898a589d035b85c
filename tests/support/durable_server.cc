#include "support/durable_server.h"

#include <doctest/doctest.h>

#include <filesystem>

#include "support/test_server.h"

namespace conv::testing {

DurableServer::DurableServer(DurableServerOptions options) {
  REQUIRE(!options.data_dir.empty());
  std::filesystem::create_directories(options.data_dir);  // as `serve` does
  if (!options.schema_text.empty()) {
    auto st = schemas_.AddFromText(options.schema_text, "test");
    REQUIRE_MESSAGE(st.ok(), st.message());
  }
  auto persisted = wal::ReadLatestSchemas(options.data_dir);
  REQUIRE_MESSAGE(persisted.ok(), (persisted.ok() ? "" : persisted.message()));
  auto reconciled = schemas_.Reconcile(*persisted);
  REQUIRE_MESSAGE(reconciled.ok(), reconciled.message());

  engine::EngineOptions eo;
  eo.partitions = options.partitions;
  eo.lanes = options.io_threads;
  eo.window = options.window;
  eo.data_dir = options.data_dir;
  eo.fsync = options.fsync;
  eo.segment_bytes = options.segment_bytes;
  eo.checkpoint_interval = options.checkpoint_interval;
  eo.resume_retention = options.resume_retention;
  eo.parallel_recovery = options.parallel_recovery;
  eo.log = &log_;
  sources_ = std::make_unique<engine::SourceTable>(options.max_sources);
  engine_ = std::make_unique<engine::Engine>(eo, schemas_, *sources_);
  auto recovered = engine_->Recover(options.salvage, &recovery_);
  REQUIRE_MESSAGE(recovered.ok(), recovered.message());

  net::ServerOptions so = options.server;
  so.listen = "127.0.0.1:" + std::to_string(options.port);
  server_ = std::make_unique<net::Server>(*engine_, so, log_);
  auto listening = server_->Listen();
  REQUIRE_MESSAGE(listening.ok(), listening.message());
  server_->Start();
}

DurableServer::~DurableServer() {
  if (server_ != nullptr) server_->Shutdown();
}

std::unique_ptr<net::Client> DurableServer::Connect(const std::string& source) {
  net::Hello hello;
  hello.source = source;
  auto c = net::Client::Connect(address(), hello, kReplyTimeout);
  REQUIRE_MESSAGE(c.ok(), (c.ok() ? "" : c.message()));
  return std::move(c).value();
}

}  // namespace conv::testing
