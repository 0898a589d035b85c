#include "util/duration.h"

#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <random>
#include <string>

using conv::util::FormatDuration;
using conv::util::ParseDuration;
using std::chrono::hours;
using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

namespace {

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("duration: a whole number with us, ms, s, m or h is accepted") {
  struct Case {
    const char* text;
    microseconds want;
  };
  const Case cases[] = {
      {"10ms", milliseconds(10)},
      {"1s", seconds(1)},
      {"250us", microseconds(250)},
      {"2m", minutes(2)},
      {"1h", hours(1)},
      {"0us", microseconds(0)},
      {"0s", microseconds(0)},
      {"1500ms", seconds(1) + milliseconds(500)},
      {"007s", seconds(7)},
      {"48h", hours(48)},
  };
  for (const Case& c : cases) {
    CAPTURE(c.text);
    auto d = ParseDuration(c.text);
    REQUIRE(d.ok());
    CHECK(d.value() == c.want);
  }
}

TEST_CASE("duration: the largest representable value of each unit is accepted") {
  const int64_t max = std::numeric_limits<int64_t>::max();
  auto us = ParseDuration(std::to_string(max) + "us");
  REQUIRE(us.ok());
  CHECK(us->count() == max);
  for (int64_t scale :
       {int64_t{1000}, int64_t{1'000'000}, int64_t{60'000'000}, int64_t{3'600'000'000}}) {
    CAPTURE(scale);
    std::string text = FormatDuration(microseconds(max / scale * scale));
    auto d = ParseDuration(text);
    REQUIRE(d.ok());
    CHECK(d->count() == max / scale * scale);
  }
  CHECK(ParseDuration("9223372036854775ms").ok());
  CHECK(ParseDuration("9223372036854s").ok());
  CHECK(ParseDuration("153722867280m").ok());
  CHECK(ParseDuration("2562047788h").ok());
}

TEST_CASE("duration: a bare number is refused and the message names it and suggests a unit") {
  auto d = ParseDuration("10");
  REQUIRE_FALSE(d.ok());
  CHECK(Contains(d.message(), "'10'"));
  CHECK(Contains(d.message(), "unit"));
  CHECK(Contains(d.message(), "10ms"));
}

TEST_CASE("duration: a negative duration is refused with a message naming the input") {
  for (const char* text : {"-5ms", "-1s", "-99999999999999999999ms"}) {
    CAPTURE(text);
    auto d = ParseDuration(text);
    REQUIRE_FALSE(d.ok());
    CHECK(Contains(d.message(), std::string("'") + text + "'"));
    CHECK(Contains(d.message(), "negative"));
  }
}

TEST_CASE("duration: an unknown unit is refused with a message naming the input and the unit") {
  for (const char* text : {"5xs", "5 ms", "5MS", "5sec", "5ms ", "5mss"}) {
    CAPTURE(text);
    auto d = ParseDuration(text);
    REQUIRE_FALSE(d.ok());
    CHECK(Contains(d.message(), std::string("'") + text + "'"));
    CHECK(Contains(d.message(), "unit"));
  }
  auto d = ParseDuration("5xs");
  REQUIRE_FALSE(d.ok());
  CHECK(Contains(d.message(), "'xs'"));
}

TEST_CASE("duration: text that does not start with a number is refused, naming the input") {
  for (const char* text : {"", "ms", " 10ms", "+10ms", "1.5s", ".5s", "ten ms", "\xff"}) {
    CAPTURE(text);
    auto d = ParseDuration(text);
    REQUIRE_FALSE(d.ok());
    CHECK(Contains(d.message(), std::string("'") + text + "'"));
  }
  // "1.5s": the number parses, the unit does not.
  auto d = ParseDuration("1.5s");
  REQUIRE_FALSE(d.ok());
  CHECK(Contains(d.message(), "'.5s'"));
}

TEST_CASE("duration: a value that overflows 64-bit microseconds is refused as too large") {
  const char* texts[] = {
      "9223372036854775808us",   // INT64_MAX + 1: overflows the number itself
      "99999999999999999999ms",  // likewise
      "9223372036854776ms",      // the rest overflow only when scaled to microseconds
      "9223372036855s",         "153722867281m", "2562047789h", "9223372036854775807h",
  };
  for (const char* text : texts) {
    CAPTURE(text);
    auto d = ParseDuration(text);
    REQUIRE_FALSE(d.ok());
    CHECK(Contains(d.message(), std::string("'") + text + "'"));
    CHECK(Contains(d.message(), "too large"));
  }
}

TEST_CASE("duration: FormatDuration uses the largest exact unit") {
  CHECK(FormatDuration(microseconds(0)) == "0us");
  CHECK(FormatDuration(microseconds(1)) == "1us");
  CHECK(FormatDuration(microseconds(1001)) == "1001us");
  CHECK(FormatDuration(milliseconds(10)) == "10ms");
  CHECK(FormatDuration(milliseconds(1500)) == "1500ms");
  CHECK(FormatDuration(seconds(1)) == "1s");
  CHECK(FormatDuration(seconds(90)) == "90s");
  CHECK(FormatDuration(seconds(120)) == "2m");
  CHECK(FormatDuration(minutes(90)) == "90m");
  CHECK(FormatDuration(hours(1)) == "1h");
  CHECK(FormatDuration(hours(25)) == "25h");
}

TEST_CASE("duration: FormatDuration output parses back to the same duration") {
  const int64_t max = std::numeric_limits<int64_t>::max();
  std::vector<microseconds> values = {microseconds(0),
                                      microseconds(1),
                                      microseconds(999),
                                      milliseconds(1),
                                      milliseconds(999),
                                      seconds(59),
                                      minutes(59),
                                      hours(1),
                                      hours(100000),
                                      microseconds(max),
                                      seconds(max / 1'000'000)};
  const uint32_t seed = 77;
  MESSAGE("seed = ", seed);
  std::mt19937_64 rng(seed);
  const int64_t scales[] = {1, 1000, 1'000'000, 60'000'000, 3'600'000'000};
  for (int i = 0; i < 1000; ++i) {
    int64_t scale = scales[rng() % 5];
    auto n = static_cast<int64_t>(rng() % static_cast<uint64_t>(max / scale));
    values.push_back(microseconds(n * scale));
  }
  for (microseconds d : values) {
    CAPTURE(d.count());
    std::string text = FormatDuration(d);
    auto back = ParseDuration(text);
    REQUIRE(back.ok());
    CHECK(back.value() == d);
  }
}
