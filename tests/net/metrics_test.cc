// The Prometheus endpoint: the exposition rendered from STATS, the HTTP responder,
// and a scrape of a live in-process server.

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "net/http.h"
#include "net/metrics.h"
#include "net/metrics_server.h"
#include "support/http_client.h"
#include "support/test_server.h"

using namespace conv;
using net::FrameType;
using testing::Record;
using testing::WaitForAck;
using testing::WriteFrame;

namespace {

// Sample lines ("name{labels} value") of an exposition, by series.
std::map<std::string, std::string> Samples(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    size_t sp = line.rfind(' ');
    out[line.substr(0, sp)] = line.substr(sp + 1);
  }
  return out;
}

// Checks the text format's rules the scraper relies on: each family has one TYPE line,
// before its samples, and its samples are together.
void CheckWellFormed(const std::string& text) {
  std::istringstream in(text);
  std::string line, family;
  std::map<std::string, int> typed;
  std::vector<std::string> seen_families;
  while (std::getline(in, line)) {
    REQUIRE_FALSE(line.empty());
    if (line.starts_with("# HELP ")) continue;
    if (line.starts_with("# TYPE ")) {
      std::istringstream t(line.substr(7));
      std::string name, type;
      t >> name >> type;
      CHECK_MESSAGE(++typed[name] == 1, "family typed twice: ", name);
      CHECK((type == "counter" || type == "gauge" || type == "histogram" || type == "untyped"));
      family = name;
      continue;
    }
    REQUIRE_MESSAGE(!family.empty(), "a sample before any TYPE: ", line);
    std::string series = line.substr(0, line.find_first_of("{ "));
    bool belongs = series == family || series == family + "_bucket" || series == family + "_sum" ||
                   series == family + "_count";
    CHECK_MESSAGE(belongs, "sample '", line, "' is not in family ", family);
    std::string value = line.substr(line.rfind(' ') + 1);
    CHECK_MESSAGE(value.find_first_not_of("0123456789.e+-") == std::string::npos, line);
  }
}

net::StatList SomeStats() {
  return {{"ops_in", 12},
          {"ops_applied", 10},
          {"asserts", 6},
          {"patches", 3},
          {"retracts", 1},
          {"entities", 5},
          {"window_ops", 10},
          {"claim_changes", 4},
          {"wal_fsyncs", 3},
          {"wal_fsync_us", 900},
          {"window_us", 10'000},
          {"errors_bad_value", 2},
          {"errors_unknown_schema", 0},
          {"some_new_counter", 7}};
}

}  // namespace

TEST_CASE("metrics: STATS counters render as Prometheus families with kinds and codes as labels") {
  net::MetricsSnapshot snap;
  snap.stats = SomeStats();
  snap.build_info = {{"version", "1.2.3"}, {"commit", "abc\"d"}, {"build_type", "Release"}};
  std::string text = net::RenderMetrics(snap);
  CheckWellFormed(text);
  auto s = Samples(text);
  CHECK(s["convergence_ops_total{kind=\"assert\"}"] == "6");
  CHECK(s["convergence_ops_total{kind=\"patch\"}"] == "3");
  CHECK(s["convergence_ops_total{kind=\"retract\"}"] == "1");
  CHECK(s["convergence_ops_received_total"] == "12");
  CHECK(s["convergence_entities"] == "5");
  CHECK(s["convergence_window_seconds"] == "0.01");
  CHECK(s["convergence_errors_total{code=\"bad_value\"}"] == "2");
  CHECK(s["convergence_errors_total{code=\"unknown_schema\"}"] == "0");
  CHECK(s["convergence_coalescing_ratio"] == "2.5");
  CHECK(s["convergence_build_info{version=\"1.2.3\",commit=\"abc\\\"d\",build_type=\"Release\"}"] ==
        "1");
  // Not in the table: still exported, untyped, under its STATS name.
  CHECK(s["convergence_some_new_counter"] == "7");
  CHECK(text.find("# TYPE convergence_some_new_counter untyped") != std::string::npos);
  CHECK(text.find("# TYPE convergence_ops_total counter") != std::string::npos);
  CHECK(text.find("# TYPE convergence_entities gauge") != std::string::npos);
}

