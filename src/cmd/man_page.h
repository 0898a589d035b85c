#pragma once

// Manual pages in man(7) roff, generated from a CommandSpec (the options) and the
// written ManualEntry of each command (manual.h).

#include <string>
#include <utility>
#include <vector>

#include "cmd/cli_spec.h"

namespace conv::cmd {

struct ManPage {
  std::string file_name;  // "convergence-serve.1"
  std::string text;
};

// convergence(1) and one page per subcommand, `convergence-<name>(1)`. Commands
// without a written entry get a page from the definition alone; their names are
// added to `missing` when given.
std::vector<ManPage> ManPages(const CommandSpec& cli, const std::string& version,
                              std::vector<std::string>* missing = nullptr);

}  // namespace conv::cmd
