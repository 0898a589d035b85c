#pragma once

// A blocking HTTP/1.1 exchange over loopback, for tests that scrape /metrics.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "util/status.h"

namespace conv::testing {

struct HttpReply {
  int status = 0;
  std::string head;  // status line and headers
  std::string body;
  // The value of header `name` (case-insensitive), or empty.
  std::string Header(std::string_view name) const;
};

// Sends `raw_request` as is to 127.0.0.1:`port` and reads until the server closes.
util::Result<HttpReply> HttpExchange(uint16_t port, std::string_view raw_request,
                                     std::chrono::milliseconds timeout = std::chrono::seconds(10));
// GET `path`, with `Authorization: Bearer <token>` when `token` is not empty.
util::Result<HttpReply> HttpGet(uint16_t port, std::string_view path, std::string_view token = "");

}  // namespace conv::testing
