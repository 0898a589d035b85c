#pragma once

#include <fmt/format.h>

#include <atomic>
#include <mutex>
#include <optional>
#include <string_view>

namespace conv::util {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };

std::optional<LogLevel> ParseLogLevel(std::string_view name);

// A leveled logger writing one line per event to stderr. Thread-safe: whole lines
// are written under a mutex so lines from different threads never interleave.
// Passed by reference to whatever logs; it is not a global.
class Logger {
 public:
  explicit Logger(LogLevel level = LogLevel::kInfo) : level_(level) {}

  bool Enabled(LogLevel level) const { return level >= level_.load(std::memory_order_relaxed); }
  void SetLevel(LogLevel level) { level_.store(level, std::memory_order_relaxed); }

  template <typename... Args>
  void Debug(fmt::format_string<Args...> f, Args&&... args) {
    Log(LogLevel::kDebug, f, std::forward<Args>(args)...);
  }
  template <typename... Args>
  void Info(fmt::format_string<Args...> f, Args&&... args) {
    Log(LogLevel::kInfo, f, std::forward<Args>(args)...);
  }
  template <typename... Args>
  void Warn(fmt::format_string<Args...> f, Args&&... args) {
    Log(LogLevel::kWarn, f, std::forward<Args>(args)...);
  }
  template <typename... Args>
  void Error(fmt::format_string<Args...> f, Args&&... args) {
    Log(LogLevel::kError, f, std::forward<Args>(args)...);
  }

 private:
  template <typename... Args>
  void Log(LogLevel level, fmt::format_string<Args...> f, Args&&... args) {
    if (!Enabled(level)) return;
    Write(level, fmt::format(f, std::forward<Args>(args)...));
  }
  void Write(LogLevel level, std::string_view message);

  std::atomic<LogLevel> level_;
  std::mutex mu_;
};

}  // namespace conv::util