TEST_CASE("metrics: the fdatasync histogram has cumulative le buckets, +Inf equal to its count") {
  net::MetricsSnapshot snap;
  snap.stats = SomeStats();
  // 50us, 300us, 300us, 2ms and 3s: buckets le=0.0001, le=0.0005 (x2), le=0.0025, +Inf.
  snap.wal_writer.fsync_buckets[0] = 1;
  snap.wal_writer.fsync_buckets[2] = 2;
  snap.wal_writer.fsync_buckets[4] = 1;
  snap.wal_writer.fsync_buckets.back() = 1;
  snap.wal_writer.fsync_ns = 3'002'650'000;
  std::string text = net::RenderMetrics(snap);
  CheckWellFormed(text);
  auto s = Samples(text);
  const std::string h = "convergence_wal_fsync_duration_seconds";
  CHECK(text.find("# TYPE " + h + " histogram") != std::string::npos);
  CHECK(s[h + "_bucket{le=\"0.0001\"}"] == "1");
  CHECK(s[h + "_bucket{le=\"0.00025\"}"] == "1");
  CHECK(s[h + "_bucket{le=\"0.0005\"}"] == "3");
  CHECK(s[h + "_bucket{le=\"0.001\"}"] == "3");
  CHECK(s[h + "_bucket{le=\"0.0025\"}"] == "4");
  CHECK(s[h + "_bucket{le=\"2.5\"}"] == "4");
  CHECK(s[h + "_bucket{le=\"+Inf\"}"] == "5");
  CHECK(s[h + "_count"] == "5");
  CHECK(s[h + "_sum"] == "3.00265");
  // wal_fsyncs / wal_fsync_us are the histogram's, not families of their own.
  CHECK(s.count("convergence_wal_fsyncs") == 0);
  CHECK(s.count("convergence_wal_fsync_us") == 0);
}

TEST_CASE("metrics: every STATS counter a server reports has a named metric") {
  testing::TestServer ts;
  std::vector<std::string> unnamed;
  for (const auto& [name, value] : ts.server().Stats()) {
    if (net::MetricFamilyOf(name).empty()) unnamed.push_back(name);
  }
  std::string list;
  for (const auto& n : unnamed)
    list += " " + n;
  CHECK_MESSAGE(unnamed.empty(),
                "STATS counters without a metric (add them to kMetrics in src/net/metrics.cc "
                "and to docs/operations.md):",
                list);
}

TEST_CASE("http: request heads parse, malformed, oversized and partial ones are told apart") {
  net::HttpRequest r;
  CHECK(net::ParseHttpRequest(
            "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nauthorization:  Bearer t \r\n\r\n", 8192,
            &r) == net::HttpParse::kOk);
  CHECK(r.method == "GET");
  CHECK(r.path == "/metrics");
  CHECK(r.authorization == "Bearer t");
  CHECK(net::ParseHttpRequest("GET /metrics HTTP/1.0\n\n", 8192, &r) == net::HttpParse::kOk);
  CHECK(net::ParseHttpRequest("GET /metrics HTTP/1.1\r\nHost: a\r\n", 8192, &r) ==
        net::HttpParse::kNeedMore);
  CHECK(net::ParseHttpRequest("GET /metrics HTTP/1.1\r\nHost: a", 16, &r) ==
        net::HttpParse::kTooLarge);
  CHECK(net::ParseHttpRequest("hello\r\n\r\n", 8192, &r) == net::HttpParse::kBad);
  CHECK(net::ParseHttpRequest("GET metrics HTTP/1.1\r\n\r\n", 8192, &r) == net::HttpParse::kBad);
  CHECK(net::ParseHttpRequest("GET /metrics SPDY/3\r\n\r\n", 8192, &r) == net::HttpParse::kBad);
  CHECK(net::ParseHttpRequest("GET /metrics HTTP/1.1\r\nno colon\r\n\r\n", 8192, &r) ==
        net::HttpParse::kBad);
  std::string resp = net::FormatHttpResponse(404, "text/plain", "nope\n", false, {{"X-A", "b"}});
  CHECK(resp ==
        "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
        "Connection: close\r\nX-A: b\r\n\r\nnope\n");
}

