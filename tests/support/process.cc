#include "support/process.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace conv::testing {

namespace {

int MillisLeft(std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

std::vector<char*> ArgvOf(std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  return argv;
}

// In the child, between fork and exec: only async-signal-safe calls.
[[noreturn]] void ExecChild(char* const* argv, int out_fd, int err_fd) {
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::dup2(out_fd, 1);
  ::dup2(err_fd, 2);
  ::execv(argv[0], argv);
  ::_exit(127);
}

}  // namespace

TempDir::TempDir(std::string_view prefix) {
  const char* base = std::getenv("TMPDIR");
  std::string pattern =
      fmt::format("{}/{}-XXXXXX", base != nullptr && *base != '\0' ? base : "/tmp", prefix);
  char* made = ::mkdtemp(pattern.data());
  REQUIRE_MESSAGE(made != nullptr, "mkdtemp: ", std::strerror(errno));
  path_ = made;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

ProcessResult RunProcess(const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
  std::vector<std::string> copy = args;
  std::vector<char*> argv = ArgvOf(copy);
  int out_pipe[2], err_pipe[2];
  REQUIRE(::pipe2(out_pipe, O_CLOEXEC) == 0);
  REQUIRE(::pipe2(err_pipe, O_CLOEXEC) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) ExecChild(argv.data(), out_pipe[1], err_pipe[1]);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);

  ProcessResult r;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&r.out, &r.err};
  int open = 2;
  while (open > 0) {
    int left = MillisLeft(deadline);
    if (left == 0) {
      r.timed_out = true;
      break;
    }
    int rc = ::poll(fds, 2, left);
    if (rc < 0 && errno != EINTR) break;
    if (rc <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open;
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) ::close(f.fd);
  }
  if (r.timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!r.timed_out && WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  return r;
}

ChildProcess::~ChildProcess() {
  if (running()) {
    ::kill(pid_, SIGKILL);
    int status;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (out_fd_ >= 0) ::close(out_fd_);
}

util::Result<std::unique_ptr<ChildProcess>> ChildProcess::Start(
    const std::vector<std::string>& args, const std::string& stderr_path) {
  std::vector<std::string> copy = args;
  std::vector<char*> argv = ArgvOf(copy);
  int err_fd = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (err_fd < 0) {
    return util::Status::Error(
        fmt::format("cannot open '{}': {}", stderr_path, std::strerror(errno)));
  }
  int out_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
    ::close(err_fd);
    return util::Status::Error(fmt::format("pipe: {}", std::strerror(errno)));
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(err_fd);
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    return util::Status::Error(fmt::format("fork: {}", std::strerror(errno)));
  }
  if (pid == 0) ExecChild(argv.data(), out_pipe[1], err_fd);
  ::close(out_pipe[1]);
  ::close(err_fd);
  std::unique_ptr<ChildProcess> c(new ChildProcess());
  c->pid_ = pid;
  c->out_fd_ = out_pipe[0];
  return c;
}

util::Result<std::string> ChildProcess::WaitForLine(std::string_view prefix,
                                                    std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    size_t start = 0;
    for (size_t eol; (eol = out_.find('\n', start)) != std::string::npos; start = eol + 1) {
      std::string line = out_.substr(start, eol - start);
      if (line.compare(0, prefix.size(), prefix) == 0) {
        out_.erase(0, eol + 1);
        return line;
      }
    }
    out_.erase(0, start);
    int left = MillisLeft(deadline);
    if (left == 0) {
      return util::Status::Error(
          fmt::format("no line starting with '{}' within {} ms", prefix, timeout.count()));
    }
    pollfd p{out_fd_, POLLIN, 0};
    int rc = ::poll(&p, 1, left);
    if (rc < 0 && errno != EINTR) {
      return util::Status::Error(fmt::format("poll: {}", std::strerror(errno)));
    }
    if (rc <= 0) continue;
    char buf[4096];
    ssize_t n = ::read(out_fd_, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return util::Status::Error(
          fmt::format("stdout closed before a line starting with '{}'", prefix));
    }
    out_.append(buf, static_cast<size_t>(n));
  }
}

void ChildProcess::Signal(int sig) {
  if (running()) ::kill(pid_, sig);
}

std::optional<int> ChildProcess::Wait(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return std::nullopt;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t rc = ::waitpid(pid_, &status, WNOHANG);
    if (rc == pid_) {
      reaped_ = true;
      return status;
    }
    if (rc < 0 && errno != EINTR) return std::nullopt;
    if (MillisLeft(deadline) == 0) return std::nullopt;
    // A child has no descriptor to wait on here; poll its state briefly.
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

uint64_t EnvNumber(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  unsigned long long n = std::strtoull(v, &end, 0);
  return end != nullptr && *end == '\0' ? static_cast<uint64_t>(n) : fallback;
}

// A port on loopback that nothing listens on: bound, then released.
uint16_t ClosedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  socklen_t len = sizeof(addr);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  ::close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace conv::testing
