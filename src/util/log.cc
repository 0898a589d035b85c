#include "util/log.h"

#include <chrono>
#include <cstdio>
#include <ctime>

#include "util/json.h"

namespace conv::util {

namespace {

constexpr std::string_view kLevelNames[] = {"debug", "info", "warn", "error", "off"};

// Backslash-escapes what would break a text line apart (control characters and the
// backslash itself), so that the line can be told apart from the next one.
void AppendEscapedText(std::string& out, std::string_view s) {
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7f) {
      out += fmt::format("\\x{:02x}", u);
    } else {
      out += c;
    }
  }
}

}  // namespace

std::optional<LogLevel> ParseLogLevel(std::string_view name) {
  if (name == "debug") return LogLevel::kDebug;
  if (name == "info") return LogLevel::kInfo;
  if (name == "warn") return LogLevel::kWarn;
  if (name == "error") return LogLevel::kError;
  if (name == "off") return LogLevel::kOff;
  return std::nullopt;
}

std::optional<LogFormat> ParseLogFormat(std::string_view name) {
  if (name == "text") return LogFormat::kText;
  if (name == "json") return LogFormat::kJson;
  return std::nullopt;
}

std::string FormatLogLine(LogFormat format, LogLevel level, int64_t unix_millis,
                          std::string_view message) {
  auto secs = static_cast<std::time_t>(unix_millis / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  std::string ts =
      fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, unix_millis % 1000);
  std::string_view name = kLevelNames[static_cast<int>(level)];
  std::string line;
  line.reserve(message.size() + 64);
  if (format == LogFormat::kJson) {
    line += "{\"ts\":\"";
    line += ts;
    line += "\",\"level\":\"";
    line += name;
    line += "\",\"msg\":";
    AppendJsonString(line, message);
    line += "}\n";
  } else {
    line += ts;
    line += ' ';
    line += name;
    line += ' ';
    AppendEscapedText(line, message);
    line += '\n';
  }
  return line;
}

void Logger::Write(LogLevel level, std::string_view message) {
  auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  std::string line = FormatLogLine(format_, level, millis, message);
  std::lock_guard lock(mu_);
  std::fwrite(line.data(), 1, line.size(), sink_);
  std::fflush(sink_);
}

}  // namespace conv::util
