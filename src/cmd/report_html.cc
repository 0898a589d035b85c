// The HTML form of the reports: one self-contained page (inline CSS and SVG, no
// script, nothing fetched) per load run or bench.

#include <fmt/format.h>

#include <algorithm>
#include <optional>

#include "cmd/report.h"

namespace conv::cmd {

namespace {

struct RateKind {
  const char* id;
  const char* what;  // RateSeries::what, the chart's y label
  const char* title;
  uint64_t LoadSample::*count;
};
constexpr RateKind kRateKinds[] = {
    {"acked", "ops acknowledged/s", "Write throughput over time", &LoadSample::acked},
    {"queries", "queries/s", "Point reads over time", &LoadSample::queries},
    {"changes", "changes notified/s", "Notifications over time (all subscribers)",
     &LoadSample::changes},
    {"snapshot", "snapshot entities/s", "Bootstrap entities received over time",
     &LoadSample::snapshot_entries},
};

struct LatencyKind {
  const char* id;
  const char* title;
  const char* x_label;
  TargetPlot plot;
  const util::Histogram LoadReport::*histogram;
  double divisor;  // of the recorded unit, to the plotted one
};
constexpr LatencyKind kLatencyKinds[] = {
    {"ack", "ACK latency (op generated → its ACK), CDF", "ms", TargetPlot::kAckCdf,
     &LoadReport::ack_latency_ns, 1e6},
    {"notify", "Notification latency (change ts → received), CDF", "ms", TargetPlot::kNotifyCdf,
     &LoadReport::notify_latency_us, 1e3},
    {"query", "QUERY round trip, CDF", "µs", TargetPlot::kGauge, &LoadReport::query_ns, 1e3},
};

constexpr const char* kStyle =
    "body{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222;line-height:1.45}"
    "table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
    "text-align:left;font-size:14px}th{background:#f3f3f3}svg{display:block;margin:1em 0}"
    ".met{color:#2a9d2a}.missed{color:#d62728;font-weight:bold}.failed{color:#d62728}"
    "h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}";

std::string Html(const Table& t) {
  std::string out;
  if (!t.caption.empty()) out += "<p>" + HtmlEscape(t.caption) + "</p>";
  out += "<table><tr>";
  for (const auto& h : t.header)
    out += "<th>" + HtmlEscape(h) + "</th>";
  out += "</tr>";
  for (const auto& row : t.rows) {
    out += "<tr>";
    for (const auto& c : row)
      out += "<td>" + HtmlEscape(c) + "</td>";
    out += "</tr>";
  }
  return out + "</table>";
}

std::string Page(std::string_view title, const std::string& body) {
  return fmt::format(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{0}</title>"
      "<style>{1}</style></head>\n<body><h1>{0}</h1>\n{2}</body></html>\n",
      HtmlEscape(title), kStyle, body);
}

std::optional<Chart> RateChart(const ScenarioResult& s, const RateKind& kind) {
  Chart c{s.name + "-" + kind.id,
          kind.title,
          "seconds since the run started",
          kind.what,
          ChartKind::kTimeSeries,
          {},
          {},
          {}};
  for (const BenchRun& run : s.runs) {
    if (!run.ok()) continue;
    for (RateSeries& rs : RateSeriesOf(run.report)) {
      if (rs.what == kind.what) c.series.push_back({run.label, std::move(rs.points)});
    }
  }
  if (c.series.empty()) return std::nullopt;
  if (kind.count == &LoadSample::acked) {
    for (const TargetResult& t : s.targets) {
      if (t.plot == TargetPlot::kThroughput) c.lines.push_back({t.text, t.plot_value, t.met});
    }
  }
  return c;
}

std::optional<Chart> LatencyChart(const ScenarioResult& s, const LatencyKind& kind) {
  Chart c{s.name + "-cdf-" + kind.id,
          kind.title,
          kind.x_label,
          "fraction of samples at most",
          ChartKind::kCdf,
          {},
          {},
          {}};
  for (const BenchRun& run : s.runs) {
    if (!run.ok() || (run.report.*kind.histogram).count() == 0) continue;
    c.series.push_back({run.label, CdfOf(run.report.*kind.histogram, kind.divisor)});
  }
  if (c.series.empty()) return std::nullopt;
  // One line per limit (several runs are held to the same one): missed if any missed.
  for (const TargetResult& t : s.targets) {
    if (t.plot != kind.plot || kind.plot == TargetPlot::kGauge) continue;
    std::string label = fmt::format("target p99 ≤ {}{}", t.limit, t.unit);
    auto same = std::find_if(c.lines.begin(), c.lines.end(),
                             [&](const ChartLine& l) { return l.label == label; });
    if (same == c.lines.end()) {
      c.lines.push_back({label, t.plot_value, t.met});
    } else {
      same->met = same->met && t.met;
    }
  }
  return c;
}

std::string TargetItem(const TargetResult& t) {
  return fmt::format("<li>{}{}: {:.{}f}{} against {}{} <span class=\"{}\">{}</span></li>",
                     HtmlEscape(t.text), HtmlEscape(t.run.empty() ? "" : ", " + t.run), t.value,
                     t.decimals, HtmlEscape(t.unit), t.limit, HtmlEscape(t.unit),
                     t.met ? "met" : "missed", t.met ? "met" : "missed");
}

std::string ScenarioHtml(const ScenarioResult& s) {
  std::string out =
      "<section id=\"" + HtmlEscape(s.name) + "\"><h2>" + HtmlEscape(s.title) + "</h2>\n";
  if (!s.intro.empty()) out += "<p>" + HtmlEscape(s.intro) + "</p>\n";
  for (const BenchRun& run : s.runs) {
    if (!s.load_tables || !run.ok()) continue;
    for (const Table& t : LoadTables(run.options, run.report))
      out += Html(t) + "\n";
  }
  for (const Table& t : s.tables)
    out += Html(t) + "\n";
  for (const std::string& f : s.failures)
    out += "<p class=\"failed\">" + HtmlEscape(f) + "</p>\n";
  for (const Chart& c : ScenarioCharts(s))
    out += RenderSvg(c) + "\n";
  if (!s.targets.empty()) {
    out += "<h3>Targets</h3><ul>";
    for (const TargetResult& t : s.targets)
      out += TargetItem(t);
    out += "</ul>\n";
  }
  for (const std::string& note : s.notes)
    out += "<p>" + HtmlEscape(note) + "</p>\n";
  if (!s.outro.empty()) out += "<p>" + HtmlEscape(s.outro) + "</p>\n";
  return out + "</section>\n";
}

// One load run as a scenario of one run, so that it is drawn as bench's are.
ScenarioResult LoadScenario(const LoadOptions& o, const LoadReport& r) {
  ScenarioResult s;
  s.name = "load";
  s.title = fmt::format("convergence load against {}", o.server);
  s.load_tables = true;
  std::string label =
      fmt::format("{} writers, {} readers, {} subscribers", o.workers, o.readers, o.subscribers);
  s.runs.push_back({label, "", "", {}, o, r, ""});
  s.notes = LoadErrorLines(r);
  return s;
}

}  // namespace

std::vector<RateSeries> RateSeriesOf(const LoadReport& r) {
  std::vector<RateSeries> out;
  for (const RateKind& kind : kRateKinds) {
    if (r.timeline.empty() || r.timeline.back().*kind.count == 0) continue;
    RateSeries s{kind.what, {}};
    const auto& tl = r.timeline;
    for (size_t i = 1; i < tl.size(); ++i) {
      const LoadSample& a = tl[i - 1];
      const LoadSample& b = tl[i];
      if (b.t <= a.t) continue;
      // The closing sample (taken when the run ended) may follow the one before by a
      // sliver of an interval: a rate over it would be mostly noise.
      if (i + 1 == tl.size() && i >= 2 && b.t - a.t < (a.t - tl[i - 2].t) / 2) continue;
      s.points.emplace_back(b.t, static_cast<double>(b.*kind.count - a.*kind.count) / (b.t - a.t));
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<std::pair<double, double>> CdfOf(const util::Histogram& h, double divisor) {
  std::vector<std::pair<double, double>> out;
  uint64_t seen = 0;
  double n = static_cast<double>(h.count());
  h.ForEachBucket([&](uint64_t value, uint64_t count) {
    seen += count;
    out.emplace_back(static_cast<double>(value) / divisor, static_cast<double>(seen) / n);
  });
  return out;
}

std::vector<Chart> ScenarioCharts(const ScenarioResult& s) {
  std::vector<Chart> out;
  for (const RateKind& kind : kRateKinds) {
    if (auto c = RateChart(s, kind)) out.push_back(std::move(*c));
  }
  for (const LatencyKind& kind : kLatencyKinds) {
    if (auto c = LatencyChart(s, kind)) out.push_back(std::move(*c));
  }
  if (s.targets.empty()) return out;
  Chart g{s.name + "-targets",
          "Targets (bar: measured; black line: the limit)",
          "",
          "",
          ChartKind::kGauge,
          {},
          {},
          {}};
  for (const TargetResult& t : s.targets) {
    g.gauges.push_back({t.text + (t.run.empty() ? "" : ", " + t.run),
                        fmt::format("{:.{}f}{} ({} {}{})", t.value, t.decimals, t.unit,
                                    t.at_most ? "≤" : "≥", t.limit, t.unit),
                        t.value, t.limit, t.met});
  }
  out.push_back(std::move(g));
  return out;
}

std::vector<Chart> LoadCharts(const LoadOptions& o, const LoadReport& r) {
  return ScenarioCharts(LoadScenario(o, r));
}

std::string LoadHtml(const LoadOptions& o, const LoadReport& r) {
  return Page("convergence load", ScenarioHtml(LoadScenario(o, r)));
}

std::string BenchHtml(const BenchResult& b) {
  Table head = BenchHeader(b);
  std::string body = Html(head) + "\n";
  for (const ScenarioResult& s : b.scenarios)
    body += ScenarioHtml(s);
  return Page("convergence performance", body);
}

}  // namespace conv::cmd
