#include "cmd/man_page.h"

#include <fmt/format.h>

#include <cctype>
#include <string_view>

#include "cmd/completions.h"
#include "cmd/manual.h"

namespace conv::cmd {

namespace {

// Appends one UTF-8 sequence starting at s[*i] as a groff \[uXXXX] escape; a byte
// that does not start a valid sequence becomes \[u00XX].
void AppendNonAscii(std::string& out, std::string_view s, size_t* i) {
  auto b = static_cast<unsigned char>(s[*i]);
  int len = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
  uint32_t cp = len == 4 ? b & 0x07u : len == 3 ? b & 0x0fu : len == 2 ? b & 0x1fu : b;
  if (*i + static_cast<size_t>(len) > s.size()) len = 1, cp = b;
  for (int k = 1; k < len; ++k) {
    auto c = static_cast<unsigned char>(s[*i + static_cast<size_t>(k)]);
    if ((c & 0xc0) != 0x80) {
      len = 1;
      cp = b;
      break;
    }
    cp = (cp << 6) | (c & 0x3fu);
  }
  out += fmt::format("\\[u{:04X}]", cp);
  *i += static_cast<size_t>(len);
}

// Plain text: backslashes escaped, and every '-' of a word that starts with '-' (an
// option name) written as a minus sign, so that it can be copied from the page.
std::string Text(std::string_view s, bool literal = false) {
  std::string out;
  bool option_word = literal;
  for (size_t i = 0; i < s.size();) {
    char c = s[i];
    auto u = static_cast<unsigned char>(c);
    if (!literal) {
      bool word_start = i == 0 || s[i - 1] == ' ' || s[i - 1] == '(' || s[i - 1] == '\n';
      if (c == ' ' || c == '\n') option_word = false;
      if (word_start && c == '-') option_word = true;
    }
    if (u >= 0x80) {
      AppendNonAscii(out, s, &i);
      continue;
    }
    if (c == '\\') {
      out += "\\e";
    } else if (c == '-' && option_word) {
      out += "\\-";
    } else {
      out += c;
    }
    ++i;
  }
  return out;
}

std::string Bold(std::string_view s) {
  return "\\fB" + Text(s, true) + "\\fR";
}
std::string Italic(std::string_view s) {
  return "\\fI" + Text(s, true) + "\\fR";
}

// Written text with its markup (manual.h) in roff.
std::string Inline(std::string_view s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] == '`') {
      size_t end = s.find('`', i + 1);
      if (end != std::string_view::npos) {
        out += Bold(s.substr(i + 1, end - i - 1));
        i = end + 1;
        continue;
      }
    }
    if (s[i] == '*' && i + 1 < s.size() && s[i + 1] != ' ' && s[i + 1] != '*') {
      size_t end = s.find('*', i + 1);
      if (end != std::string_view::npos && s[end - 1] != ' ') {
        out += Italic(s.substr(i + 1, end - i - 1));
        i = end + 1;
        continue;
      }
    }
    size_t next = s.find_first_of("`*", i + 1);
    if (next == std::string_view::npos) next = s.size();
    out += Text(s.substr(i, next - i));
    i = next;
  }
  return out;
}

// A line of running text: guarded so that it never reads as a request.
std::string Line(std::string text) {
  if (!text.empty() && (text.front() == '.' || text.front() == '\'')) text.insert(0, "\\&");
  return text + "\n";
}

std::string Paragraphs(const std::vector<std::string_view>& paragraphs) {
  std::string out;
  for (std::string_view p : paragraphs) {
    if (p.starts_with("- ")) {
      out += ".IP \\(bu 2\n" + Line(Inline(p.substr(2)));
    } else if (size_t sep = p.find(" :: "); sep != std::string_view::npos) {
      out += ".TP\n" + Line(Inline(p.substr(0, sep))) + Line(Inline(p.substr(sep + 4)));
    } else {
      out += ".PP\n" + Line(Inline(p));
    }
  }
  return out;
}

