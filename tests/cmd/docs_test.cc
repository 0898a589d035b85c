// Shell completions and man pages: generated from the CLI definition by
// convergence-gen-docs, committed in completions/ and man/, in sync, and working in
// the shells and in man.

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cmd/cli.h"
#include "cmd/manual.h"
#include "support/process.h"

using namespace conv;
using testing::ProcessResult;
using testing::ReadFileOrEmpty;
using testing::RunProcess;

namespace {

namespace fs = std::filesystem;

const std::string kSource = CONV_SOURCE_DIR;
const char* const kRegenerate =
    "regenerate with: cmake --build <build dir> --target regenerate-docs (then review and "
    "commit completions/ and man/)";

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s)
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// What the bash completion in `script` offers for the command line `words` (the last
// is the word being completed), run in `cwd`: COMPREPLY, sorted.
std::vector<std::string> BashComplete(const std::string& script,
                                      const std::vector<std::string>& words,
                                      const std::string& cwd = "/") {
  std::string array, line;
  for (const auto& w : words) {
    array += " " + Quote(w);
    line += (line.empty() ? "" : " ") + w;
  }
  std::string program = fmt::format(
      "cd {} || exit 3\n"
      "source {} || exit 3\n"
      "fn=$(complete -p convergence | sed -n 's/.*-F \\([^ ]*\\).*/\\1/p')\n"
      "[ -n \"$fn\" ] || exit 4\n"
      "COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE={}; COMP_POINT=${{#COMP_LINE}}\n"
      "\"$fn\" convergence\n"
      "printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
      Quote(cwd), Quote(script), array, words.size() - 1, Quote(line));
  ProcessResult r = RunProcess({"/usr/bin/env", "bash", "--norc", "--noprofile", "-c", program});
  REQUIRE_MESSAGE(r.exit_code == 0, "bash failed (", r.exit_code, "): ", r.err);
  auto out = Lines(r.out);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> Sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// What the CLI itself defines: subcommand names, and each one's flag spellings.
struct Defined {
  std::vector<std::string> subcommands;
  std::map<std::string, std::vector<std::string>> flags;
};

Defined FromCli() {
  cmd::Cli cli;
  Defined d;
  for (CLI::App* sub : cli.app().get_subcommands([](CLI::App*) { return true; })) {
    d.subcommands.push_back(sub->get_name());
    auto& flags = d.flags[sub->get_name()];
    for (const CLI::Option* o : sub->get_options()) {
      for (const auto& s : o->get_snames())
        flags.push_back("-" + s);
      for (const auto& l : o->get_lnames())
        flags.push_back("--" + l);
    }
  }
  return d;
}

// Runs the generator into a fresh directory.
void Generate(const testing::TempDir& dir) {
  ProcessResult r = RunProcess({CONV_GEN_DOCS, dir.path()});
  REQUIRE_MESSAGE(r.exit_code == 0, "convergence-gen-docs failed: ", r.err);
}

std::set<std::string> FilesIn(const fs::path& dir) {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    out.insert(e.path().filename().string());
  return out;
}

// Every file of `generated`/`sub` equals the committed one, and nothing is extra.
void CheckInSync(const testing::TempDir& generated, const std::string& sub) {
  std::set<std::string> want = FilesIn(fs::path(generated.path()) / sub);
  std::set<std::string> have = FilesIn(fs::path(kSource) / sub);
  REQUIRE_FALSE(want.empty());
  for (const auto& f : want) {
    std::string fresh = ReadFileOrEmpty(generated.File(sub + "/" + f));
    std::string committed = ReadFileOrEmpty(kSource + "/" + sub + "/" + f);
    CHECK_MESSAGE(fresh == committed, sub, "/", f, " is not what the CLI definition generates; ",
                  kRegenerate);
  }
  for (const auto& f : have) {
    if (f.starts_with("convergence") || f == "_convergence") {
      CHECK_MESSAGE(want.count(f) == 1, sub, "/", f, " is no longer generated; ", kRegenerate);
    }
  }
}

const std::string kBash = kSource + "/completions/convergence.bash";

}  // namespace

