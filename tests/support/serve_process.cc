#include "support/serve_process.h"

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>

namespace conv::testing {

uint16_t ServeProcess::port() const {
  return static_cast<uint16_t>(std::stoul(address.substr(address.rfind(':') + 1)));
}

uint64_t ServeProcess::RssKiB() const {
  return RssKiBOf(pid());
}

void ServeProcess::Stop(std::chrono::milliseconds timeout) {
  process->Signal(SIGTERM);
  auto status = process->Wait(timeout);
  REQUIRE_MESSAGE(status.has_value(), "the server did not stop on SIGTERM\nserver log:\n",
                  ReadFileOrEmpty(log_path));
  CHECK_MESSAGE((WIFEXITED(*status) && WEXITSTATUS(*status) == 0), "the server stopped with ",
                (WIFEXITED(*status) ? "exit code " + std::to_string(WEXITSTATUS(*status))
                                    : "signal " + std::to_string(WTERMSIG(*status))),
                "\nserver log:\n", ReadFileOrEmpty(log_path));
}

ServeProcess StartServe(const std::string& data_dir, const std::string& log_path,
                        const std::vector<std::string>& extra, const std::string& listen) {
  std::vector<std::string> argv = {CONV_BINARY,  "serve",  "--listen",    listen,
                                   "--data-dir", data_dir, "--log-level", "warn"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto child = ChildProcess::Start(argv, log_path);
  REQUIRE_MESSAGE(child.ok(), (child.ok() ? "" : child.message()));
  const std::string prefix = "listening on ";
  auto line = (*child)->WaitForLine(prefix, std::chrono::seconds(30));
  REQUIRE_MESSAGE(line.ok(), (line.ok() ? "" : line.message()), "\nserver log:\n",
                  ReadFileOrEmpty(log_path));
  return {std::move(child).value(), line->substr(prefix.size()), log_path};
}

uint64_t RssKiBOf(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtoull(line.c_str() + 6, nullptr, 10);
  }
  return 0;
}

}  // namespace conv::testing
