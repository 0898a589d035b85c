#pragma once

// The whole `convergence` command line in one place: every subcommand registered on
// one CLI11 App and bound to its Run function. main() parses with it; the docs
// generator (gen_docs.cc) walks the same App to write shell completions and man
// pages, so both always describe the binary as built.

#include <CLI/CLI.hpp>

#include <functional>
#include <utility>
#include <vector>

#include "cmd/bench.h"
#include "cmd/load.h"
#include "cmd/query.h"
#include "cmd/serve.h"
#include "cmd/subscribe.h"
#include "cmd/wal_dump.h"

namespace conv::cmd {

class Cli {
 public:
  // Registers every subcommand. To add one: an Options member, then one Add() line
  // in the constructor (cli.cc), and a manual entry in manual.cc.
  Cli();
  Cli(const Cli&) = delete;
  Cli& operator=(const Cli&) = delete;

  // Parses argv and runs the chosen subcommand; returns the process exit code.
  int Main(int argc, char** argv);

  CLI::App& app() { return app_; }

 private:
  void Add(CLI::App* sub, std::function<int()> run) { commands_.emplace_back(sub, std::move(run)); }

  CLI::App app_;
  ServeOptions serve_;
  QueryOptions query_;
  SubscribeOptions subscribe_;
  LoadOptions load_;
  WalDumpOptions wal_dump_;
  BenchOptions bench_;
  std::vector<std::pair<CLI::App*, std::function<int()>>> commands_;
};

}  // namespace conv::cmd