TEST_CASE("completion: the committed scripts are what the CLI definition generates") {
  testing::TempDir dir("conv-docs");
  Generate(dir);
  CheckInSync(dir, "completions");
  CHECK(FilesIn(fs::path(dir.path()) / "completions") ==
        std::set<std::string>{"_convergence", "convergence.bash", "convergence.fish"});
}

TEST_CASE("man: the committed pages are what the CLI definition and manual.cc generate") {
  testing::TempDir dir("conv-docs");
  Generate(dir);
  CheckInSync(dir, "man");
  std::set<std::string> want = {"convergence.1"};
  for (const auto& s : FromCli().subcommands)
    want.insert("convergence-" + s + ".1");
  CHECK(FilesIn(fs::path(dir.path()) / "man") == want);
}

TEST_CASE("man: every command has a written description and examples in manual.cc") {
  REQUIRE(cmd::FindManualEntry("") != nullptr);
  for (const auto& s : FromCli().subcommands) {
    const cmd::ManualEntry* e = cmd::FindManualEntry(s);
    CHECK_MESSAGE(e != nullptr, "no manual entry for '", s, "': add one to src/cmd/manual.cc");
    if (e == nullptr) continue;
    CHECK_MESSAGE(!e->description.empty(), s);
    CHECK_MESSAGE(!e->examples.empty(), s);
    CHECK_MESSAGE(!e->exit_status.empty(), s);
  }
}

TEST_CASE("man: every page renders without warnings and lists every flag of its command") {
  Defined d = FromCli();
  for (const auto& page : FilesIn(kSource + "/man")) {
    CAPTURE(page);
    std::string path = kSource + "/man/" + page;
    ProcessResult groff = RunProcess({"/usr/bin/env", "groff", "-man", "-ww", "-z", path});
    REQUIRE_MESSAGE(groff.exit_code != 127, "groff is missing: run scripts/setup.sh");
    CHECK(groff.exit_code == 0);
    CHECK_MESSAGE(groff.err.empty(), groff.err);

    ProcessResult man = RunProcess(
        {"/usr/bin/env", "MANWIDTH=80", "MANPAGER=cat", "man", "--warnings", "-l", path});
    REQUIRE_MESSAGE(man.exit_code != 127, "man is missing: run scripts/setup.sh");
    CHECK(man.exit_code == 0);
    CHECK_MESSAGE(man.err.empty(), man.err);
    CHECK(man.out.find("NAME") != std::string::npos);
    CHECK(man.out.find("SYNOPSIS") != std::string::npos);
    std::string name = page.substr(0, page.size() - 2);  // "convergence-serve"
    if (name == "convergence") {
      for (const auto& s : d.subcommands)
        CHECK_MESSAGE(man.out.find(s) != std::string::npos, s);
      continue;
    }
    std::string sub = name.substr(std::string("convergence-").size());
    REQUIRE(d.flags.count(sub) == 1);
    for (const auto& flag : d.flags[sub]) {
      CHECK_MESSAGE(man.out.find(flag) != std::string::npos, flag, " missing from ", page);
    }
    CHECK(man.out.find("EXAMPLES") != std::string::npos);
  }
}

TEST_CASE("completion: bash offers the subcommands, then each one's flags") {
  Defined d = FromCli();
  CHECK(BashComplete(kBash, {"convergence", ""}) == Sorted(d.subcommands));
  CHECK(BashComplete(kBash, {"convergence", "se"}) == std::vector<std::string>{"serve"});
  CHECK(BashComplete(kBash, {"convergence", "wal"}) == std::vector<std::string>{"wal-dump"});
  CHECK(BashComplete(kBash, {"convergence", "--"}) ==
        std::vector<std::string>{"--help", "--version"});
  for (const auto& s : d.subcommands) {
    CAPTURE(s);
    CHECK(BashComplete(kBash, {"convergence", s, "-"}) == Sorted(d.flags[s]));
  }
  CHECK(BashComplete(kBash, {"convergence", "serve", "--metrics"}) ==
        std::vector<std::string>{"--metrics-listen"});
  CHECK(BashComplete(kBash, {"convergence", "serve", "--salvage", "--log-f"}) ==
        std::vector<std::string>{"--log-format"});
}

