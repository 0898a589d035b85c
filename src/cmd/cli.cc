#include "cmd/cli.h"

#include "cmd/common.h"

namespace conv::cmd {

Cli::Cli() : app_("convergence: a state-convergence server and its tools", "convergence") {
  app_.require_subcommand(1);
  app_.set_version_flag("--version", VersionText());
  Add(RegisterServe(app_, serve_), [this] { return RunServe(serve_); });
  Add(RegisterQuery(app_, query_), [this] { return RunQuery(query_); });
  Add(RegisterSubscribe(app_, subscribe_), [this] { return RunSubscribe(subscribe_); });
  Add(RegisterLoad(app_, load_), [this] { return RunLoad(load_); });
  Add(RegisterWalDump(app_, wal_dump_), [this] { return RunWalDump(wal_dump_); });
  Add(RegisterBench(app_, bench_), [this] { return RunBench(bench_); });
}

int Cli::Main(int argc, char** argv) {
  try {
    app_.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app_.exit(e) == 0 ? kExitOk : kExitError;
  }
  for (const auto& [sub, run] : commands_) {
    if (sub->parsed()) return run();
  }
  return kExitError;
}

}  // namespace conv::cmd
