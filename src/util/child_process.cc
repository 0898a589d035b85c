#include "util/child_process.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

namespace conv::util {

namespace {

// In the child, between fork and exec: only async-signal-safe calls.
[[noreturn]] void ExecChild(char* const* argv, int out_fd, int err_fd) {
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::dup2(out_fd, 1);
  ::dup2(err_fd, 2);
  // Nothing else of the parent's: a listening socket it holds (asio opens them
  // without O_CLOEXEC) would stay bound in the child after the parent closed it.
  ::close_range(3, ~0U, 0);
  ::execv(argv[0], argv);
  ::_exit(127);
}

}  // namespace

Result<pid_t> Spawn(const std::vector<std::string>& args, int out_fd, int err_fd) {
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (auto& a : copy)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return Status::Error(fmt::format("fork: {}", std::strerror(errno)));
  if (pid == 0) ExecChild(argv.data(), out_fd, err_fd);
  return pid;
}

int MillisLeft(std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
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

Result<std::unique_ptr<ChildProcess>> ChildProcess::Start(const std::vector<std::string>& args,
                                                          const std::string& stderr_path) {
  int err_fd = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (err_fd < 0) {
    return Status::Error(fmt::format("cannot open '{}': {}", stderr_path, std::strerror(errno)));
  }
  int out_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
    ::close(err_fd);
    return Status::Error(fmt::format("pipe: {}", std::strerror(errno)));
  }
  auto pid = Spawn(args, out_pipe[1], err_fd);
  if (!pid.ok()) {
    ::close(err_fd);
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    return pid.status();
  }
  ::close(out_pipe[1]);
  ::close(err_fd);
  std::unique_ptr<ChildProcess> c(new ChildProcess());
  c->pid_ = *pid;
  c->out_fd_ = out_pipe[0];
  return c;
}

Result<std::string> ChildProcess::WaitForLine(std::string_view prefix,
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
      return Status::Error(
          fmt::format("no line starting with '{}' within {} ms", prefix, timeout.count()));
    }
    pollfd p{out_fd_, POLLIN, 0};
    int rc = ::poll(&p, 1, left);
    if (rc < 0 && errno != EINTR) {
      return Status::Error(fmt::format("poll: {}", std::strerror(errno)));
    }
    if (rc <= 0) continue;
    char buf[4096];
    ssize_t n = ::read(out_fd_, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return Status::Error(fmt::format("stdout closed before a line starting with '{}'", prefix));
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

}  // namespace conv::util
