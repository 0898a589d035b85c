#include "support/http_client.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace conv::testing {

std::string HttpReply::Header(std::string_view name) const {
  size_t pos = head.find("\r\n");
  while (pos != std::string::npos && pos + 2 < head.size()) {
    size_t start = pos + 2;
    size_t end = head.find("\r\n", start);
    std::string_view line(head.data() + start,
                          (end == std::string::npos ? head.size() : end) - start);
    size_t colon = line.find(':');
    if (colon == name.size()) {
      bool same = true;
      for (size_t i = 0; i < colon; ++i) {
        same = same && std::tolower(static_cast<unsigned char>(line[i])) ==
                           std::tolower(static_cast<unsigned char>(name[i]));
      }
      if (same) {
        std::string_view v = line.substr(colon + 1);
        while (!v.empty() && v.front() == ' ')
          v.remove_prefix(1);
        return std::string(v);
      }
    }
    pos = end;
  }
  return "";
}

util::Result<HttpReply> HttpExchange(uint16_t port, std::string_view raw_request,
                                     std::chrono::milliseconds timeout) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return util::Status::Error(fmt::format("socket: {}", std::strerror(errno)));
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    ::close(fd);
    return util::Status::Error(fmt::format("connect to port {}: {}", port, std::strerror(err)));
  }
  size_t sent = 0;
  while (sent < raw_request.size()) {
    ssize_t n = ::send(fd, raw_request.data() + sent, raw_request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the server may answer (and close) before reading it all
    sent += static_cast<size_t>(n);
  }
  std::string in;
  char buf[8192];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      ::close(fd);
      return util::Status::Error("timed out waiting for the server to close");
    }
    if (n <= 0) break;  // closed (or reset after the reply)
    in.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  size_t end = in.find("\r\n\r\n");
  if (end == std::string::npos || !in.starts_with("HTTP/1.1 ") || in.size() < 12) {
    return util::Status::Error(fmt::format("not an HTTP response: '{}'", in.substr(0, 200)));
  }
  HttpReply r;
  r.status = std::atoi(in.c_str() + 9);
  r.head = in.substr(0, end);
  r.body = in.substr(end + 4);
  return r;
}

util::Result<HttpReply> HttpGet(uint16_t port, std::string_view path, std::string_view token) {
  std::string req = fmt::format("GET {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n", path, port);
  if (!token.empty()) req += fmt::format("Authorization: Bearer {}\r\n", token);
  req += "\r\n";
  return HttpExchange(port, req);
}

}  // namespace conv::testing
