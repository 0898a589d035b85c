// The test suite itself: every test case is one ctest test, found by its name.

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

namespace {

std::string ReadAll(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TEST_CASE("suite: no test case name has a semicolon (ctest would split it and run nothing)") {
  // ctest gets the names as a CMake list: a ';' cuts one name into two that match
  // no test case, and a filter that matches nothing passes.
  const std::regex test_case(R"re(TEST_CASE\(\s*"((?:[^"\\]|\\.)*)"\s*\))re");
  size_t names = 0;
  for (const auto& entry :
       std::filesystem::recursive_directory_iterator(std::string(CONV_SOURCE_DIR) + "/tests")) {
    if (entry.path().extension() != ".cc") continue;
    std::string text = ReadAll(entry.path());
    for (std::sregex_iterator it(text.begin(), text.end(), test_case), end; it != end; ++it) {
      ++names;
      std::string name = (*it)[1];
      CHECK_MESSAGE(name.find(';') == std::string::npos, entry.path().string(), ": ", name);
    }
  }
  CHECK(names > 100);
}
