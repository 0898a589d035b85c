#include "net/address.h"

#include <fmt/format.h>

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

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

bool IsWildcardHost(const std::string& host) {
  in_addr v4{};
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) return v4.s_addr == 0;
  in6_addr v6{};
  if (::inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    static const in6_addr any{};
    return std::memcmp(&v6, &any, sizeof(v6)) == 0;
  }
  return false;
}

util::Result<std::vector<std::string>> ParseAddressList(std::string_view text) {
  std::vector<std::string> out;
  if (text.empty()) return util::Status::Error("the server list is empty; give HOST:PORT[,...]");
  size_t start = 0;
  for (size_t n = 1;; ++n) {
    size_t comma = text.find(',', start);
    std::string entry(
        text.substr(start, comma == std::string_view::npos ? text.npos : comma - start));
    if (entry.empty()) {
      return util::Status::Error(
          fmt::format("'{}': entry {} is empty; give HOST:PORT[,HOST:PORT...]", text, n));
    }
    std::string host;
    uint16_t port;
    if (auto st = ParseHostPort(entry, &host, &port); !st.ok()) {
      return util::Status::Error(fmt::format("'{}': entry {}: {}", text, n, st.message()));
    }
    out.push_back(std::move(entry));
    if (comma == std::string_view::npos) return out;
    start = comma + 1;
  }
}

}  // namespace conv::net
