#include "net/tls.h"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>

#include <poll.h>
#include <sys/socket.h>

#include <arpa/inet.h>

#include <fcntl.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include "util/clock.h"

namespace conv::net {

namespace {

constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);
// The first byte of a TLS record carrying a handshake message (the ClientHello).
constexpr unsigned char kTlsHandshakeRecord = 0x16;
constexpr unsigned char kTlsMajorVersion = 0x03;

// OpenSSL writes to the descriptor with write(2), which raises SIGPIPE on a
// connection the peer reset; every write's error is checked instead.
void IgnoreSigpipe() {
  static std::once_flag once;
  std::call_once(once, [] { std::signal(SIGPIPE, SIG_IGN); });
}

void CommonSetup(SSL_CTX* ctx) {
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
  // Read whole records and what follows them in one read(2), not a header then a body.
  SSL_CTX_set_read_ahead(ctx, 1);
}

// Loads `cert_file` (a PEM chain) and its `key_file` into `ctx`; errors name the
// flag (--tls-cert, --tls-key) and the file.
util::Status UseCertificate(SSL_CTX* ctx, const std::string& cert_file,
                            const std::string& key_file) {
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1) {
    return util::Status::Error(fmt::format("--tls-cert: cannot use {}: {}", cert_file,
                                           TlsErrorText("not a PEM certificate")));
  }
  ERR_clear_error();
  if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH ||
        ERR_peek_last_error() == 0) {
      ERR_clear_error();
      return util::Status::Error(fmt::format(
          "--tls-key: {} is not the key of the certificate in {}", key_file, cert_file));
    }
    return util::Status::Error(fmt::format("--tls-key: cannot use {}: {}", key_file,
                                           TlsErrorText("not a PEM private key")));
  }
  return util::Status::Ok();
}

asio::error_code TlsFailure() {
  return asio::error::make_error_code(asio::error::connection_aborted);
}

}  // namespace

void SslFree::operator()(SSL* ssl) const {
  SSL_free(ssl);
}

void SslCtxFree::operator()(SSL_CTX* ctx) const {
  SSL_CTX_free(ctx);
}

std::string TlsErrorText(std::string_view fallback) {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    const char* reason = ERR_reason_error_string(e);
    if (!out.empty()) out += "; ";
    out += reason != nullptr ? reason : fmt::format("OpenSSL error {:#x}", e);
  }
  return out.empty() ? std::string(fallback) : out;
}

util::Result<SslCtxPtr> TlsServerContext::Build(const TlsServerFiles& files) {
  ERR_clear_error();
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()), SslCtxFree());
  if (ctx == nullptr) return util::Status::Error(TlsErrorText("cannot make a TLS context"));
  CommonSetup(ctx.get());
  // No session resumption: clients connect for long, and tickets cost every handshake.
  SSL_CTX_set_num_tickets(ctx.get(), 0);
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  if (auto st = UseCertificate(ctx.get(), files.cert, files.key); !st.ok()) {
    return st;
  }
  if (!files.client_ca.empty()) {
    if (SSL_CTX_load_verify_locations(ctx.get(), files.client_ca.c_str(), nullptr) != 1) {
      return util::Status::Error(fmt::format("--tls-client-ca: cannot use {}: {}", files.client_ca,
                                             TlsErrorText("not a PEM certificate")));
    }
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(files.client_ca.c_str());
    if (names != nullptr) SSL_CTX_set_client_CA_list(ctx.get(), names);
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  return ctx;
}

util::Result<std::unique_ptr<TlsServerContext>> TlsServerContext::Load(TlsServerFiles files) {
  IgnoreSigpipe();
  auto ctx = Build(files);
  if (!ctx.ok()) return ctx.status();
  std::unique_ptr<TlsServerContext> out(new TlsServerContext(std::move(files)));
  out->ctx_ = std::move(ctx).value();
  return out;
}

util::Status TlsServerContext::Reload() {
  auto ctx = Build(files_);
  if (!ctx.ok()) return ctx.status();
  std::lock_guard lock(mu_);
  ctx_ = std::move(ctx).value();  // connections made before keep theirs (SSL_new holds it)
  return util::Status::Ok();
}

util::Result<SslPtr> TlsServerContext::NewConnection(int fd) {
  ERR_clear_error();
  SslPtr ssl;
  {
    std::lock_guard lock(mu_);
    ssl.reset(SSL_new(ctx_.get()));
  }
  if (ssl == nullptr || SSL_set_fd(ssl.get(), fd) != 1) {
    return util::Status::Error(TlsErrorText("cannot start TLS on a connection"));
  }
  SSL_set_accept_state(ssl.get());
  return ssl;
}

