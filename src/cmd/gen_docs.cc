// convergence-gen-docs OUTDIR: writes the shell completions (OUTDIR/completions) and
// manual pages (OUTDIR/man) of `convergence`, generated from its command-line
// definition (cli.cc) and the written manual text (manual.cc). A separate program so
// that the product binary carries no hidden subcommand. Run through the
// `regenerate-docs` build target to refresh the committed files; the test suite
// checks that they are in sync.

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "cmd/cli.h"
#include "cmd/cli_spec.h"
#include "cmd/common.h"
#include "cmd/completions.h"
#include "cmd/man_page.h"
#include "engine/schema.h"

namespace {

bool WriteFile(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) {
    std::fprintf(stderr, "convergence-gen-docs: cannot write %s\n", path.c_str());
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 || argv[1][0] == '-') {
    std::fprintf(stderr,
                 "usage: convergence-gen-docs OUTDIR\n"
                 "Writes OUTDIR/completions/{convergence.bash,_convergence,convergence.fish} "
                 "and OUTDIR/man/*.1.\n");
    return 2;
  }
  namespace fs = std::filesystem;
  const fs::path out = argv[1];
  std::error_code ec;
  fs::create_directories(out / "completions", ec);
  fs::create_directories(out / "man", ec);
  if (ec) {
    std::fprintf(stderr, "convergence-gen-docs: cannot create %s: %s\n", out.c_str(),
                 ec.message().c_str());
    return 2;
  }

  conv::cmd::Cli cli;
  std::vector<std::string> schema_names;
  const conv::engine::SchemaSet builtin;
  for (const auto& s : builtin.all())
    schema_names.push_back(s->name);
  conv::cmd::CommandSpec spec = conv::cmd::DescribeCli(cli.app(), schema_names);

  bool ok = WriteFile(out / "completions" / "convergence.bash", conv::cmd::BashCompletion(spec)) &&
            WriteFile(out / "completions" / "_convergence", conv::cmd::ZshCompletion(spec)) &&
            WriteFile(out / "completions" / "convergence.fish", conv::cmd::FishCompletion(spec));

  std::vector<std::string> missing;
  std::set<std::string> written;
  for (const auto& page : conv::cmd::ManPages(spec, conv::cmd::GetBuildInfo().version, &missing)) {
    ok = WriteFile(out / "man" / page.file_name, page.text) && ok;
    written.insert(page.file_name);
  }
  // Pages of commands that no longer exist.
  for (const auto& entry : fs::directory_iterator(out / "man", ec)) {
    std::string name = entry.path().filename().string();
    if (name.starts_with("convergence") && name.ends_with(".1") && !written.contains(name)) {
      fs::remove(entry.path(), ec);
      std::fprintf(stderr, "convergence-gen-docs: removed %s (no such command)\n", name.c_str());
    }
  }
  if (!ok) return 2;
  for (const auto& name : missing) {
    std::fprintf(stderr,
                 "convergence-gen-docs: '%s' has no written manual entry: add one to "
                 "src/cmd/manual.cc (its page has only the options for now)\n",
                 name.c_str());
  }
  return missing.empty() ? 0 : 1;
}
