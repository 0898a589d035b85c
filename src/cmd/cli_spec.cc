#include "cmd/cli_spec.h"

#include <cctype>

namespace conv::cmd {

namespace {

std::string ToUpper(std::string s) {
  for (char& c : s)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// The descriptions of an option's validators ("FILE", "{window,none}", ...).
std::vector<std::string> ValidatorDescriptions(CLI::Option& opt) {
  std::vector<std::string> out;
  for (int i = 0;; ++i) {
    CLI::Validator* v = nullptr;
    try {
      v = opt.get_validator(i);
    } catch (const CLI::OptionNotFound&) {
      break;
    }
    out.push_back(v->get_description());
  }
  return out;
}

// "{a,b,c}" (CLI::IsMember's description) -> {a, b, c}.
std::vector<std::string> ParseChoices(const std::string& desc) {
  std::vector<std::string> out;
  if (desc.size() < 2 || desc.front() != '{' || desc.back() != '}') return out;
  std::string inner = desc.substr(1, desc.size() - 2);
  size_t start = 0;
  for (;;) {
    size_t comma = inner.find(',', start);
    out.push_back(inner.substr(start, comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

OptionSpec DescribeOption(CLI::Option& opt, const std::vector<std::string>& schema_names) {
  OptionSpec o;
  o.long_names = opt.get_lnames();
  o.short_names = opt.get_snames();
  if (!opt.nonpositional()) o.positional = opt.get_name(true);
  o.description = opt.get_description();
  o.required = opt.get_required();
  o.repeatable = opt.get_expected_max() > 1 ||
                 opt.get_multi_option_policy() == CLI::MultiOptionPolicy::TakeAll;
  if (opt.get_expected_max() == 0) {
    o.hint = ValueHint::kNone;  // a flag
    o.repeatable = false;
    return o;
  }
  o.default_text = opt.get_default_str();

  // The name says what the value is: --data-dir, --schema-file, path, schema ...
  std::string name =
      o.positional.empty() ? (o.long_names.empty() ? "" : o.long_names.front()) : o.positional;
  std::string type = opt.get_type_name();
  type = type.substr(0, type.find(':'));  // "TEXT:FILE" -> "TEXT"
  bool file_check = false, dir_check = false, server_list = false;
  for (const std::string& d : ValidatorDescriptions(opt)) {
    if (auto choices = ParseChoices(d); !choices.empty()) o.choices = std::move(choices);
    if (d == "FILE" || d.rfind("PATH", 0) == 0) file_check = true;
    if (d == "DIR") dir_check = true;
    if (d == "HOST:PORT[,...]") server_list = true;  // AddServerOption
  }

  if (!o.choices.empty()) {
    o.hint = ValueHint::kChoice;
    for (const auto& c : o.choices)
      o.metavar += (o.metavar.empty() ? "" : "|") + c;
  } else if (name == "schema") {
    o.hint = ValueHint::kSchema;
    o.choices = schema_names;
    o.metavar = "SCHEMA";
  } else if (dir_check || name == "dir" || name.ends_with("-dir") || name.ends_with("_dir")) {
    o.hint = ValueHint::kDir;
    o.metavar = "DIR";
  } else if (file_check || name == "file" || name.ends_with("-file") || name == "path" ||
             name == "out") {
    o.hint = ValueHint::kFile;
    o.metavar = name == "path" ? "PATH" : "FILE";
  } else {
    o.hint = ValueHint::kAny;
    if (server_list) {
      o.metavar = "HOST:PORT[,...]";
    } else if (name == "listen" || name == "server" || name == "advertise" ||
               name.ends_with("-listen")) {
      o.metavar = "HOST:PORT";
    } else if (type == "UINT" || type == "INT" || type == "NATURAL") {
      o.metavar = "N";
    } else if (type == "FLOAT" || type == "NUMBER") {
      o.metavar = "X";
    } else if (type == "TEXT" || type.empty()) {
      o.metavar = o.positional.empty() ? "TEXT" : ToUpper(name);
    } else {
      o.metavar = type;  // DURATION, ...
    }
  }
  if (!o.positional.empty() && o.hint != ValueHint::kChoice) o.metavar = ToUpper(name);
  return o;
}

CommandSpec DescribeApp(CLI::App& app, const std::vector<std::string>& schema_names) {
  CommandSpec c;
  c.name = app.get_name();
  c.description = app.get_description();
  for (CLI::Option* opt : app.get_options()) {
    if (opt->get_group().empty()) continue;  // hidden
    OptionSpec o = DescribeOption(*opt, schema_names);
    (o.positional.empty() ? c.options : c.positionals).push_back(std::move(o));
  }
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
    if (sub->get_name().empty() || sub->get_group().empty() || sub->get_disabled()) continue;
    c.subcommands.push_back(DescribeApp(*sub, schema_names));
  }
  return c;
}

}  // namespace

std::string OptionSpec::PrimaryName() const {
  if (!positional.empty()) return positional;
  if (!long_names.empty()) return "--" + long_names.front();
  return short_names.empty() ? "" : "-" + short_names.front();
}

std::vector<std::string> OptionSpec::Spellings() const {
  std::vector<std::string> out;
  for (const auto& s : short_names)
    out.push_back("-" + s);
  for (const auto& l : long_names)
    out.push_back("--" + l);
  return out;
}

CommandSpec DescribeCli(CLI::App& app, const std::vector<std::string>& schema_names) {
  return DescribeApp(app, schema_names);
}

}  // namespace conv::cmd