std::string Upper(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// "Run the convergence server" -> "run the convergence server"; "convergence: a
// state-convergence server" -> "a state-convergence server".
std::string Summary(std::string_view name, std::string description) {
  std::string prefix = std::string(name) + ": ";
  if (description.starts_with(prefix)) description.erase(0, prefix.size());
  if (description.size() > 1 && std::isupper(static_cast<unsigned char>(description[0])) &&
      !std::isupper(static_cast<unsigned char>(description[1]))) {
    description[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(description[0])));
  }
  return description;
}

std::string OptionHead(const OptionSpec& o) {
  if (!o.positional.empty()) return Italic(o.metavar);
  std::string head;
  for (const auto& s : o.Spellings())
    head += (head.empty() ? "" : ", ") + Bold(s);
  if (o.takes_value()) {
    if (o.hint == ValueHint::kChoice) {
      std::string alts;
      for (const auto& c : o.choices)
        alts += (alts.empty() ? "" : "|") + Bold(c);
      head += " " + alts;
    } else {
      head += " " + Italic(o.metavar);
    }
  }
  return head;
}

std::string OptionBody(const OptionSpec& o) {
  std::string body = Text(o.description);
  if (!body.empty() && body.back() != '.') body += '.';
  if (o.hint == ValueHint::kSchema && !o.choices.empty()) {
    std::string names;
    for (const auto& c : o.choices)
      names += (names.empty() ? "" : ", ") + Bold(c);
    body += " Built in: " + names + ".";
  }
  if (o.repeatable) body += " May be given more than once.";
  if (o.takes_value() && !o.default_text.empty()) {
    body += " Default: " + Bold(o.default_text) + ".";
  }
  return body;
}

std::string OptionList(const std::vector<OptionSpec>& options) {
  std::string out;
  for (const auto& o : options) {
    out += ".TP\n" + Line(OptionHead(o)) + Line(OptionBody(o));
  }
  return out;
}

std::string Header(std::string_view page, const std::string& version) {
  std::string out = ".\\\" Manual page for " + std::string(page) + "(1).\n";
  std::string_view note = kGeneratedNote;
  size_t start = 0;
  while (start < note.size()) {
    size_t nl = note.find('\n', start);
    if (nl == std::string_view::npos) nl = note.size();
    out += ".\\\" " + std::string(note.substr(start, nl - start)) + "\n";
    start = nl + 1;
  }
  out += ".\\\" The written text is in src/cmd/manual.cc.\n";
  out += fmt::format(".TH {} 1 \"\" \"convergence {}\" \"User Commands\"\n",
                     Text(Upper(page), true), version);
  // Flag names and metric names must not be hyphenated or stretched.
  out += ".nh\n.ad l\n";
  return out;
}

std::string CommonTail(const ManualEntry* entry, const std::vector<std::string>& see_also) {
  std::string out;
  if (entry != nullptr) {
    for (const ManualSection& s : entry->sections) {
      out += ".SH " + Upper(s.title) + "\n" + Paragraphs(s.paragraphs);
    }
    if (!entry->exit_status.empty()) {
      out += ".SH EXIT STATUS\n";
      for (const auto& [code, meaning] : entry->exit_status) {
        out += ".TP\n" + Line(Bold(code)) + Line(Inline(meaning));
      }
    }
    if (!entry->examples.empty()) {
      out += ".SH EXAMPLES\n";
      for (const ManualExample& e : entry->examples) {
        out += ".PP\n" + Line(Inline(e.what)) + ".PP\n.RS 4\n.nf\n";
        std::string_view cmd = e.command;
        size_t start = 0;
        while (start <= cmd.size()) {
          size_t nl = cmd.find('\n', start);
          if (nl == std::string_view::npos) nl = cmd.size();
          out += Line(Text(cmd.substr(start, nl - start), true));
          start = nl + 1;
        }
        out += ".fi\n.RE\n";
      }
    }
  }
  std::vector<std::string> refs = see_also;
  if (entry != nullptr) {
    for (std::string_view r : entry->see_also)
      refs.emplace_back(r);
  }
  if (!refs.empty()) {
    out += ".SH SEE ALSO\n";
    for (size_t i = 0; i < refs.size(); ++i) {
      const std::string& r = refs[i];
      size_t paren = r.find('(');
      out += fmt::format(".BR {} {}{}\n", Text(r.substr(0, paren), true), r.substr(paren),
                         i + 1 < refs.size() ? "," : "");
    }
  }
  return out;
}