namespace {

// What to wait for after an SSL call returned `ret`: read or write readiness, or a
// failure (with the peer's clean close as eof).
enum class Next { kRead, kWrite, kEof, kFailed };

Next Classify(SSL* ssl, int ret) {
  switch (SSL_get_error(ssl, ret)) {
    case SSL_ERROR_WANT_READ:
      return Next::kRead;
    case SSL_ERROR_WANT_WRITE:
      return Next::kWrite;
    case SSL_ERROR_ZERO_RETURN:
      return Next::kEof;
    default:
      // A fatal error: OpenSSL allows no close_notify after it.
      SSL_set_quiet_shutdown(ssl, 1);
      return Next::kFailed;
  }
}

asio::awaitable<asio::error_code> Wait(asio::ip::tcp::socket& socket, Next next) {
  auto [ec] = co_await socket.async_wait(
      next == Next::kRead ? asio::socket_base::wait_read : asio::socket_base::wait_write, kNoThrow);
  co_return ec;
}

}  // namespace

asio::awaitable<asio::error_code> TlsAccept(SSL* ssl, asio::ip::tcp::socket& socket, bool* plain,
                                            std::string* why) {
  *plain = false;
  // A client that speaks the protocol in clear starts with a frame length, never
  // with a TLS handshake record: tell it in clear (the caller does) rather than with
  // an alert it cannot read.
  for (;;) {
    // A TLS record starts with its type (handshake) and the major version 3; a frame
    // whose length is that type's value has a zero byte next.
    unsigned char head[2] = {0, 0};
    ssize_t n = ::recv(socket.native_handle(), head, sizeof(head), MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) {
      if (head[0] != kTlsHandshakeRecord || (n == 2 && head[1] != kTlsMajorVersion)) {
        *plain = true;
        *why = "the client did not start a TLS handshake";
        co_return TlsFailure();
      }
      break;
    }
    if (n == 0) co_return asio::error::make_error_code(asio::error::eof);
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      co_return asio::error_code(errno, asio::system_category());
    }
    if (auto ec = co_await Wait(socket, Next::kRead)) co_return ec;
  }
  for (;;) {
    ERR_clear_error();
    int ret = SSL_do_handshake(ssl);
    if (ret == 1) co_return asio::error_code();
    Next next = Classify(ssl, ret);
    if (next == Next::kEof || next == Next::kFailed) {
      *why = TlsErrorText("the client closed the connection during the TLS handshake");
      co_return TlsFailure();
    }
    if (auto ec = co_await Wait(socket, next)) co_return ec;
  }
}

asio::awaitable<std::tuple<asio::error_code, size_t>> TlsReadSome(SSL* ssl,
                                                                  asio::ip::tcp::socket& socket,
                                                                  asio::mutable_buffer buf) {
  for (;;) {
    ERR_clear_error();
    size_t n = 0;
    int ret = SSL_read_ex(ssl, buf.data(), buf.size(), &n);
    if (ret == 1) co_return std::tuple{asio::error_code(), n};
    Next next = Classify(ssl, ret);
    if (next == Next::kEof) {
      co_return std::tuple{asio::error::make_error_code(asio::error::eof), size_t{0}};
    }
    if (next == Next::kFailed) co_return std::tuple{TlsFailure(), size_t{0}};
    if (auto ec = co_await Wait(socket, next)) co_return std::tuple{ec, size_t{0}};
  }
}

asio::awaitable<std::tuple<asio::error_code, size_t>> TlsWrite(SSL* ssl,
                                                               asio::ip::tcp::socket& socket,
                                                               asio::const_buffer buf) {
  // Without partial writes, a write that waits is retried with the same arguments
  // (as OpenSSL requires) until all of `buf` went out.
  for (;;) {
    ERR_clear_error();
    size_t n = 0;
    int ret = SSL_write_ex(ssl, buf.data(), buf.size(), &n);
    if (ret == 1) co_return std::tuple{asio::error_code(), n};
    Next next = Classify(ssl, ret);
    if (next == Next::kEof || next == Next::kFailed) {
      co_return std::tuple{TlsFailure(), size_t{0}};
    }
    if (auto ec = co_await Wait(socket, next)) co_return std::tuple{ec, size_t{0}};
  }
}

void TlsClose(SSL* ssl) {
  if (!SSL_is_init_finished(ssl)) return;
  ERR_clear_error();
  SSL_shutdown(ssl);
  ERR_clear_error();
}

util::Result<SslCtxPtr> MakeTlsClientContext(const TlsClientOptions& o) {
  IgnoreSigpipe();
  ERR_clear_error();
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()), SslCtxFree());
  if (ctx == nullptr) return util::Status::Error(TlsErrorText("cannot make a TLS context"));
  CommonSetup(ctx.get());
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  if (o.ca_file.empty()) {
    if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1) {
      return util::Status::Error(
          fmt::format("--tls: cannot load the system's CAs: {}", TlsErrorText("unknown reason")));
    }
  } else if (SSL_CTX_load_verify_locations(ctx.get(), o.ca_file.c_str(), nullptr) != 1) {
    return util::Status::Error(fmt::format("--tls-ca: cannot use {}: {}", o.ca_file,
                                           TlsErrorText("not a PEM certificate")));
  }
  if (o.cert_file.empty() != o.key_file.empty()) {
    return util::Status::Error(o.cert_file.empty() ? "--tls-key needs --tls-cert"
                                                   : "--tls-cert needs --tls-key");
  }
  if (!o.cert_file.empty()) {
    if (auto st = UseCertificate(ctx.get(), o.cert_file, o.key_file); !st.ok()) {
      return st;
    }
  }
  return ctx;
}

