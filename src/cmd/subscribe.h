#pragma once

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "net/tls.h"

namespace conv::cmd {

struct SubscribeOptions {
  std::string schema;
  std::string prefix;
  std::vector<std::string> fields;  // empty: every field
  bool bootstrap = false;
  bool include_prev = false;
  uint64_t resume = 0;       // 0: none
  uint64_t interval_ms = 0;  // 0: every window
  std::string server = "127.0.0.1:3727";
  std::string auth_token_file;
  net::TlsClientOptions tls;
  uint64_t count = 0;  // 0: until stopped
  // After a lost connection, how long the servers of --server are tried again
  // (resuming after the last window printed); 0: exit.
  std::chrono::microseconds reconnect_for{10'000'000};
};

// Exit codes of `convergence subscribe` beyond the shared ones (common.h).
constexpr int kExitSubscribeConnection = 3;  // unreachable, refused HELLO, connection lost
constexpr int kExitSubscribeUnknown = 4;     // unknown schema or field
constexpr int kExitSubscribeRefused = 5;     // the server refused the subscription

CLI::App* RegisterSubscribe(CLI::App& app, SubscribeOptions& options);
int RunSubscribe(const SubscribeOptions& options);

}  // namespace conv::cmd
