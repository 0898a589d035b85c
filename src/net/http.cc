#include "net/http.h"

#include <fmt/format.h>

#include <cctype>

namespace conv::net {

namespace {

bool EqualsNoCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

bool IsTokenChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

}  // namespace

namespace {

// Where the head ends (its last line's end) and the length of the blank line after.
size_t HeadEnd(std::string_view buf, size_t* sep) {
  size_t end = buf.find("\r\n\r\n");
  *sep = 4;
  if (size_t lf = buf.find("\n\n"); lf != std::string_view::npos && lf < end) {
    end = lf;  // tolerated: bare LF line ends
    *sep = 2;
  }
  return end;
}

}  // namespace

size_t HttpHeadLength(std::string_view buf) {
  size_t sep = 0;
  size_t end = HeadEnd(buf, &sep);
  return end == std::string_view::npos ? 0 : end + sep;
}

HttpParse ParseHttpRequest(std::string_view buf, size_t max_head, HttpRequest* out) {
  size_t sep = 0;
  size_t end = HeadEnd(buf, &sep);
  if (end == std::string_view::npos) {
    return buf.size() >= max_head ? HttpParse::kTooLarge : HttpParse::kNeedMore;
  }
  if (end + sep > max_head) return HttpParse::kTooLarge;
  std::string_view head = buf.substr(0, end);
  // A CR that does not end a line, or a NUL, has no place in a head (RFC 9112 §2.2
  // lets a recipient refuse bare CRs); taken in, it would end up in a header value.
  for (size_t i = 0; i < head.size(); ++i) {
    if (head[i] == '\0') return HttpParse::kBad;
    if (head[i] == '\r' && i + 1 < head.size() && head[i + 1] != '\n') return HttpParse::kBad;
  }

  auto next_line = [&head]() {
    size_t nl = head.find('\n');
    std::string_view line = head.substr(0, nl);
    head = nl == std::string_view::npos ? std::string_view() : head.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    return line;
  };

  // Request line: METHOD SP target SP HTTP/1.x
  std::string_view line = next_line();
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos || sp1 == 0) {
    return HttpParse::kBad;
  }
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  for (char c : method) {
    if (!IsTokenChar(c)) return HttpParse::kBad;
  }
  if (target.empty() || target.front() != '/' ||
      target.find_first_of(" \t") != std::string_view::npos) {
    return HttpParse::kBad;
  }
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return HttpParse::kBad;

  HttpRequest req;
  req.method = std::string(method);
  req.path = std::string(target.substr(0, target.find('?')));
  while (!head.empty()) {
    std::string_view h = next_line();
    size_t colon = h.find(':');
    if (colon == std::string_view::npos || colon == 0) return HttpParse::kBad;
    std::string_view name = h.substr(0, colon);
    for (char c : name) {
      if (!IsTokenChar(c)) return HttpParse::kBad;
    }
    std::string_view value = Trim(h.substr(colon + 1));
    if (EqualsNoCase(name, "authorization")) req.authorization = std::string(value);
    std::string lower(name);
    for (char& c : lower)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    req.headers.emplace_back(std::move(lower), std::string(value));
  }
  *out = std::move(req);
  return HttpParse::kOk;
}

std::string_view HttpRequest::Header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (n == name) return v;
  }
  return {};
}

std::string_view HttpReason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 101:
      return "Switching Protocols";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 426:
      return "Upgrade Required";
    case 431:
      return "Request Header Fields Too Large";
    case 503:
      return "Service Unavailable";
    default:
      return "Error";
  }
}

std::string FormatHttpResponse(int status, std::string_view content_type, std::string_view body,
                               bool head_only,
                               const std::vector<std::pair<std::string, std::string>>& headers) {
  std::string out = fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n", status,
      HttpReason(status), content_type, body.size());
  for (const auto& [name, value] : headers)
    out += fmt::format("{}: {}\r\n", name, value);
  out += "\r\n";
  if (!head_only) out.append(body);
  return out;
}

}  // namespace conv::net
