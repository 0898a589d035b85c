#pragma once

#include <asio/awaitable.hpp>
#include <asio/buffer.hpp>
#include <asio/error_code.hpp>
#include <asio/ip/tcp.hpp>

#include <sys/types.h>

#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "util/status.h"

// TLS over OpenSSL, below the framing (docs/protocol.md, "Transport"). The server
// side drives an SSL object over a non-blocking asio socket (the SSL reads and
// writes the descriptor itself, so a connection and its TLS state move between I/O
// threads with the descriptor: Server::Adopt). The client side wraps a connected
// descriptor for the blocking and polling loops of net::Client and the load tools.

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

namespace conv::net {

struct SslFree {
  void operator()(SSL* ssl) const;
};
struct SslCtxFree {
  void operator()(SSL_CTX* ctx) const;
};
using SslPtr = std::unique_ptr<SSL, SslFree>;
using SslCtxPtr = std::shared_ptr<SSL_CTX>;

// The reason for the last OpenSSL failure on this thread (its error queue), or
// `fallback` when the queue is empty; clears the queue.
std::string TlsErrorText(std::string_view fallback);

struct TlsServerFiles {
  std::string cert;       // PEM: the certificate, then its chain
  std::string key;        // PEM: its private key
  std::string client_ca;  // PEM: CAs a client certificate must chain to; empty: none asked
};

// The server's TLS configuration: TLS 1.2 or later, the certificate and key of
// `files`, and with a client CA a certificate every client must present (mutual
// TLS). Reload re-reads the files; connections accepted after it use them.
class TlsServerContext {
 public:
  static util::Result<std::unique_ptr<TlsServerContext>> Load(TlsServerFiles files);

  // Builds a new configuration from the same files. On failure the current one stays
  // and the error says which file and why.
  util::Status Reload();
  bool mutual() const { return !files_.client_ca.empty(); }
  const TlsServerFiles& files() const { return files_; }
  // A server-side SSL for the connected descriptor `fd`, with the current files.
  util::Result<SslPtr> NewConnection(int fd);

 private:
  explicit TlsServerContext(TlsServerFiles files) : files_(std::move(files)) {}
  static util::Result<SslCtxPtr> Build(const TlsServerFiles& files);

  const TlsServerFiles files_;
  std::mutex mu_;
  SslCtxPtr ctx_;  // guarded by mu_
};

// Server side, on the socket's I/O thread. The socket must be non-blocking.
// TlsAccept: the handshake. When the first byte the client sent cannot start a TLS
// record (a client speaking the protocol in clear), fails with *plain set and
// nothing read, so that the caller can answer in clear.
asio::awaitable<asio::error_code> TlsAccept(SSL* ssl, asio::ip::tcp::socket& socket, bool* plain,
                                            std::string* why);
asio::awaitable<std::tuple<asio::error_code, size_t>> TlsReadSome(SSL* ssl,
                                                                  asio::ip::tcp::socket& socket,
                                                                  asio::mutable_buffer buf);
// Writes all of `buf`.
asio::awaitable<std::tuple<asio::error_code, size_t>> TlsWrite(SSL* ssl,
                                                               asio::ip::tcp::socket& socket,
                                                               asio::const_buffer buf);
// Sends close_notify if it can at once (never waits); after a failure, nothing.
void TlsClose(SSL* ssl);

struct TlsClientOptions {
  bool enabled = false;
  std::string ca_file;    // empty: the system's CAs
  std::string cert_file;  // a client certificate (mutual TLS), with key_file
  std::string key_file;
};

// A client configuration: TLS 1.2 or later, the server's certificate verified
// against `ca_file` (or the system's CAs). Errors name the flag (--tls-ca, ...).
util::Result<SslCtxPtr> MakeTlsClientContext(const TlsClientOptions& options);

// One client connection's bytes: a connected TCP descriptor, with TLS when it has an
// SSL. Read and Write never block (the descriptor may be blocking or not).
class Transport {
 public:
  Transport() = default;
  explicit Transport(int fd) : fd_(fd) {}
  // The TLS handshake with `host` (checked against the server's certificate) over
  // the connected `fd`, within `timeout_ms`; makes `fd` non-blocking. The Transport
  // does not own `fd`: the caller closes it.
  static util::Result<Transport> Connect(int fd, const SslCtxPtr& ctx, const std::string& host,
                                         int timeout_ms);

  int fd() const { return fd_; }
  bool tls() const { return ssl_ != nullptr; }
  // > 0: bytes read or written; 0 (Read): the peer closed; -1 with errno: EAGAIN when
  // nothing can be done now (poll for Events()), another value when the connection
  // failed (error() tells why for TLS).
  ssize_t Read(void* buf, size_t len);
  ssize_t Write(const void* buf, size_t len);
  // True when Read may return bytes already received (decrypted, or whole records
  // read ahead) without waiting for the descriptor; false after a Read that needs more
  // bytes than a partial record it holds.
  bool Buffered() const;
  // The poll events to wait for before retrying after EAGAIN: `wanted`, or what TLS
  // needs first (a read may need to write and the other way round).
  short Events(short wanted) const;
  const std::string& error() const { return error_; }

 private:
  ssize_t Fail(int ret);
  int fd_ = -1;
  std::shared_ptr<SSL> ssl_;
  short need_ = 0;  // TLS: the event the last call waits for; 0: as asked
  std::string error_;
};

}  // namespace conv::net
