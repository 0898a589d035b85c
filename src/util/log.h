#pragma once

#include <fmt/format.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace conv::util {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };

std::optional<LogLevel> ParseLogLevel(std::string_view name);

// kText: `2024-05-01T12:00:00.123Z info message`.
// kJson: `{"ts":"2024-05-01T12:00:00.123Z","level":"info","msg":"message"}`.
enum class LogFormat { kText, kJson };

std::optional<LogFormat> ParseLogFormat(std::string_view name);

// One event as one line (with its newline): newlines and other control characters
// in `message` are escaped in both formats, so a line is always exactly one event.
// `unix_millis` is the event's wall-clock time.
std::string FormatLogLine(LogFormat format, LogLevel level, int64_t unix_millis,
                          std::string_view message);

// A leveled logger writing one line per event to `sink` (stderr by default).
// Thread-safe: whole lines are written under a mutex so lines from different
// threads never interleave. Passed by reference to whatever logs; it is not a global.
// `sink` must stay open while the logger is used.
class Logger {
 public:
  explicit Logger(LogLevel level = LogLevel::kInfo, LogFormat format = LogFormat::kText,
                  std::FILE* sink = stderr)
      : level_(level), format_(format), sink_(sink) {}

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
  const LogFormat format_;
  std::FILE* const sink_;
  std::mutex mu_;
};

}  // namespace conv::util
