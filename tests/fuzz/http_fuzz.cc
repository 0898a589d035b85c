// The metrics endpoint's HTTP request parser: the input is what a client sent so
// far, parsed with a head limit of 8 KiB (the metrics server's).
//
// Properties: a request that parses has a token method and a path that starts with
// '/' and holds no space, '?', CR, LF or NUL; the result depends only on the head
// (bytes after it, a body, change nothing); a head that is still incomplete within
// the limit is waited for, and one past it is refused as too large.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "check.h"
#include "net/http.h"

namespace conv::net {
namespace {

constexpr size_t kMaxHead = 8192;

void CheckRequest(std::string_view buf) {
  HttpRequest req;
  HttpParse st = ParseHttpRequest(buf, kMaxHead, &req);
  switch (st) {
    case HttpParse::kOk: {
      FUZZ_CHECK(!req.method.empty() && req.method.find_first_of(
                                            std::string_view(" \t\r\n:\0", 6)) == std::string::npos,
                 "method '%s'", req.method.c_str());
      FUZZ_CHECK(!req.path.empty() && req.path[0] == '/' &&
                     req.path.find_first_of(std::string_view(" \t\r\n?\0", 6)) == std::string::npos,
                 "path '%s'", req.path.c_str());
      FUZZ_CHECK(
          req.authorization.find_first_of(std::string_view("\r\n\0", 3)) == std::string::npos,
          "a line end in the authorization value");
      std::string longer(buf);
      longer += "GET /other HTTP/1.1\r\nAuthorization: x\r\n\r\n";
      HttpRequest req2;
      FUZZ_CHECK(ParseHttpRequest(longer, kMaxHead, &req2) == HttpParse::kOk &&
                     req2.method == req.method && req2.path == req.path &&
                     req2.authorization == req.authorization,
                 "bytes after the head changed the request");
      std::string response = FormatHttpResponse(200, "text/plain", req.path, req.method == "HEAD");
      FUZZ_CHECK(response.rfind("HTTP/1.1 200 OK\r\n", 0) == 0, "response status line");
      break;
    }
    case HttpParse::kNeedMore:
      FUZZ_CHECK(buf.size() < kMaxHead, "waiting for more after %zu bytes", buf.size());
      FUZZ_CHECK(buf.find("\r\n\r\n") == std::string_view::npos &&
                     buf.find("\n\n") == std::string_view::npos,
                 "waiting for more after a complete head");
      break;
    case HttpParse::kTooLarge:
      FUZZ_CHECK(buf.size() >= kMaxHead, "too large at %zu bytes", buf.size());
      break;
    case HttpParse::kBad:
      break;
  }
}

}  // namespace
}  // namespace conv::net

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  conv::net::CheckRequest(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
