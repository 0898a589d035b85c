#include "cmd/common.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "engine/record.h"
#include "net/address.h"
#include "util/duration.h"

namespace conv::cmd {

util::Result<std::string> ReadTokenFile(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return util::Status::Error(fmt::format("--auth-token-file: cannot stat '{}'", path));
  }
  if (!S_ISREG(st.st_mode)) {
    return util::Status::Error(fmt::format("--auth-token-file: '{}' is not a regular file", path));
  }
  if ((st.st_mode & 077) != 0) {
    return util::Status::Error(fmt::format(
        "--auth-token-file: '{}' has mode {:04o}; it must not be readable by group or others "
        "(chmod 600 {})",
        path, st.st_mode & 07777, path));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return util::Status::Error(fmt::format("--auth-token-file: cannot read '{}'", path));
  std::stringstream buf;
  buf << in.rdbuf();
  std::string token = buf.str();
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r'))
    token.pop_back();
  if (token.empty()) {
    return util::Status::Error(fmt::format("--auth-token-file: '{}' is empty", path));
  }
  return token;
}

void AddTlsClientOptions(CLI::App& app, net::TlsClientOptions& o) {
  app.add_flag("--tls", o.enabled,
               "Connect with TLS, verifying the server's certificate against the system's CAs");
  app.add_option("--tls-ca", o.ca_file,
                 "Connect with TLS; the server's certificate must chain to a CA in this PEM file")
      ->check(CLI::ExistingFile);
  app.add_option("--tls-cert", o.cert_file,
                 "Connect with TLS and present this PEM certificate (mutual TLS; with --tls-key)")
      ->check(CLI::ExistingFile);
  app.add_option("--tls-key", o.key_file, "The PEM private key of --tls-cert")
      ->check(CLI::ExistingFile);
}

util::Result<net::SslCtxPtr> TlsClientContext(const net::TlsClientOptions& o) {
  if (!o.enabled && o.ca_file.empty() && o.cert_file.empty() && o.key_file.empty()) {
    return net::SslCtxPtr();
  }
  return net::MakeTlsClientContext(o);
}

CLI::Option* AddServerOption(CLI::App& app, std::string& target, const std::string& what) {
  auto* opt = app.add_option(
      "--server", target,
      "Server address, HOST:PORT, or several comma-separated (an owner and its standbys, or "
      "replicas): " +
          what);
  opt->check(
      [](const std::string& text) {
        auto list = net::ParseAddressList(text);
        return list.ok() ? std::string() : list.message();
      },
      "HOST:PORT[,...]");
  opt->capture_default_str();
  return opt;
}

CLI::Option* AddDurationOption(CLI::App& app, const std::string& name,
                               std::chrono::microseconds& target, const std::string& help) {
  auto* opt = app.add_option_function<std::string>(
      name,
      [&target, name](const std::string& text) {
        auto d = util::ParseDuration(text);
        if (!d.ok()) throw CLI::ValidationError(name, d.message());
        target = *d;
      },
      help);
  opt->type_name("DURATION");
  opt->default_str(util::FormatDuration(target));
  return opt;
}

void AppendRecordJsonOrNull(std::string& out, const engine::Schema& schema,
                            std::string_view record) {
  engine::RecordView view;
  if (!engine::ParseRecord(schema, record, &view).ok()) {
    out += "null";
    return;
  }
  engine::AppendRecordJson(out, schema, view.mask, view.values);
}

void PrintError(const std::string& message) {
  std::fprintf(stderr, "convergence: %s\n", message.c_str());
}

BuildInfo GetBuildInfo() {
  return {CONV_VERSION, CONV_GIT_COMMIT, CONV_BUILD_TYPE};
}

std::string VersionText() {
  BuildInfo b = GetBuildInfo();
  return fmt::format("convergence {} (commit {}, {} build)", b.version, b.commit, b.build_type);
}

util::Result<net::Hello> ReaderHello(const std::string& token_file) {
  net::Hello hello;  // no source name: a reader
  if (!token_file.empty()) {
    auto token = ReadTokenFile(token_file);
    if (!token.ok()) return token.status();
    hello.auth_token = *token;
  }
  return hello;
}

std::string KnownSchemas(const net::Welcome& welcome) {
  std::string known;
  for (const auto& s : welcome.schemas)
    known += (known.empty() ? "" : ", ") + s.name;
  return known;
}

}  // namespace conv::cmd
