#pragma once

// The written part of the manual pages: what the command-line definition cannot
// say (descriptions, exit codes, files, examples), one entry per subcommand. The
// generator (man_page.h) puts it around the options it takes from the CLI11 App.
//
// Markup in the text: `literal` (bold: commands, flags, file names), *placeholder*
// (italic), a paragraph starting with "- " is a bullet item, and "TERM :: text" is a
// tagged paragraph (TERM in the same markup).

#include <string_view>
#include <utility>
#include <vector>

namespace conv::cmd {

struct ManualSection {
  std::string_view title;  // e.g. "SIGNALS"
  std::vector<std::string_view> paragraphs;
};

struct ManualExample {
  std::string_view what;     // one sentence
  std::string_view command;  // shell lines, "\n"-separated
};

struct ManualEntry {
  std::vector<std::string_view> description;  // DESCRIPTION paragraphs
  std::vector<ManualSection> sections;        // after OPTIONS, in this order
  std::vector<std::pair<std::string_view, std::string_view>> exit_status;  // code, meaning
  std::vector<ManualExample> examples;
  std::vector<std::string_view>
      see_also;  // pages beyond convergence's own, e.g. "systemd.service(5)"
};

// The entry of `command` ("" for convergence(1) itself); nullptr when none is written.
const ManualEntry* FindManualEntry(std::string_view command);

}  // namespace conv::cmd
