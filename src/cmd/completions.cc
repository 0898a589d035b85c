#include "cmd/completions.h"

#include <fmt/format.h>

#include <string_view>
#include <vector>

namespace conv::cmd {

namespace {

// `text` as comment lines starting with `prefix`.
std::string Comment(std::string_view text, std::string_view prefix) {
  std::string out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t nl = text.find('\n', start);
    std::string_view line = text.substr(start, nl == std::string_view::npos ? nl : nl - start);
    out += fmt::format("{}{}\n", prefix, line);
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  return out;
}

std::string Join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) out += sep;
    out += p;
  }
  return out;
}

// A POSIX shell single-quoted word (bash, zsh).
std::string ShQuote(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

// A fish single-quoted word: only \ and ' are special inside.
std::string FishQuote(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\\' || c == '\'') out += '\\';
    out += c;
  }
  return out + "'";
}

// A shell function name for a subcommand: "wal-dump" -> "wal_dump".
std::string Ident(std::string_view name) {
  std::string out(name);
  for (char& c : out) {
    if (c == '-') c = '_';
  }
  return out;
}

std::vector<std::string> AllSpellings(const std::vector<OptionSpec>& options) {
  std::vector<std::string> out;
  for (const auto& o : options) {
    for (auto& s : o.Spellings())
      out.push_back(std::move(s));
  }
  return out;
}

std::vector<std::string> ValueOptionSpellings(const std::vector<OptionSpec>& options) {
  std::vector<std::string> out;
  for (const auto& o : options) {
    if (!o.takes_value()) continue;
    for (auto& s : o.Spellings())
      out.push_back(std::move(s));
  }
  return out;
}

std::vector<std::string> SubcommandNames(const CommandSpec& cli) {
  std::vector<std::string> out;
  for (const auto& s : cli.subcommands)
    out.push_back(s.name);
  return out;
}

// ---- bash -------------------------------------------------------------------

// The bash statement that fills COMPREPLY with the values of `o`; empty when there
// is nothing to offer.
std::string BashValues(const OptionSpec& o) {
  switch (o.hint) {
    case ValueHint::kFile:
      return "_convergence_files";
    case ValueHint::kDir:
      return "_convergence_dirs";
    case ValueHint::kChoice:
    case ValueHint::kSchema:
      return "_convergence_words " + ShQuote(Join(o.choices, " "));
    case ValueHint::kNone:
    case ValueHint::kAny:
      return "";
  }
  return "";
}

std::string BashCommand(const CommandSpec& c, std::string_view fn) {
  std::string out = fmt::format("{}() {{\n", fn);
  // The value of an option.
  std::string cases;
  std::vector<std::string> silent;  // options whose value has nothing to offer
  for (const auto& o : c.options) {
    if (!o.takes_value()) continue;
    std::string action = BashValues(o);
    std::string pattern = Join(o.Spellings(), "|");
    if (action.empty()) {
      silent.push_back(pattern);
    } else {
      cases += fmt::format("    {}) {}; return 0 ;;\n", pattern, action);
    }
  }
  if (!silent.empty()) cases += fmt::format("    {}) return 0 ;;\n", Join(silent, "|"));
  if (!cases.empty()) out += "  case $prev in\n" + cases + "  esac\n";
  out += fmt::format("  if [[ $cur == -* ]]; then\n    _convergence_words {}\n    return 0\n  fi\n",
                     ShQuote(Join(AllSpellings(c.options), " ")));
  if (!c.positionals.empty()) {
    out += fmt::format("  case $(_convergence_positional {}) in\n",
                       Join(ValueOptionSpellings(c.options), " "));
    for (size_t i = 0; i < c.positionals.size(); ++i) {
      std::string action = BashValues(c.positionals[i]);
      out += fmt::format("    {}) {}return 0 ;;\n", i + 1, action.empty() ? "" : action + "; ");
    }
    out += "  esac\n";
  }
  out += fmt::format("  _convergence_words {}\n}}\n", ShQuote(Join(AllSpellings(c.options), " ")));
  return out;
}

// ---- zsh --------------------------------------------------------------------

