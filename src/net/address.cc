#include "net/address.h"

#include <fmt/format.h>

#include <charconv>

namespace conv::net {

util::Status ParseHostPort(const std::string& text, std::string* host, uint16_t* port) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 == text.size()) {
    return util::Status::Error(
        fmt::format("'{}' is not HOST:PORT (for example 127.0.0.1:3727)", text));
  }
  std::string h = text.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (h.empty()) return util::Status::Error(fmt::format("'{}' has no host before the port", text));
  unsigned value = 0;
  const char* b = text.data() + colon + 1;
  const char* e = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(b, e, value);
  if (ec != std::errc() || ptr != e || value > 65535) {
    return util::Status::Error(fmt::format("'{}' has port '{}'; a port is a number from 0 to 65535",
                                           text, std::string_view(b, static_cast<size_t>(e - b))));
  }
  *host = h;
  *port = static_cast<uint16_t>(value);
  return util::Status::Ok();
}

}  // namespace conv::net
