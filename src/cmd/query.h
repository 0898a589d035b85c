#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "net/tls.h"

namespace conv::cmd {

struct QueryOptions {
  std::string schema;
  std::string id;
  bool claims = false;
  std::string server = "127.0.0.1:3727";
  std::string auth_token_file;
  net::TlsClientOptions tls;
};

CLI::App* RegisterQuery(CLI::App& app, QueryOptions& options);
int RunQuery(const QueryOptions& options);

}  // namespace conv::cmd