// Escapes the explanation inside an _arguments spec's [...].
std::string ZshExplanation(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '[' || c == ']' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::string ZshMessage(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == ':' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::string ZshAction(const OptionSpec& o) {
  switch (o.hint) {
    case ValueHint::kFile:
      return "_files";
    case ValueHint::kDir:
      return "_files -/";
    case ValueHint::kChoice:
    case ValueHint::kSchema:
      return "(" + Join(o.choices, " ") + ")";
    case ValueHint::kNone:
    case ValueHint::kAny:
      return " ";
  }
  return " ";
}

// One _arguments spec per option, as shell words.
std::vector<std::string> ZshSpecs(const CommandSpec& c) {
  std::vector<std::string> specs;
  for (const auto& o : c.options) {
    std::vector<std::string> names = o.Spellings();
    std::string tail = "[" + ZshExplanation(o.description) + "]";
    if (o.takes_value()) tail += ":" + ZshMessage(o.metavar) + ":" + ZshAction(o);
    bool exclusive = o.long_names.size() + o.short_names.size() > 1 && !o.repeatable;
    std::string prefix = exclusive ? "(" + Join(names, " ") + ")" : "";
    if (o.repeatable) prefix = "*";
    for (const auto& n : names) {
      // --name= : the value may follow as --name=VALUE or as the next word.
      std::string name = n + (o.takes_value() && n.starts_with("--") ? "=" : "");
      specs.push_back(ShQuote(prefix + name + tail));
    }
  }
  for (size_t i = 0; i < c.positionals.size(); ++i) {
    const OptionSpec& p = c.positionals[i];
    specs.push_back(
        ShQuote(fmt::format("{}:{}:{}", i + 1, ZshMessage(p.positional), ZshAction(p))));
  }
  return specs;
}

std::string ZshArguments(const std::vector<std::string>& specs, std::string_view indent,
                         std::string_view head) {
  std::string out = fmt::format("{}_arguments {}", indent, head);
  for (const auto& s : specs)
    out += fmt::format(" \\\n{}  {}", indent, s);
  return out + "\n";
}

// ---- fish -------------------------------------------------------------------

std::string FishOption(const OptionSpec& o, std::string_view condition) {
  std::string line = "complete -c convergence";
  if (!condition.empty()) line += " -n " + FishQuote(condition);
  for (const auto& s : o.short_names)
    line += " -s " + s;
  for (const auto& l : o.long_names)
    line += " -l " + l;
  switch (o.hint) {
    case ValueHint::kNone:
      break;
    case ValueHint::kAny:
      line += " -x";
      break;
    case ValueHint::kFile:
      line += " -r -F";
      break;
    case ValueHint::kDir:
      line += " -x -a '(__fish_complete_directories (commandline -ct))'";
      break;
    case ValueHint::kChoice:
    case ValueHint::kSchema:
      line += " -x -a " + FishQuote(Join(o.choices, " "));
      break;
  }
  return line + " -d " + FishQuote(o.description) + "\n";
}

std::string FishPositional(const OptionSpec& p, const std::string& condition) {
  std::string line = "complete -c convergence -n " + FishQuote(condition);
  switch (p.hint) {
    case ValueHint::kFile:
      line += " -F";
      break;
    case ValueHint::kDir:
      line += " -a '(__fish_complete_directories (commandline -ct))'";
      break;
    case ValueHint::kChoice:
    case ValueHint::kSchema:
      line += " -a " + FishQuote(Join(p.choices, " "));
      break;
    case ValueHint::kNone:
    case ValueHint::kAny:
      return "";
  }
  return line + " -d " + FishQuote(p.description) + "\n";
}

}  // namespace

std::string BashCompletion(const CommandSpec& cli) {
  std::string out = fmt::format("# bash completion for {}(1).\n", cli.name);
  out += Comment(kGeneratedNote, "# ");
  out += R"(
# Fills COMPREPLY with the words of $1 that start with $cur.
_convergence_words() {
  local IFS=$' \t\n'
  mapfile -t COMPREPLY < <(compgen -W "$1" -- "$cur")
}
_convergence_files() {
  compopt -o filenames 2>/dev/null
  mapfile -t COMPREPLY < <(compgen -f -- "$cur")
}
_convergence_dirs() {
  compopt -o filenames 2>/dev/null
  mapfile -t COMPREPLY < <(compgen -d -- "$cur")
}
# Prints which positional argument of the subcommand (at $sub_index) is being
# completed, 1 for the first; $@ are the options that take a value.
_convergence_positional() {
  local i n=1 skip=0 w o
  for ((i = sub_index + 1; i < cword; i++)); do
    w=${words[i]}
    if [[ $w == "=" ]]; then skip=1; continue; fi  # --option=VALUE: the value follows
    if ((skip)); then skip=0; continue; fi
    if [[ $w == -* ]]; then
      for o in "$@"; do [[ $w == "$o" ]] && skip=1; done
      continue
    fi
    ((n++))
  done
  echo "$n"
}
)";
  for (const auto& sub : cli.subcommands)
    out += "\n" + BashCommand(sub, "_convergence_" + Ident(sub.name));
  std::vector<std::string> names = SubcommandNames(cli);
  out += fmt::format(R"(
_{0}() {{
  local -a words=("${{COMP_WORDS[@]}}")
  local cword=$COMP_CWORD
  local cur=${{words[cword]}} prev=""
  ((cword > 0)) && prev=${{words[cword - 1]}}
  # bash splits --option=VALUE at '=' (COMP_WORDBREAKS).
  if [[ $cur == "=" ]]; then
    cur=""
  elif [[ $prev == "=" ]] && ((cword > 1)); then
    prev=${{words[cword - 2]}}
  fi
  COMPREPLY=()
  local sub="" sub_index=0 i
  for ((i = 1; i < cword; i++)); do
    case ${{words[i]}} in
      {1}) sub=${{words[i]}}; sub_index=$i; break ;;
    esac
  done
  case $sub in
)",
                     cli.name, Join(names, "|"));
  for (const auto& sub : cli.subcommands) {
    out += fmt::format("    {}) _convergence_{} ;;\n", sub.name, Ident(sub.name));
  }
  out += fmt::format(R"(    *)
      if [[ $cur == -* ]]; then
        _convergence_words {}
      else
        _convergence_words {}
      fi
      ;;
  esac
  return 0
}}
complete -F _{} {}
)",
                     ShQuote(Join(AllSpellings(cli.options), " ")), ShQuote(Join(names, " ")),
                     cli.name, cli.name);
  return out;
}

