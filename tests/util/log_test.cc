// The leveled logger: one line per event, text or JSON.

#include <doctest/doctest.h>

#include <cstdio>
#include <string>

#include "support/json_value.h"
#include "util/log.h"

using namespace conv;

namespace {

constexpr int64_t kMillis = 1'714'564'800'123;  // 2024-05-01T12:00:00.123Z

std::string ReadAll(std::FILE* f) {
  std::rewind(f);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0)
    out.append(buf, n);
  return out;
}

}  // namespace

TEST_CASE("log: a text line is time, level and message, with line breaks escaped") {
  CHECK(util::FormatLogLine(util::LogFormat::kText, util::LogLevel::kWarn, kMillis,
                            "disk full: retrying") ==
        "2024-05-01T12:00:00.123Z warn disk full: retrying\n");
  CHECK(util::FormatLogLine(util::LogFormat::kText, util::LogLevel::kInfo, kMillis,
                            "two\nlines\tand \\ a \x01") ==
        "2024-05-01T12:00:00.123Z info two\\nlines\\tand \\\\ a \\x01\n");
}

TEST_CASE("log: a JSON line is one object with ts, level and msg") {
  std::string line = util::FormatLogLine(util::LogFormat::kJson, util::LogLevel::kError, kMillis,
                                         "bad \"quote\"\nnext line \xff");
  REQUIRE(line.back() == '\n');
  CHECK(line.find('\n') == line.size() - 1);
  auto v = testing::ParseJson(std::string_view(line).substr(0, line.size() - 1));
  REQUIRE(v.has_value());
  REQUIRE(v->is(testing::JsonValue::Kind::kObject));
  CHECK(v->object.size() == 3);
  CHECK(v->Get("ts")->string == "2024-05-01T12:00:00.123Z");
  CHECK(v->Get("level")->string == "error");
  CHECK(v->Get("msg")->string.starts_with("bad \"quote\"\nnext line "));
}

TEST_CASE("log: levels below the logger's are dropped, the format applies to every line") {
  std::FILE* sink = std::tmpfile();
  REQUIRE(sink != nullptr);
  {
    util::Logger log(util::LogLevel::kInfo, util::LogFormat::kJson, sink);
    log.Debug("hidden {}", 1);
    log.Info("shown {}", 2);
    log.Warn("also {}", "shown");
    log.SetLevel(util::LogLevel::kOff);
    log.Error("gone");
  }
  std::string out = ReadAll(sink);
  std::fclose(sink);
  size_t first = out.find('\n');
  REQUIRE(first != std::string::npos);
  REQUIRE(out.find('\n', first + 1) == out.size() - 1);  // exactly two lines
  auto a = testing::ParseJson(out.substr(0, first));
  auto b = testing::ParseJson(out.substr(first + 1, out.size() - first - 2));
  REQUIRE(a.has_value());
  REQUIRE(b.has_value());
  CHECK(a->Get("level")->string == "info");
  CHECK(a->Get("msg")->string == "shown 2");
  CHECK(b->Get("level")->string == "warn");
  CHECK(b->Get("msg")->string == "also shown");
}

TEST_CASE("log: level and format names parse, others do not") {
  CHECK(util::ParseLogFormat("json") == util::LogFormat::kJson);
  CHECK(util::ParseLogFormat("text") == util::LogFormat::kText);
  CHECK_FALSE(util::ParseLogFormat("xml").has_value());
  CHECK(util::ParseLogLevel("warn") == util::LogLevel::kWarn);
  CHECK_FALSE(util::ParseLogLevel("verbose").has_value());
}
