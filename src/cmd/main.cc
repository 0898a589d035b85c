// The convergence binary: wires the subcommands, each defined in its own file.

#include <CLI/CLI.hpp>

#include <cstdio>

#include "cmd/common.h"
#include "cmd/load.h"
#include "cmd/query.h"
#include "cmd/serve.h"
#include "cmd/wal_dump.h"

int main(int argc, char** argv) {
  CLI::App app{"convergence: a state-convergence server and its tools"};
  app.require_subcommand(1);
  app.set_version_flag("--version", conv::cmd::VersionText());

  conv::cmd::ServeOptions serve;
  conv::cmd::QueryOptions query;
  conv::cmd::LoadOptions load;
  conv::cmd::WalDumpOptions wal_dump;
  CLI::App* serve_cmd = conv::cmd::RegisterServe(app, serve);
  CLI::App* query_cmd = conv::cmd::RegisterQuery(app, query);
  CLI::App* load_cmd = conv::cmd::RegisterLoad(app, load);
  CLI::App* wal_dump_cmd = conv::cmd::RegisterWalDump(app, wal_dump);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : conv::cmd::kExitError;
  }
  if (serve_cmd->parsed()) return conv::cmd::RunServe(serve);
  if (query_cmd->parsed()) return conv::cmd::RunQuery(query);
  if (load_cmd->parsed()) return conv::cmd::RunLoad(load);
  if (wal_dump_cmd->parsed()) return conv::cmd::RunWalDump(wal_dump);
  return conv::cmd::kExitError;
}