util::Result<Transport> Transport::Connect(int fd, const SslCtxPtr& ctx, const std::string& host,
                                           int timeout_ms) {
  ERR_clear_error();
  Transport t(fd);
  t.ssl_.reset(SSL_new(ctx.get()), SSL_free);
  if (t.ssl_ == nullptr || SSL_set_fd(t.ssl_.get(), fd) != 1) {
    return util::Status::Error(TlsErrorText("cannot start TLS"));
  }
  SSL* ssl = t.ssl_.get();
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL, 0) | O_NONBLOCK);
  in6_addr ip6;
  in_addr ip4;
  bool is_ip = ::inet_pton(AF_INET, host.c_str(), &ip4) == 1 ||
               ::inet_pton(AF_INET6, host.c_str(), &ip6) == 1;
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  if (is_ip) {
    X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl, host.c_str());
    SSL_set1_host(ssl, host.c_str());
  }
  SSL_set_connect_state(ssl);
  const uint64_t deadline = util::MonoNanos() + uint64_t(timeout_ms) * 1'000'000;
  for (;;) {
    ERR_clear_error();
    int ret = SSL_do_handshake(ssl);
    if (ret == 1) return t;
    int err = SSL_get_error(ssl, ret);
    short events = err == SSL_ERROR_WANT_READ ? POLLIN : err == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
    if (events == 0) {
      long verify = SSL_get_verify_result(ssl);
      std::string why = verify != X509_V_OK ? fmt::format("the server's certificate: {}",
                                                          X509_verify_cert_error_string(verify))
                                            : TlsErrorText("");
      if (why.empty()) {
        why = err == SSL_ERROR_SYSCALL && errno != 0
                  ? std::string(std::strerror(errno))
                  : "the server closed the connection (is it serving TLS? does it want a client "
                    "certificate, --tls-cert?)";
      }
      return util::Status::Error(fmt::format("TLS handshake failed: {}", why));
    }
    uint64_t now = util::MonoNanos();
    if (now >= deadline) {
      return util::Status::Error(
          fmt::format("TLS handshake failed: no answer within {} ms", timeout_ms));
    }
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, static_cast<int>((deadline - now + 999'999) / 1'000'000));
    if (rc < 0 && errno != EINTR) {
      return util::Status::Error(
          fmt::format("TLS handshake failed: poll: {}", std::strerror(errno)));
    }
  }
}

ssize_t Transport::Fail(int ret) {
  need_ = 0;
  switch (SSL_get_error(ssl_.get(), ret)) {
    case SSL_ERROR_WANT_READ:
      need_ = POLLIN;
      errno = EAGAIN;
      return -1;
    case SSL_ERROR_WANT_WRITE:
      need_ = POLLOUT;
      errno = EAGAIN;
      return -1;
    case SSL_ERROR_ZERO_RETURN:
      return 0;
    case SSL_ERROR_SYSCALL:
      if (errno == 0) return 0;  // closed without close_notify
      error_ = std::strerror(errno);
      SSL_set_quiet_shutdown(ssl_.get(), 1);
      return -1;
    default:
      error_ = TlsErrorText("TLS failure");
      SSL_set_quiet_shutdown(ssl_.get(), 1);
      errno = EPROTO;
      return -1;
  }
}

ssize_t Transport::Read(void* buf, size_t len) {
  if (ssl_ == nullptr) return ::recv(fd_, buf, len, MSG_DONTWAIT);
  ERR_clear_error();
  errno = 0;
  size_t n = 0;
  if (SSL_read_ex(ssl_.get(), buf, len, &n) == 1) {
    need_ = 0;
    return static_cast<ssize_t>(n);
  }
  return Fail(0);
}

ssize_t Transport::Write(const void* buf, size_t len) {
  if (ssl_ == nullptr) return ::send(fd_, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
  ERR_clear_error();
  errno = 0;
  size_t n = 0;
  if (SSL_write_ex(ssl_.get(), buf, len, &n) == 1) {
    need_ = 0;
    return static_cast<ssize_t>(n);
  }
  ssize_t r = Fail(0);
  if (r == 0) {
    errno = EPIPE;
    return -1;
  }
  return r;
}

bool Transport::Buffered() const {
  // After a read that wanted more, what is buffered is part of a record: wait.
  return ssl_ != nullptr && need_ != POLLIN && SSL_has_pending(ssl_.get()) == 1;
}

short Transport::Events(short wanted) const {
  return need_ != 0 ? need_ : wanted;
}

}  // namespace conv::net
