#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <unordered_set>

#include "net/tls.h"
#include "util/log.h"
#include "util/status.h"

namespace conv::net {

struct MetricsServerOptions {
  std::string listen = "127.0.0.1:9727";  // port 0: any free port
  // Non-empty: every request must carry `Authorization: Bearer <token>`. Required
  // for an address that is not loopback.
  std::string bearer_token;
  // Non-null: HTTPS with the server's certificate; with a client CA (mutual TLS) an
  // address that is not loopback needs no bearer token.
  std::shared_ptr<TlsServerContext> tls;
  size_t max_request = 8192;                         // bytes of request head; more gets 431
  size_t max_connections = 16;                       // at once; more are closed unanswered
  std::chrono::milliseconds request_timeout{5'000};  // to send the request head
};

// A tiny HTTP/1.1 endpoint on its own thread: GET (or HEAD) /metrics answers
// `render()` as the Prometheus text format; any other path is 404, any other method
// 405. One request per connection (`Connection: close`).
class MetricsServer {
 public:
  // `render` is called on the server's thread, once per scrape; it and `log` must
  // outlive the server.
  MetricsServer(MetricsServerOptions options, std::function<std::string()> render,
                util::Logger& log);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Checks the address (not loopback needs a bearer token or mutual TLS), binds and
  // listens.
  util::Status Listen();
  uint16_t port() const { return port_; }
  // Starts the thread. REQUIRES: Listen() succeeded.
  void Start();
  // Closes the listener and every connection and joins the thread. Idempotent.
  void Stop();

 private:
  struct Connection;
  void Accept();
  void Serve(std::shared_ptr<Connection> c);
  std::string Respond(std::string_view request_bytes, bool* complete);

  const MetricsServerOptions options_;
  std::function<std::string()> render_;
  util::Logger& log_;
  asio::io_context ctx_{1};
  std::unique_ptr<asio::ip::tcp::acceptor> acceptor_;
  std::unordered_set<Connection*> connections_;  // the thread only
  uint16_t port_ = 0;
  std::thread thread_;
  bool stopped_ = false;
};

}  // namespace conv::net
