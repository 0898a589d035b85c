#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace conv::cmd {

// The SVG charts of the HTML reports: line charts over time, CDFs of latency and
// target gauges, drawn as inline <svg> elements with nothing fetched. Geometry and
// axes are public so that a test can read plotted points back into data.

// Data range [lo, hi] onto pixels [px_lo, px_hi]; a log axis maps log10 of the value
// (lo and hi must then be above 0).
struct Axis {
  double lo = 0;
  double hi = 1;
  double px_lo = 0;
  double px_hi = 1;
  bool log = false;
  double ToPx(double v) const;
  double FromPx(double px) const;
};

// A CDF chart draws quantile q at the height of its "nines", -log10(1 - q)
// (0.9 -> 1, 0.99 -> 2, 0.999 -> 3), capped at kMaxNines so that q = 1 shows.
constexpr double kMaxNines = 5;
double Nines(double q);
double QuantileOfNines(double nines);

enum class ChartKind {
  kTimeSeries,  // x: seconds, y: a rate from 0; lines: horizontal
  kCdf,         // x: latency, log scale; y: quantile on the nines scale; lines: vertical
  kGauge,       // one bar per gauge: value against its limit
};

struct ChartSeries {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (x, y) in data units; CDF y: quantile
};

// A target drawn across the plot at `value` (x on a CDF, y on a time series).
struct ChartLine {
  std::string label;
  double value = 0;
  bool met = true;
};

// A target as a bar: its value against its limit, the limit drawn as a line.
struct Gauge {
  std::string label;  // what and where
  std::string text;   // value and limit as printed
  double value = 0;
  double limit = 0;
  bool met = true;
};

struct Chart {
  std::string id;  // the svg's data-chart attribute
  std::string title;
  std::string x_label;
  std::string y_label;
  ChartKind kind = ChartKind::kTimeSeries;
  std::vector<ChartSeries> series;
  std::vector<ChartLine> lines;
  std::vector<Gauge> gauges;
};

// Every chart's plot area, in SVG pixels.
constexpr double kChartWidth = 900;
constexpr double kChartHeight = 320;
constexpr double kPlotLeft = 80;
constexpr double kPlotRight = 650;
constexpr double kPlotTop = 36;
constexpr double kPlotBottom = 270;

// The x and y axes `chart` is drawn with (kTimeSeries and kCdf), from its series and
// lines. A CDF's y axis is in nines.
std::pair<Axis, Axis> ChartAxes(const Chart& chart);
// Text escaped for HTML (and SVG) element content and attribute values.
std::string HtmlEscape(std::string_view s);

// One <svg> element. Each series is a <polyline data-series="NAME" points="x,y ...">
// with its points in order, each target line a <line data-target="LABEL">.
std::string RenderSvg(const Chart& chart);

}  // namespace conv::cmd
