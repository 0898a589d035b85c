#pragma once

#include <CLI/CLI.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "net/tls.h"

namespace conv::cmd {

struct BenchOptions {
  std::vector<std::string> scenarios;  // empty: all
  std::chrono::microseconds duration{10'000'000};
  bool quick = false;
  std::string out;
  bool json = false;
  std::string html;           // also write the report as a self-contained HTML page here
  std::string server;         // empty: an embedded server per measurement
  net::TlsClientOptions tls;  // with --server
  std::string fsync = "window";
  std::vector<std::string> scale_entities;  // the scale scenario's sizes; empty: the default
};

CLI::App* RegisterBench(CLI::App& app, BenchOptions& options);
int RunBench(const BenchOptions& options);

}  // namespace conv::cmd
