#include "net/listener.h"

#include <fmt/format.h>
#include <asio/ip/address.hpp>

#include "net/address.h"

namespace conv::net {

util::Result<std::unique_ptr<asio::ip::tcp::acceptor>> OpenListener(asio::io_context& ctx,
                                                                    const std::string& listen,
                                                                    std::string_view flag,
                                                                    bool authenticated,
                                                                    std::string_view refusal) {
  std::string host;
  uint16_t port;
  if (auto st = ParseHostPort(listen, &host, &port); !st.ok()) {
    return util::Status::Error(fmt::format("{}: {}", flag, st.message()));
  }
  asio::error_code ec;
  asio::ip::address addr = asio::ip::make_address(host == "localhost" ? "127.0.0.1" : host, ec);
  if (ec) {
    return util::Status::Error(fmt::format(
        "{}: '{}' is not an IP address (use 127.0.0.1, ::1, 0.0.0.0 or an interface address)", flag,
        host));
  }
  if (!addr.is_loopback() && !authenticated) return util::Status::Error(std::string(refusal));
  auto acceptor = std::make_unique<asio::ip::tcp::acceptor>(ctx);
  asio::ip::tcp::endpoint ep(addr, port);
  acceptor->open(ep.protocol(), ec);
  if (!ec) acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor->bind(ep, ec);
  if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return util::Status::Error(
        fmt::format("{}: cannot listen on {}: {}", flag, listen, ec.message()));
  }
  return acceptor;
}

}  // namespace conv::net
