// The load and bench reports rendered from known result structs: what the HTML
// charts plot (read back from the SVG coordinates), and escaping in every format.

#include "cmd/report.h"

#include <doctest/doctest.h>

#include <cmath>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include "cmd/chart.h"
#include "support/json_value.h"

using conv::cmd::Chart;
using conv::cmd::LoadOptions;
using conv::cmd::LoadReport;

namespace {

using Points = std::vector<std::pair<double, double>>;

// The <svg> element of the chart `id` in an HTML page.
std::string SvgOf(const std::string& html, const std::string& id) {
  size_t at = html.find("data-chart=\"" + id + "\"");
  REQUIRE_MESSAGE(at != std::string::npos, "no chart ", id);
  size_t begin = html.rfind("<svg", at);
  size_t end = html.find("</svg>", at);
  REQUIRE(begin != std::string::npos);
  REQUIRE(end != std::string::npos);
  return html.substr(begin, end - begin);
}

// The pixel coordinates of the polyline of `series` in an <svg>.
Points PolylinePixels(const std::string& svg, const std::string& series) {
  std::smatch m;
  std::regex re("<polyline data-series=\"" + series + "\"[^>]*points=\"([^\"]*)\"");
  REQUIRE_MESSAGE(std::regex_search(svg, m, re), "no series ", series);
  Points out;
  std::string text = m[1];
  std::regex point("(-?[0-9.]+),(-?[0-9.]+)");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), point);
       it != std::sregex_iterator(); ++it) {
    out.emplace_back(std::stod((*it)[1]), std::stod((*it)[2]));
  }
  return out;
}

const Chart& ChartNamed(const std::vector<Chart>& charts, const std::string& id) {
  for (const Chart& c : charts) {
    if (c.id == id) return c;
  }
  FAIL("no chart ", id);
  return charts.front();
}

// A run with a known timeline (5,000 ops per 0.1 s for 1 s, then nothing for 0.5 s)
// and a known ACK latency: 900 ops at 1 ms, 90 at 10 ms, 10 at 100 ms.
std::pair<LoadOptions, LoadReport> KnownRun() {
  LoadOptions o;
  o.server = "127.0.0.1:9";
  o.workers = 1;
  o.duration = std::chrono::seconds(1);
  LoadReport r;
  r.seconds = 1;
  r.window_us = 10'000;
  conv::cmd::WorkerReport w;
  w.source = "load-1";
  w.sent = w.acked = w.acked_in_time = 50'000;
  r.workers.push_back(w);
  for (int i = 0; i <= 15; ++i) {
    conv::cmd::LoadSample s;
    s.t = 0.1 * i;
    s.acked = 5'000 * static_cast<uint64_t>(std::min(i, 10));
    r.timeline.push_back(s);
  }
  r.ack_latency_ns.Record(1'000'000, 900);
  r.ack_latency_ns.Record(10'000'000, 90);
  r.ack_latency_ns.Record(100'000'000, 10);
  return {o, r};
}

}  // namespace

