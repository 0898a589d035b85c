#pragma once

// The little HTTP/1.1 the metrics endpoint needs: parsing a request head and
// formatting a response. Pure functions, no sockets (see metrics_server.h).

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace conv::net {

struct HttpRequest {
  std::string method;
  std::string path;           // the target without its query string
  std::string authorization;  // the Authorization header's value, if any
  // Every header in order: the name in lower case, the value trimmed.
  std::vector<std::pair<std::string, std::string>> headers;
  // The first value of header `name` (lower case); empty when absent.
  std::string_view Header(std::string_view name) const;
};

enum class HttpParse {
  kNeedMore,  // the head is not complete yet
  kOk,
  kBad,       // malformed: answer 400
  kTooLarge,  // no complete head within max_head bytes: answer 431
};

// The length of the request head at the start of `buf`, its blank line included;
// 0 while it is incomplete.
size_t HttpHeadLength(std::string_view buf);

// Parses the request head (request line and headers, up to the blank line) at the
// start of `buf`. A body, if any, is not read.
HttpParse ParseHttpRequest(std::string_view buf, size_t max_head, HttpRequest* out);

// A complete response with Content-Length and `Connection: close`; with `head_only`
// the body is left out (an answer to HEAD).
std::string FormatHttpResponse(
    int status, std::string_view content_type, std::string_view body, bool head_only = false,
    const std::vector<std::pair<std::string, std::string>>& headers = {});

// "OK", "Not Found", ... for the statuses FormatHttpResponse is used with.
std::string_view HttpReason(int status);

}  // namespace conv::net
