#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include <memory>
#include <string>
#include <string_view>

#include "util/status.h"

namespace conv::net {

// Opens an acceptor listening on `listen` (HOST:PORT, an IP address or localhost;
// port 0 picks a free port). A non-loopback address is refused unless
// `authenticated`, with `refusal` as the reason. Messages name `flag` and the
// address, and the system's reason when binding fails.
util::Result<std::unique_ptr<asio::ip::tcp::acceptor>> OpenListener(asio::io_context& ctx,
                                                                    const std::string& listen,
                                                                    std::string_view flag,
                                                                    bool authenticated,
                                                                    std::string_view refusal);

}  // namespace conv::net