TEST_CASE("completion: bash offers flag values: choices, schema names, files and directories") {
  using V = std::vector<std::string>;
  CHECK(BashComplete(kBash, {"convergence", "serve", "--fsync", ""}) == V{"none", "window"});
  CHECK(BashComplete(kBash, {"convergence", "serve", "--log-level", "w"}) == V{"warn"});
  CHECK(BashComplete(kBash, {"convergence", "serve", "--log-format", ""}) == V{"json", "text"});
  // --log-format=j: bash splits the word at '='.
  CHECK(BashComplete(kBash, {"convergence", "serve", "--log-format", "=", "j"}) == V{"json"});
  CHECK(BashComplete(kBash, {"convergence", "serve", "--log-format", "="}) == V{"json", "text"});
  CHECK(BashComplete(kBash, {"convergence", "serve", "--listen", ""}).empty());
  CHECK(BashComplete(kBash, {"convergence", "load", "--schema", ""}) == V{"player"});
  CHECK(BashComplete(kBash, {"convergence", "query", ""}) == V{"player"});
  CHECK(BashComplete(kBash, {"convergence", "query", "--server", "h:1", "p"}) == V{"player"});
  CHECK(BashComplete(kBash, {"convergence", "query", "player", ""}).empty());  // the id

  testing::TempDir dir("conv-complete");
  fs::create_directory(dir.File("data"));
  { std::ofstream(dir.File("schemas.txt")) << "x\n"; }
  { std::ofstream(dir.File("token")) << "t\n"; }
  CHECK(BashComplete(kBash, {"convergence", "serve", "--data-dir", ""}, dir.path()) == V{"data"});
  CHECK(BashComplete(kBash, {"convergence", "serve", "--schema-file", "s"}, dir.path()) ==
        V{"schemas.txt"});
  CHECK(BashComplete(kBash, {"convergence", "serve", "--auth-token-file", ""}, dir.path()) ==
        V{"data", "schemas.txt", "token"});
  CHECK(BashComplete(kBash, {"convergence", "wal-dump", "--verify", ""}, dir.path()) ==
        V{"data", "schemas.txt", "token"});
}

TEST_CASE("completion: fish offers the subcommands, flags and values") {
  auto fish = [](const std::string& line) {
    std::string program = fmt::format(
        "source {}; complete -C{}", Quote(kSource + "/completions/convergence.fish"), Quote(line));
    ProcessResult r = RunProcess({"/usr/bin/env", "fish", "--no-config", "-c", program});
    REQUIRE_MESSAGE(r.exit_code != 127, "fish is missing: run scripts/setup.sh");
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    std::vector<std::string> words;
    for (const auto& l : Lines(r.out))
      words.push_back(l.substr(0, l.find('\t')));
    std::sort(words.begin(), words.end());
    return words;
  };
  using V = std::vector<std::string>;
  CHECK(fish("convergence ") == Sorted(FromCli().subcommands));
  CHECK(fish("convergence serve --fs") == V{"--fsync"});
  CHECK(fish("convergence serve --fsync ") == V{"none", "window"});
  CHECK(fish("convergence query ") == V{"player"});
  CHECK(fish("convergence query player ").empty());
  CHECK(fish("convergence bench --scenario ") ==
        V{"bootstrap", "coalescing", "reads", "saturation", "scale", "subscribers", "write"});
}

TEST_CASE("completion: the zsh function parses and compinit registers it for convergence") {
  std::string file = kSource + "/completions/_convergence";
  ProcessResult syntax = RunProcess({"/usr/bin/env", "zsh", "-n", file});
  REQUIRE_MESSAGE(syntax.exit_code != 127, "zsh is missing: run scripts/setup.sh");
  CHECK_MESSAGE(syntax.exit_code == 0, syntax.err);
  testing::TempDir home("conv-zsh");
  ProcessResult reg =
      RunProcess({"/usr/bin/env", "HOME=" + home.path(), "zsh", "-f", "-c",
                  fmt::format("fpath=({} $fpath); autoload -U compinit; compinit -u -D; "
                              "print -r -- $_comps[convergence]",
                              Quote(kSource + "/completions"))});
  CHECK_MESSAGE(reg.exit_code == 0, reg.err);
  CHECK(reg.out == "_convergence\n");
}