TEST_CASE("http: a bare CR or a NUL in a request head is refused, not kept in a value") {
  net::HttpRequest r;
  // Found by tests/fuzz (http): the head ends at the bare-LF blank line, and the CR
  // before it was kept at the end of the Authorization value.
  CHECK(net::ParseHttpRequest("GET /metrics HTTP/1.0\r\nAuthorization: Bearer t \r\r\n\n", 8192,
                              &r) == net::HttpParse::kBad);
  CHECK(net::ParseHttpRequest("GET /metrics HTTP/1.1\r\nAuthorization: Bearer\rt\r\n\r\n", 8192,
                              &r) == net::HttpParse::kBad);
  CHECK(net::ParseHttpRequest("GET /met\rrics HTTP/1.1\r\n\r\n", 8192, &r) == net::HttpParse::kBad);
  constexpr char kNul[] = "GET /metrics HTTP/1.1\r\nA: \0b\r\n\r\n";
  CHECK(net::ParseHttpRequest(std::string_view(kNul, sizeof kNul - 1), 8192, &r) ==
        net::HttpParse::kBad);
  // A CR that ends a line stays fine, also before a bare-LF blank line.
  CHECK(net::ParseHttpRequest("GET /metrics HTTP/1.1\r\nAuthorization: Bearer t\r\n\n", 8192, &r) ==
        net::HttpParse::kOk);
  CHECK(r.authorization == "Bearer t");
}

