#pragma once

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdint>
#include <string>

#include "util/status.h"

#include "net/tls.h"

namespace conv::cmd {

struct LoadOptions {
  std::string server = "127.0.0.1:3727";
  uint32_t workers = 1;
  // Threads the writers share (each polls its writers' connections); 0: one per
  // writer.
  uint32_t writer_threads = 0;
  uint64_t entities = 10'000;
  std::string schema = "player";
  uint64_t rate = 0;  // total ops/s; 0: unlimited
  std::string mix = "70/20/10";
  unsigned hot_pct = 0;
  std::chrono::microseconds duration{10'000'000};
  bool quiet = false;
  bool json = false;
  std::string html;  // also write the report as a self-contained HTML page here
  uint32_t readers = 0;
  uint32_t subscribers = 0;
  bool bootstrap = false;
  bool include_prev = false;
  std::string auth_token_file;
  net::TlsClientOptions tls;
  std::string source_prefix = "load";
};

// Exit codes of `convergence load`.
constexpr int kLoadExitConnect = 3;    // server unreachable or refused the handshake
constexpr int kLoadExitSchema = 4;     // the server does not know --schema
constexpr int kLoadExitRunErrors = 5;  // the run saw op errors or unacknowledged ops

// The checks on a combination of flags that CLI11 cannot express.
util::Status ValidateLoadOptions(const LoadOptions& options);

CLI::App* RegisterLoad(CLI::App& app, LoadOptions& options);
int RunLoad(const LoadOptions& options);

}  // namespace conv::cmd
