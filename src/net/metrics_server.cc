#include "net/metrics_server.h"

#include "net/listener.h"

#include <fmt/format.h>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ip/address.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include "net/address.h"
#include "net/http.h"
#include "net/metrics.h"

namespace conv::net {

namespace {

constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);

// Compares without an early exit, so the time taken does not tell how much of a
// guessed token was right.
bool SameToken(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  }
  return diff == 0;
}

}  // namespace

struct MetricsServer::Connection {
  explicit Connection(asio::ip::tcp::socket s)
      : socket(std::move(s)), deadline(socket.get_executor()) {}
  void Close() {
    asio::error_code ignored;
    socket.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    socket.close(ignored);
    deadline.cancel();
  }
  asio::ip::tcp::socket socket;
  asio::steady_timer deadline;
  SslPtr tls;  // null: plain HTTP
};

MetricsServer::MetricsServer(MetricsServerOptions options, std::function<std::string()> render,
                             util::Logger& log)
    : options_(std::move(options)), render_(std::move(render)), log_(log) {}

MetricsServer::~MetricsServer() {
  Stop();
}

util::Status MetricsServer::Listen() {
  auto acceptor = OpenListener(
      ctx_, options_.listen, "--metrics-listen",
      !options_.bearer_token.empty() || (options_.tls != nullptr && options_.tls->mutual()),
      fmt::format("refusing to serve metrics on {} without authentication: give "
                  "--auth-token-file FILE (scrapers then send 'Authorization: Bearer TOKEN'), "
                  "or mutual TLS (--tls-client-ca), or listen on 127.0.0.1",
                  options_.listen));
  if (!acceptor.ok()) return acceptor.status();
  acceptor_ = std::move(acceptor).value();
  port_ = acceptor_->local_endpoint().port();
  return util::Status::Ok();
}

void MetricsServer::Start() {
  Accept();
  thread_ = std::thread([this] { ctx_.run(); });
}

void MetricsServer::Stop() {
  if (stopped_ || !thread_.joinable()) return;
  stopped_ = true;
  asio::post(ctx_, [this] {
    asio::error_code ignored;
    acceptor_->close(ignored);
    for (Connection* c : connections_)
      c->Close();
  });
  // run() returns once the accept loop and every connection have ended.
  thread_.join();
}

void MetricsServer::Accept() {
  asio::co_spawn(
      ctx_,
      [this]() -> asio::awaitable<void> {
        for (;;) {
          auto [ec, socket] = co_await acceptor_->async_accept(kNoThrow);
          if (ec) {
            if (ec == asio::error::operation_aborted || !acceptor_->is_open()) co_return;
            log_.Warn("metrics: accept failed: {}", ec.message());
            continue;
          }
          if (connections_.size() >= options_.max_connections) {
            asio::error_code ignored;
            socket.close(ignored);
            continue;
          }
          auto c = std::make_shared<Connection>(std::move(socket));
          if (options_.tls != nullptr) {
            auto ssl = options_.tls->NewConnection(c->socket.native_handle());
            if (!ssl.ok()) {
              log_.Warn("metrics: cannot start TLS on a connection: {}", ssl.message());
              continue;
            }
            c->tls = std::move(ssl).value();
            asio::error_code ignored;
            c->socket.non_blocking(true, ignored);
          }
          Serve(std::move(c));
        }
      },
      asio::detached);
}

void MetricsServer::Serve(std::shared_ptr<Connection> c) {
  connections_.insert(c.get());
  c->deadline.expires_after(options_.request_timeout);
  c->deadline.async_wait([c](asio::error_code ec) {
    if (!ec) c->Close();  // the request head did not arrive in time
  });
  asio::co_spawn(
      ctx_,
      [this, c]() -> asio::awaitable<void> {
        std::string in;
        std::string reply;
        char buf[2048];
        bool ok = true;
        if (c->tls != nullptr) {
          bool plain = false;
          std::string why;
          if (auto ec = co_await TlsAccept(c->tls.get(), c->socket, &plain, &why)) {
            log_.Debug("metrics: TLS handshake failed: {}", why.empty() ? ec.message() : why);
            ok = false;
          }
        }
        while (ok) {
          asio::error_code ec;
          size_t n = 0;
          if (c->tls == nullptr) {
            std::tie(ec, n) = co_await c->socket.async_read_some(asio::buffer(buf), kNoThrow);
          } else {
            std::tie(ec, n) = co_await TlsReadSome(c->tls.get(), c->socket, asio::buffer(buf));
          }
          if (ec) break;
          in.append(buf, n);
          bool complete = false;
          reply = Respond(in, &complete);
          if (complete) break;
        }
        if (!reply.empty()) {
          c->deadline.cancel();
          c->deadline.expires_after(options_.request_timeout);
          c->deadline.async_wait([c](asio::error_code ec) {
            if (!ec) c->Close();  // the client does not read the reply
          });
          if (c->tls == nullptr) {
            co_await asio::async_write(c->socket, asio::buffer(reply), kNoThrow);
          } else if (!std::get<0>(
                         co_await TlsWrite(c->tls.get(), c->socket, asio::buffer(reply)))) {
            TlsClose(c->tls.get());
          }
        }
        c->Close();
        connections_.erase(c.get());
      },
      asio::detached);
}

std::string MetricsServer::Respond(std::string_view bytes, bool* complete) {
  HttpRequest req;
  HttpParse st = ParseHttpRequest(bytes, options_.max_request, &req);
  *complete = st != HttpParse::kNeedMore;
  const std::string_view text = "text/plain; charset=utf-8";
  switch (st) {
    case HttpParse::kNeedMore:
      return {};
    case HttpParse::kBad:
      return FormatHttpResponse(400, text, "malformed request\n");
    case HttpParse::kTooLarge:
      return FormatHttpResponse(431, text, "request head too large\n");
    case HttpParse::kOk:
      break;
  }
  bool head = req.method == "HEAD";
  if (req.method != "GET" && !head) {
    return FormatHttpResponse(405, text, "only GET and HEAD\n", false, {{"Allow", "GET, HEAD"}});
  }
  if (req.path != "/metrics") {
    return FormatHttpResponse(404, text, "not found: the metrics are at /metrics\n", head);
  }
  if (!options_.bearer_token.empty() &&
      !SameToken(req.authorization, "Bearer " + options_.bearer_token)) {
    return FormatHttpResponse(401, text, "missing or wrong bearer token\n", head,
                              {{"WWW-Authenticate", "Bearer realm=\"convergence\""}});
  }
  return FormatHttpResponse(200, kMetricsContentType, render_(), head);
}

}  // namespace conv::net