namespace {

// A MetricsServer on a free loopback port, rendering `ts`'s STATS.
std::unique_ptr<net::MetricsServer> StartMetrics(testing::TestServer& ts, util::Logger& log,
                                                 const std::string& token = "",
                                                 const std::string& listen = "127.0.0.1:0") {
  net::MetricsServerOptions o;
  o.listen = listen;
  o.bearer_token = token;
  o.request_timeout = std::chrono::milliseconds(2'000);
  auto m = std::make_unique<net::MetricsServer>(
      o,
      [&ts] {
        net::MetricsSnapshot snap;
        snap.stats = ts.server().Stats();
        snap.wal_writer = ts.engine().Stats().wal.writer;
        return net::RenderMetrics(snap);
      },
      log);
  auto st = m->Listen();
  REQUIRE_MESSAGE(st.ok(), st.message());
  m->Start();
  return m;
}

}  // namespace

TEST_CASE("metrics: scraping /metrics shows ops by kind, errors by code and connections") {
  testing::TestServer ts;
  util::Logger log(util::LogLevel::kWarn);
  auto metrics = StartMetrics(ts, log);

  auto w = ts.Connect("game-1");
  const engine::Schema& p = *w->FindSchema("player");
  std::string frames =
      WriteFrame(FrameType::kAssert, 1, 0, engine::kPlayerSchemaId, "p-1", Record(p, {{"x", 1.5}}));
  frames +=
      WriteFrame(FrameType::kPatch, 2, 0, engine::kPlayerSchemaId, "p-1", Record(p, {{"x", 2.5}}));
  frames += WriteFrame(FrameType::kAssert, 3, 0, 999, "p-2", Record(p, {}));  // unknown schema
  REQUIRE(w->Send(frames).ok());
  REQUIRE(WaitForAck(*w, 3));

  auto r = testing::HttpGet(metrics->port(), "/metrics");
  REQUIRE_MESSAGE(r.ok(), r.message());
  CHECK(r->status == 200);
  CHECK(r->Header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8");
  CHECK(r->Header("Content-Length") == std::to_string(r->body.size()));
  CheckWellFormed(r->body);
  auto s = Samples(r->body);
  CHECK(s["convergence_ops_total{kind=\"assert\"}"] == "1");
  CHECK(s["convergence_ops_total{kind=\"patch\"}"] == "1");
  CHECK(s["convergence_ops_total{kind=\"retract\"}"] == "0");
  CHECK(s["convergence_errors_total{code=\"unknown_schema\"}"] == "1");
  CHECK(s["convergence_errors_total{code=\"bad_frame\"}"] == "0");
  CHECK(s["convergence_entities"] == "1");
  CHECK(s["convergence_sources"] == "1");
  CHECK(s["convergence_connections"] == "1");
  CHECK(s.count("convergence_wal_batches_total") == 1);
  CHECK(s.count("convergence_wal_bytes_total") == 1);
  CHECK(s.count("convergence_wal_fsync_duration_seconds_bucket{le=\"+Inf\"}") == 1);
  CHECK(s.count("convergence_coalescing_ratio") == 1);

  // HEAD: the same headers, no body.
  auto head = testing::HttpExchange(metrics->port(), "HEAD /metrics HTTP/1.1\r\n\r\n");
  REQUIRE(head.ok());
  CHECK(head->status == 200);
  CHECK(head->body.empty());
  metrics->Stop();
}

TEST_CASE("metrics: other paths are 404, other methods 405, garbage 400, huge heads 431") {
  testing::TestServer ts;
  util::Logger log(util::LogLevel::kWarn);
  auto metrics = StartMetrics(ts, log);
  uint16_t port = metrics->port();

  auto root = testing::HttpGet(port, "/");
  REQUIRE(root.ok());
  CHECK(root->status == 404);
  auto post = testing::HttpExchange(port, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
  REQUIRE(post.ok());
  CHECK(post->status == 405);
  CHECK(post->Header("Allow") == "GET, HEAD");
  auto bad = testing::HttpExchange(port, "BLAH\r\n\r\n");
  REQUIRE(bad.ok());
  CHECK(bad->status == 400);
  std::string huge = "GET /metrics HTTP/1.1\r\nX-Pad: " + std::string(20'000, 'a') + "\r\n\r\n";
  auto big = testing::HttpExchange(port, huge);
  REQUIRE_MESSAGE(big.ok(), big.message());
  CHECK(big->status == 431);
  // Still serving after all that.
  auto ok = testing::HttpGet(port, "/metrics");
  REQUIRE(ok.ok());
  CHECK(ok->status == 200);
}

TEST_CASE("metrics: with a token, a scrape without the bearer token gets 401") {
  testing::TestServer ts;
  util::Logger log(util::LogLevel::kWarn);
  auto metrics = StartMetrics(ts, log, "s3cret");
  auto none = testing::HttpGet(metrics->port(), "/metrics");
  REQUIRE(none.ok());
  CHECK(none->status == 401);
  CHECK(none->Header("WWW-Authenticate").starts_with("Bearer"));
  auto wrong = testing::HttpGet(metrics->port(), "/metrics", "s3cre");
  REQUIRE(wrong.ok());
  CHECK(wrong->status == 401);
  auto right = testing::HttpGet(metrics->port(), "/metrics", "s3cret");
  REQUIRE(right.ok());
  CHECK(right->status == 200);
  CHECK(right->body.find("convergence_ops_total") != std::string::npos);
}

TEST_CASE("metrics: a non-loopback address is refused without a token") {
  testing::TestServer ts;
  util::Logger log(util::LogLevel::kWarn);
  net::MetricsServerOptions o;
  o.listen = "0.0.0.0:0";
  net::MetricsServer m(
      o, [] { return std::string(); }, log);
  auto st = m.Listen();
  REQUIRE_FALSE(st.ok());
  CHECK(st.message().find("without authentication") != std::string::npos);
  o.listen = "nohost";
  net::MetricsServer bad(
      o, [] { return std::string(); }, log);
  CHECK_FALSE(bad.Listen().ok());
}

TEST_CASE("metrics: a client that never finishes its request is dropped after the timeout") {
  testing::TestServer ts;
  util::Logger log(util::LogLevel::kWarn);
  net::MetricsServerOptions o;
  o.listen = "127.0.0.1:0";
  o.request_timeout = std::chrono::milliseconds(200);
  net::MetricsServer m(
      o, [] { return std::string("x 1\n"); }, log);
  REQUIRE(m.Listen().ok());
  m.Start();
  auto start = std::chrono::steady_clock::now();
  auto r = testing::HttpExchange(m.port(), "GET /metrics HTTP/1.1\r\n");  // no blank line
  // The server closes without a reply: not an HTTP response.
  CHECK_FALSE(r.ok());
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
  m.Stop();
}
