#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "util/status.h"

namespace conv::util {

// Parses "10ms", "1s", "250us", "2m", "1h" (a whole number and a unit; a bare
// number is refused so that "10" is never silently read as seconds or ms).
Result<std::chrono::microseconds> ParseDuration(std::string_view text);

// Renders a duration the way ParseDuration reads it, in the largest exact unit.
std::string FormatDuration(std::chrono::microseconds d);

}  // namespace conv::util