std::string ZshCompletion(const CommandSpec& cli) {
  std::string out = fmt::format("#compdef {}\n", cli.name);
  out += fmt::format("# zsh completion for {}(1).\n", cli.name);
  out += Comment(kGeneratedNote, "# ");
  for (const auto& sub : cli.subcommands) {
    out += fmt::format("\n_convergence_{}() {{\n", Ident(sub.name));
    out += ZshArguments(ZshSpecs(sub), "  ", "-s -S");
    out += "}\n";
  }
  out += fmt::format("\n_{}() {{\n  local curcontext=$curcontext state line ret=1\n", cli.name);
  out += "  typeset -A opt_args\n";
  std::vector<std::string> specs = ZshSpecs(cli);
  specs.push_back(ShQuote("1: :->command"));
  specs.push_back(ShQuote("*:: :->argument"));
  out += ZshArguments(specs, "  ", "-C");
  out.insert(out.size() - 1, " && ret=0");
  out += "  case $state in\n    command)\n      local -a commands\n      commands=(\n";
  for (const auto& sub : cli.subcommands) {
    std::string item = sub.name + ":" + sub.description;
    out += fmt::format("        {}\n", ShQuote(item));
  }
  out += "      )\n      _describe -t commands 'convergence command' commands && ret=0\n      ;;\n";
  out += "    argument)\n      curcontext=${curcontext%:*:*}:convergence-$words[1]:\n";
  out += "      case $words[1] in\n";
  for (const auto& sub : cli.subcommands) {
    out += fmt::format("        {}) _convergence_{} && ret=0 ;;\n", sub.name, Ident(sub.name));
  }
  out += "      esac\n      ;;\n  esac\n  return ret\n}\n";
  out += fmt::format("\n_{} \"$@\"\n", cli.name);
  return out;
}

std::string FishCompletion(const CommandSpec& cli) {
  std::string out = fmt::format("# fish completion for {}(1).\n", cli.name);
  out += Comment(kGeneratedNote, "# ");
  out += R"(
# Prints which positional argument of the subcommand is being completed, 1 for the
# first; $argv are the options that take a value.
function __convergence_positional
    set -l tokens (commandline -opc)
    set -e tokens[1..2]
    set -l n 1
    set -l skip 0
    for t in $tokens
        if test $skip -eq 1
            set skip 0
        else if contains -- $t $argv
            set skip 1
        else if not string match -q -- '-*' $t
            set n (math $n + 1)
        end
    end
    echo $n
end

)";
  out += fmt::format("complete -c {} -f\n", cli.name);
  for (const auto& o : cli.options)
    out += FishOption(o, "__fish_use_subcommand");
  for (const auto& sub : cli.subcommands) {
    out += fmt::format("complete -c {} -n __fish_use_subcommand -a {} -d {}\n", cli.name,
                       FishQuote(sub.name), FishQuote(sub.description));
  }
  for (const auto& sub : cli.subcommands) {
    out += "\n";
    std::string seen = "__fish_seen_subcommand_from " + sub.name;
    for (const auto& o : sub.options)
      out += FishOption(o, seen);
    std::string value_options = Join(ValueOptionSpellings(sub.options), " ");
    for (size_t i = 0; i < sub.positionals.size(); ++i) {
      out += FishPositional(sub.positionals[i],
                            fmt::format("{}; and test (__convergence_positional {}) -eq {}", seen,
                                        value_options, i + 1));
    }
  }
  return out;
}

}  // namespace conv::cmd
