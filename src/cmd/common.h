#pragma once

#include <CLI/CLI.hpp>

#include <chrono>
#include <string>
#include <string_view>

#include "engine/schema.h"
#include "net/messages.h"
#include "net/tls.h"
#include "util/status.h"

namespace conv::cmd {

// Exit codes shared by the client tools.
constexpr int kExitOk = 0;
constexpr int kExitNotFound = 1;
constexpr int kExitError = 2;

// Reads an auth token file: it must be a regular file readable by its owner only
// (mode 0600 or stricter); the token is its content without trailing newlines.
util::Result<std::string> ReadTokenFile(const std::string& path);
// The HELLO of a reader (no source name), carrying the token of `token_file` when
// one is given.
util::Result<net::Hello> ReaderHello(const std::string& token_file);
// The names of the schemas a server announced, comma-separated, for messages about
// an unknown one.
std::string KnownSchemas(const net::Welcome& welcome);

// The client TLS flags: --tls, --tls-ca FILE, --tls-cert FILE, --tls-key FILE (any
// of the files turns TLS on).
void AddTlsClientOptions(CLI::App& app, net::TlsClientOptions& options);
// The TLS configuration the flags ask for; null when TLS is off.
util::Result<net::SslCtxPtr> TlsClientContext(const net::TlsClientOptions& options);

// --server HOST:PORT[,HOST:PORT...]: the servers a client command tries in order
// (net::ParseAddressList; a malformed entry is refused naming it). `what` ends the
// help text: what the command does with the list.
CLI::Option* AddServerOption(CLI::App& app, std::string& target, const std::string& what);

// A CLI11 option taking a duration with a unit ("10ms", "1s").
CLI::Option* AddDurationOption(CLI::App& app, const std::string& name,
                               std::chrono::microseconds& target, const std::string& help);

// Appends a record (mask + values) as a JSON object of field name -> value, the way
// `convergence query` prints records (f64 shortest round-trip, NaN and infinities as
// null, bytes as base64); `null` when the record does not fit `schema`.
void AppendRecordJsonOrNull(std::string& out, const engine::Schema& schema,
                            std::string_view record);

// Prints "convergence: <message>" to stderr.
void PrintError(const std::string& message);

struct BuildInfo {
  std::string version;     // the project version, e.g. 0.1.0
  std::string commit;      // short git commit the binary was built from ("unknown")
  std::string build_type;  // CMAKE_BUILD_TYPE
};
BuildInfo GetBuildInfo();

// `convergence 0.1.0 (commit abc1234, Release build)`, for --version.
std::string VersionText();

}  // namespace conv::cmd
