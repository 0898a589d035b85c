#include "util/duration.h"

#include <fmt/format.h>

#include <charconv>
#include <limits>

namespace conv::util {

namespace {
struct Unit {
  std::string_view name;
  int64_t micros;
};
constexpr Unit kUnits[] = {
    {"us", 1}, {"ms", 1000}, {"s", 1000000}, {"m", 60'000'000}, {"h", 3'600'000'000}};
}  // namespace

Result<std::chrono::microseconds> ParseDuration(std::string_view text) {
  int64_t number = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (ec == std::errc::result_out_of_range) {
    return Status::Error(
        fmt::format("duration '{}' is {}", text, text[0] == '-' ? "negative" : "too large"));
  }
  if (ec != std::errc() || ptr == text.data()) {
    return Status::Error(
        fmt::format("'{}' is not a duration: expected a whole number "
                    "and a unit, like 10ms, 1s, 250us, 2m",
                    text));
  }
  std::string_view unit(ptr, static_cast<size_t>(text.data() + text.size() - ptr));
  if (number < 0) return Status::Error(fmt::format("duration '{}' is negative", text));
  for (const Unit& u : kUnits) {
    if (unit == u.name) {
      if (number > std::numeric_limits<int64_t>::max() / u.micros) {
        return Status::Error(fmt::format("duration '{}' is too large", text));
      }
      return std::chrono::microseconds(number * u.micros);
    }
  }
  if (unit.empty()) {
    return Status::Error(
        fmt::format("duration '{}' has no unit: write {}ms or {}s", text, number, number));
  }
  return Status::Error(
      fmt::format("duration '{}' has unknown unit '{}' (use us, ms, s, m or h)", text, unit));
}

std::string FormatDuration(std::chrono::microseconds d) {
  int64_t us = d.count();
  for (auto it = std::rbegin(kUnits); it != std::rend(kUnits); ++it) {
    if (us != 0 && us % it->micros == 0) return fmt::format("{}{}", us / it->micros, it->name);
  }
  return fmt::format("{}us", us);
}

}  // namespace conv::util
