#include "support/test_server.h"

#include <doctest/doctest.h>

namespace conv::testing {

TestServer::TestServer(TestServerOptions options) {
  if (!options.schema_text.empty()) {
    auto st = schemas_.AddFromText(options.schema_text, "test");
    REQUIRE_MESSAGE(st.ok(), st.message());
  }
  engine::EngineOptions eo;
  eo.partitions = options.partitions;
  eo.lanes = options.io_threads;
  eo.window = options.window;
  engine_ = std::make_unique<engine::Engine>(eo, schemas_, sources_);
  options.server.listen = "127.0.0.1:0";
  server_ = std::make_unique<net::Server>(*engine_, options.server, log_);
  auto st = server_->Listen();
  REQUIRE_MESSAGE(st.ok(), st.message());
  server_->Start();
}

TestServer::~TestServer() { server_->Shutdown(); }

std::unique_ptr<net::Client> TestServer::Connect(const std::string& source,
                                                 const std::string& token) {
  net::Hello hello;
  hello.source = source;
  hello.auth_token = token;
  auto c = net::Client::Connect(address(), hello);
  REQUIRE_MESSAGE(c.ok(), (c.ok() ? "" : c.message()));
  return std::move(c).value();
}

}  // namespace conv::testing