std::string Synopsis(const std::string& program, const CommandSpec& c) {
  std::string line = Bold(program + " " + c.name);
  if (!c.options.empty()) line += " [" + Italic("OPTIONS") + "]";
  for (const auto& p : c.positionals) {
    line += p.required ? " " + Italic(p.metavar) : " [" + Italic(p.metavar) + "]";
  }
  return line;
}

}  // namespace

std::vector<ManPage> ManPages(const CommandSpec& cli, const std::string& version,
                              std::vector<std::string>* missing) {
  std::vector<ManPage> pages;
  std::vector<std::string> sub_pages;
  for (const auto& sub : cli.subcommands)
    sub_pages.push_back(cli.name + "-" + sub.name + "(1)");

  // convergence(1)
  {
    const ManualEntry* entry = FindManualEntry("");
    if (entry == nullptr && missing != nullptr) missing->push_back(cli.name);
    std::string t = Header(cli.name, version);
    t += ".SH NAME\n" +
         Line(Text(cli.name, true) + " \\- " + Text(Summary(cli.name, cli.description)));
    t += ".SH SYNOPSIS\n";
    t += Line(Bold(cli.name) + " " + Italic("COMMAND") + " [" + Italic("OPTIONS") + "] [" +
              Italic("ARGUMENTS") + "]");
    t += ".br\n" + Line(Bold(cli.name) + " " + Bold("--version"));
    t += ".br\n" + Line(Bold(cli.name) + " [" + Italic("COMMAND") + "] " + Bold("--help"));
    if (entry != nullptr) t += ".SH DESCRIPTION\n" + Paragraphs(entry->description);
    t += ".SH COMMANDS\n";
    for (const auto& sub : cli.subcommands) {
      t += ".TP\n" + Line(Bold(sub.name)) +
           Line(Text(sub.description) + (sub.description.ends_with(".") ? "" : ".") + " See " +
                Bold(cli.name + "-" + sub.name) + "(1).");
    }
    t += ".SH OPTIONS\n" + OptionList(cli.options);
    t += CommonTail(entry, sub_pages);
    pages.push_back({cli.name + ".1", std::move(t)});
  }

  for (const auto& sub : cli.subcommands) {
    std::string page = cli.name + "-" + sub.name;
    const ManualEntry* entry = FindManualEntry(sub.name);
    if (entry == nullptr && missing != nullptr) missing->push_back(sub.name);
    std::string t = Header(page, version);
    t += ".SH NAME\n" + Line(Text(page, true) + " \\- " + Text(Summary(sub.name, sub.description)));
    t += ".SH SYNOPSIS\n" + Line(Synopsis(cli.name, sub));
    t += ".SH DESCRIPTION\n";
    if (entry != nullptr && !entry->description.empty()) {
      t += Paragraphs(entry->description);
    } else {
      t += Line(Text(sub.description) + ".");
    }
    if (!sub.positionals.empty()) {
      t += ".SH ARGUMENTS\n" + OptionList(sub.positionals);
    }
    t += ".SH OPTIONS\n" + OptionList(sub.options);
    std::vector<std::string> see_also = {cli.name + "(1)"};
    for (const auto& other : cli.subcommands) {
      if (other.name != sub.name) see_also.push_back(cli.name + "-" + other.name + "(1)");
    }
    t += CommonTail(entry, see_also);
    pages.push_back({page + ".1", std::move(t)});
  }
  return pages;
}

}  // namespace conv::cmd
