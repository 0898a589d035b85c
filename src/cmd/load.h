#pragma once

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "net/messages.h"
#include "util/histogram.h"
#include "util/status.h"

namespace conv::cmd {

struct LoadOptions {
  std::string server = "127.0.0.1:3727";
  uint32_t workers = 1;
  uint64_t entities = 10'000;
  std::string schema = "player";
  uint64_t rate = 0;  // total ops/s; 0: unlimited
  std::string mix = "70/20/10";
  unsigned hot_pct = 0;
  std::chrono::microseconds duration{10'000'000};
  bool quiet = false;
  bool json = false;
  uint32_t readers = 0;
  std::string auth_token_file;
  std::string source_prefix = "load";
  // Not a flag: lets `bench` run readers alone (the CLI requires a writer).
  bool allow_no_writers = false;
};

// Exit codes of `convergence load`.
constexpr int kLoadExitConnect = 3;    // server unreachable or refused the handshake
constexpr int kLoadExitSchema = 4;     // the server does not know --schema
constexpr int kLoadExitRunErrors = 5;  // the run saw op errors or unacknowledged ops

struct WorkerReport {
  std::string source;
  uint64_t sent = 0;           // ops sent during the run
  uint64_t acked_in_time = 0;  // ops acknowledged by the end of the duration
  uint64_t acked = 0;          // ops acknowledged by the end of the drain
  uint64_t errors = 0;         // ERROR frames received
  uint64_t reconnects = 0;
  std::string first_error;
};

struct LoadReport {
  double seconds = 0;
  std::vector<WorkerReport> workers;
  util::Histogram query_ns;
  uint64_t queries_found = 0;
  uint64_t reader_errors = 0;
  std::string first_reader_error;
  net::StatList stats_before;
  net::StatList stats_after;
  uint64_t Stat(const net::StatList& s, const std::string& name) const;
  // Server-side coalescing between the two STATS: ops applied per claim change.
  double CoalescingRatio() const;
  uint64_t TotalSent() const;
  uint64_t TotalAcked() const;
  uint64_t TotalErrors() const;
};

// Runs the load described by `options` against options.server. Fails before the
// run starts (with `*exit_code` set) when the server cannot be reached or does not
// know the schema.
util::Result<LoadReport> RunLoadGenerator(const LoadOptions& options, int* exit_code);
// The report as Markdown tables shaped like the performance page.
std::string FormatLoadReport(const LoadOptions& options, const LoadReport& report);
std::string LoadReportJson(const LoadOptions& options, const LoadReport& report);

CLI::App* RegisterLoad(CLI::App& app, LoadOptions& options);
int RunLoad(const LoadOptions& options);

}  // namespace conv::cmd