TEST_CASE("report: throughput over time is the timeline's differences per second") {
  auto [o, r] = KnownRun();
  auto series = conv::cmd::RateSeriesOf(r);
  REQUIRE(series.size() == 1);  // ops only: nothing queried, notified or bootstrapped
  CHECK(series[0].what == "ops acknowledged/s");
  REQUIRE(series[0].points.size() == 15);
  for (size_t i = 0; i < 15; ++i) {
    CAPTURE(i);
    CHECK(series[0].points[i].first == doctest::Approx(0.1 * static_cast<double>(i + 1)));
    CHECK(series[0].points[i].second == doctest::Approx(i < 10 ? 50'000.0 : 0.0));
  }
}

TEST_CASE("report: a latency CDF has one point per bucket, at the fraction of samples up to it") {
  auto [o, r] = KnownRun();
  Points cdf = conv::cmd::CdfOf(r.ack_latency_ns, 1e6);
  REQUIRE(cdf.size() == 3);
  // Buckets are within 1/64 of the value; the last is capped at the maximum.
  CHECK(cdf[0].first == doctest::Approx(1.0).epsilon(1.0 / 64));
  CHECK(cdf[0].second == doctest::Approx(0.9));
  CHECK(cdf[1].first == doctest::Approx(10.0).epsilon(1.0 / 64));
  CHECK(cdf[1].second == doctest::Approx(0.99));
  CHECK(cdf[2].first == doctest::Approx(100.0));
  CHECK(cdf[2].second == doctest::Approx(1.0));
}

TEST_CASE("report: the HTML page plots the run's throughput and ACK latency where the data is") {
  auto [o, r] = KnownRun();
  std::string html = conv::cmd::LoadHtml(o, r);
  std::vector<Chart> charts = conv::cmd::LoadCharts(o, r);
  // Self-contained: nothing fetched, no script.
  CHECK(html.find("<script") == std::string::npos);
  CHECK(html.find("http://") == html.find("http://www.w3.org/2000/svg"));
  CHECK(html.find("https://") == std::string::npos);

  SUBCASE("throughput over time") {
    const Chart& chart = ChartNamed(charts, "load-acked");
    auto [x, y] = conv::cmd::ChartAxes(chart);
    Points px = PolylinePixels(SvgOf(html, "load-acked"), "1 writers, 0 readers, 0 subscribers");
    auto want = conv::cmd::RateSeriesOf(r)[0].points;
    REQUIRE(px.size() == want.size());
    for (size_t i = 0; i < px.size(); ++i) {
      CAPTURE(i);
      // Two decimals of a pixel: well within 0.1% of these axes.
      CHECK(x.FromPx(px[i].first) == doctest::Approx(want[i].first).epsilon(1e-3));
      CHECK(y.FromPx(px[i].second) == doctest::Approx(want[i].second).epsilon(1e-3).scale(1e3));
    }
    CHECK(y.hi >= 50'000);
  }
  SUBCASE("ACK latency CDF on a log axis of ms, quantiles on the nines scale") {
    const Chart& chart = ChartNamed(charts, "load-cdf-ack");
    auto [x, y] = conv::cmd::ChartAxes(chart);
    CHECK(x.log);
    CHECK(x.lo == doctest::Approx(1.0));
    CHECK(x.hi == doctest::Approx(100.0).epsilon(1e-9));
    Points px = PolylinePixels(SvgOf(html, "load-cdf-ack"), "1 writers, 0 readers, 0 subscribers");
    Points want = conv::cmd::CdfOf(r.ack_latency_ns, 1e6);
    REQUIRE(px.size() == want.size());
    for (size_t i = 0; i < px.size(); ++i) {
      CAPTURE(i);
      CHECK(x.FromPx(px[i].first) == doctest::Approx(want[i].first).epsilon(1e-3));
      double q = conv::cmd::QuantileOfNines(y.FromPx(px[i].second));
      // q = 1 is drawn at the top of the scale.
      double want_q = std::min(want[i].second, conv::cmd::QuantileOfNines(conv::cmd::kMaxNines));
      CHECK(q == doctest::Approx(want_q).epsilon(1e-3));
    }
  }
  SUBCASE("the tables carry the same figures") {
    CHECK(html.find("<td>Aggregate throughput</td><td>50K ops/sec</td>") != std::string::npos);
    CHECK(html.find("<td>Acknowledged</td><td>50K (all)</td>") != std::string::npos);
  }
}

TEST_CASE("report: a bench target is a line on its CDF and a gauge against its limit") {
  auto [o, r] = KnownRun();
  conv::cmd::ScenarioResult s;
  s.name = "sat";
  s.title = "Saturation";
  s.runs.push_back({"run a", "", "", {}, o, r, ""});
  conv::cmd::TargetResult t;
  t.text = "ACK latency p99 within 3 windows";
  t.run = "run a";
  t.unit = " ms";
  t.limit = 30;
  t.value = 10.1;
  t.met = true;
  t.plot = conv::cmd::TargetPlot::kAckCdf;
  t.plot_value = 30;
  s.targets.push_back(t);
  conv::cmd::BenchResult b;
  b.scenarios.push_back(s);
  std::string html = conv::cmd::BenchHtml(b);
  std::vector<Chart> charts = conv::cmd::ScenarioCharts(s);
  auto [x, y] = conv::cmd::ChartAxes(ChartNamed(charts, "sat-cdf-ack"));
  std::string svg = SvgOf(html, "sat-cdf-ack");
  std::smatch m;
  REQUIRE(std::regex_search(
      svg, m, std::regex("<line data-target=\"target p99 ≤ 30 ms\" x1=\"([0-9.]+)\"")));
  CHECK(x.FromPx(std::stod(m[1])) == doctest::Approx(30.0).epsilon(1e-3));
  // The gauge: a bar of value / limit, the limit drawn at the middle of the bar area.
  std::string gauges = SvgOf(html, "sat-targets");
  REQUIRE(std::regex_search(
      gauges, m,
      std::regex("data-gauge=\"ACK latency p99 within 3 windows, run a\" x=\"([0-9.]+)\" "
                 "y=\"[0-9.]+\" width=\"([0-9.]+)\"")));
  double bar = std::stod(m[2]);
  double full = conv::cmd::kPlotRight - conv::cmd::kPlotLeft;  // two limits' worth
  CHECK(bar / full * 2 == doctest::Approx(10.1 / 30).epsilon(1e-3));
  CHECK(gauges.find(">10.10 ms (≤ 30 ms)<") != std::string::npos);
  CHECK(conv::cmd::BenchMarkdown(b).find(
            "- ACK latency p99 within 3 windows, run a: 10.10 ms (target ≤ 30 ms: met).") !=
        std::string::npos);
}

TEST_CASE("report: JSON, HTML and Markdown escape a server name with quotes, <, & and a newline") {
  auto [o, r] = KnownRun();
  const std::string evil = "ev\"il <b>&amp;\nname|x";
  o.server = evil;
  r.workers[0].source = evil;
  r.workers[0].first_error = evil;

  auto parsed = conv::testing::ParseJson(conv::cmd::LoadJson(o, r));
  REQUIRE(parsed.has_value());
  REQUIRE(parsed->Get("server") != nullptr);
  CHECK(parsed->Get("server")->string == evil);
  const auto* workers = parsed->Get("per_worker");
  REQUIRE(workers != nullptr);
  REQUIRE(workers->array.size() == 1);
  CHECK(workers->array[0].Get("source")->string == evil);
  CHECK(workers->array[0].Get("first_error")->string == evil);

  std::string html = conv::cmd::LoadHtml(o, r);
  CHECK(html.find("<b>") == std::string::npos);
  CHECK(html.find("ev\"il") == std::string::npos);
  CHECK(html.find("ev&quot;il &lt;b&gt;&amp;amp;\nname|x") != std::string::npos);

  std::string md = conv::cmd::LoadMarkdown(o, r);
  CHECK(md.find("| Server | ev\"il <b>&amp; name\\|x |") != std::string::npos);

  conv::cmd::BenchResult b;
  b.machine.cpu = evil;
  b.build = evil;
  auto bench = conv::testing::ParseJson(conv::cmd::BenchJson(b));
  REQUIRE(bench.has_value());
  CHECK(bench->Get("machine")->Get("cpu")->string == evil);
  CHECK(conv::cmd::BenchHtml(b).find("<b>") == std::string::npos);
}

TEST_CASE("report: Human rounds the same way everywhere") {
  CHECK(conv::cmd::Human(950) == "950");
  CHECK(conv::cmd::Human(1'500) == "1.5K");
  CHECK(conv::cmd::Human(12'345) == "12K");
  CHECK(conv::cmd::Human(100'000) == "100K");
  CHECK(conv::cmd::Human(2'984'000) == "2.98M");
  CHECK(conv::cmd::Human(1.2e9) == "1.20G");
}
