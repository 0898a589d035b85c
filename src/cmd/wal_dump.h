#pragma once

#include <CLI/CLI.hpp>

#include <string>

namespace conv::cmd {

struct WalDumpOptions {
  std::string path;
  bool json = false;
  bool verify = false;
  bool stats = false;
};

// Exit codes of `wal-dump --verify`.
constexpr int kVerifyClean = 0;
constexpr int kVerifyTornTail = 1;
constexpr int kVerifyCorrupt = 2;

CLI::App* RegisterWalDump(CLI::App& app, WalDumpOptions& options);
int RunWalDump(const WalDumpOptions& options);

}  // namespace conv::cmd
