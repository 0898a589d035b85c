#pragma once

// A plain description of a CLI11 command line, taken by walking the App: what the
// completion and man page generators need, and nothing of CLI11 itself.

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace conv::cmd {

// What the value of an option or positional is, for completion.
enum class ValueHint {
  kNone,    // a flag: no value
  kAny,     // free text: nothing to offer
  kFile,    // a file path
  kDir,     // a directory path
  kChoice,  // one of `choices`
  kSchema,  // a schema name: the built-in ones are offered
};

struct OptionSpec {
  std::vector<std::string> long_names;   // without dashes: "listen"
  std::vector<std::string> short_names;  // without the dash: "h"
  std::string positional;                // the positional's name ("schema"); empty for options
  std::string description;
  std::string metavar;       // the value's placeholder in synopses: FILE, N, HOST:PORT, ...
  std::string default_text;  // shown as the default; empty: none
  std::vector<std::string> choices;
  ValueHint hint = ValueHint::kNone;
  bool required = false;
  bool repeatable = false;  // may be given more than once

  bool takes_value() const { return hint != ValueHint::kNone; }
  // "--listen" or "-h" or the positional name.
  std::string PrimaryName() const;
  // Every spelling: "-h", "--help".
  std::vector<std::string> Spellings() const;
};

struct CommandSpec {
  std::string name;  // the program name for the root
  std::string description;
  std::vector<OptionSpec> options;  // named options, in definition order, --help first
  std::vector<OptionSpec> positionals;
  std::vector<CommandSpec> subcommands;  // in definition order
};

// Walks `app` and its subcommands (hidden ones and option groups are skipped).
// `schema_names` are offered wherever a schema name is expected.
CommandSpec DescribeCli(CLI::App& app, const std::vector<std::string>& schema_names);

}  // namespace conv::cmd
