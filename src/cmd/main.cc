// The convergence binary. The subcommands are wired in cli.cc, each defined in its
// own file.

#include "cmd/cli.h"

int main(int argc, char** argv) {
  conv::cmd::Cli cli;
  return cli.Main(argc, argv);
}
