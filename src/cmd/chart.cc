#include "cmd/chart.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace conv::cmd {

namespace {

constexpr const char* kColors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd",
                                   "#8c564b", "#e377c2", "#17becf", "#7f7f7f"};
constexpr const char* kMetColor = "#2a9d2a";
constexpr const char* kMissedColor = "#d62728";
constexpr double kLegendX = kPlotRight + 20;
constexpr double kGaugeRow = 44;

// 1, 2 or 5 times a power of ten, about range / n.
double NiceStep(double range, int n) {
  double raw = range / n;
  double p = std::pow(10, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0}) {
    if (m * p >= raw) return m * p;
  }
  return 10 * p;
}

// 950, 1.5K, 12K, 2.5M (as report.h's Human, which this layer cannot include).
std::string Tick(double v) {
  double a = std::fabs(v);
  if (a >= 1e6) return fmt::format("{:g}M", v / 1e6);
  if (a >= 1e3) return fmt::format("{:g}K", v / 1e3);
  return fmt::format("{:g}", v);
}

std::string NinesTick(int n) {
  static constexpr const char* kTicks[] = {"0%", "90%", "99%", "99.9%", "99.99%", "99.999%"};
  return kTicks[std::clamp(n, 0, static_cast<int>(std::size(kTicks)) - 1)];
}

std::string Text(double x, double y, std::string_view s, const char* anchor = "start",
                 const char* extra = "") {
  return fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"{}\"{}>{}</text>", x, y, anchor,
                     extra, HtmlEscape(s));
}

std::string Frame(const Chart& c, double height) {
  return fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" data-chart=\"{}\" width=\"{:.0f}\" "
      "height=\"{:.0f}\" viewBox=\"0 0 {:.0f} {:.0f}\" font-family=\"sans-serif\" "
      "font-size=\"12\">{}",
      HtmlEscape(c.id), kChartWidth, height, kChartWidth, height,
      Text(kPlotLeft, 20, c.title, "start", " font-size=\"14\" font-weight=\"bold\""));
}

// Grid lines and tick labels of both axes, and the axis titles.
std::string Axes(const Chart& c, const Axis& x, const Axis& y) {
  std::string out;
  auto vtick = [&](double v, const std::string& label) {
    double px = x.ToPx(v);
    out +=
        fmt::format("<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#ddd\"/>",
                    px, kPlotTop, kPlotBottom);
    out += Text(px, kPlotBottom + 16, label, "middle");
  };
  auto htick = [&](double v, const std::string& label) {
    double py = y.ToPx(v);
    out +=
        fmt::format("<line x1=\"{1}\" y1=\"{0:.1f}\" x2=\"{2}\" y2=\"{0:.1f}\" stroke=\"#ddd\"/>",
                    py, kPlotLeft, kPlotRight);
    out += Text(kPlotLeft - 6, py + 4, label, "end");
  };
  if (x.log) {
    for (double v = x.lo; v <= x.hi * 1.0001; v *= 10)
      vtick(v, Tick(v));
  } else {
    double step = NiceStep(x.hi - x.lo, 8);
    for (double v = x.lo; v <= x.hi + step * 1e-6; v += step)
      vtick(v, Tick(v));
  }
  if (c.kind == ChartKind::kCdf) {
    for (int n = 0; n <= static_cast<int>(kMaxNines); ++n)
      htick(n, NinesTick(n));
  } else {
    double step = NiceStep(y.hi - y.lo, 5);
    for (double v = y.lo; v <= y.hi + step * 1e-6; v += step)
      htick(v, Tick(v));
  }
  out += fmt::format(
      "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#888\"/>",
      kPlotLeft, kPlotTop, kPlotRight - kPlotLeft, kPlotBottom - kPlotTop);
  out += Text((kPlotLeft + kPlotRight) / 2, kPlotBottom + 36, c.x_label, "middle");
  out += Text(
      16, (kPlotTop + kPlotBottom) / 2, c.y_label, "middle",
      fmt::format(" transform=\"rotate(-90 16 {:.1f})\"", (kPlotTop + kPlotBottom) / 2).c_str());
  return out;
}

// A legend entry right of the plot: a short line (dashed: a target) and its label.
std::string LegendEntry(double y, const char* color, bool dashed, std::string_view label) {
  return fmt::format(
             "<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"{3}\" "
             "stroke-width=\"{4}\"{5}/>",
             kLegendX, y, kLegendX + 18, color, dashed ? 1.5 : 3,
             dashed ? " stroke-dasharray=\"6 4\"" : "") +
         Text(kLegendX + 24, y + 4, label);
}

std::string Series(const Chart& c, const Axis& x, const Axis& y) {
  std::string out;
  for (size_t i = 0; i < c.series.size(); ++i) {
    const ChartSeries& s = c.series[i];
    const char* color = kColors[i % std::size(kColors)];
    std::string points;
    for (const auto& [vx, vy] : s.points) {
      if (x.log && vx <= 0) continue;
      double py = y.ToPx(c.kind == ChartKind::kCdf ? Nines(vy) : vy);
      if (!points.empty()) points += ' ';
      points += fmt::format("{:.2f},{:.2f}", x.ToPx(vx), py);
    }
    out += fmt::format(
        "<polyline data-series=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.8\" "
        "points=\"{}\"/>",
        HtmlEscape(s.name), color, points);
    out += LegendEntry(kPlotTop + 8 + 18 * static_cast<double>(i), color, false, s.name);
  }
  return out;
}

std::string TargetLines(const Chart& c, const Axis& x, const Axis& y) {
  std::string out;
  double legend_y = kPlotTop + 8 + 18 * static_cast<double>(c.series.size()) + 8;
  for (size_t i = 0; i < c.lines.size(); ++i) {
    const ChartLine& l = c.lines[i];
    const char* color = l.met ? kMetColor : kMissedColor;
    bool vertical = c.kind == ChartKind::kCdf;
    double px = vertical ? x.ToPx(l.value) : y.ToPx(l.value);
    out += fmt::format(
        "<line data-target=\"{}\" x1=\"{:.2f}\" y1=\"{:.2f}\" x2=\"{:.2f}\" y2=\"{:.2f}\" "
        "stroke=\"{}\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\"/>",
        HtmlEscape(l.label), vertical ? px : kPlotLeft, vertical ? kPlotTop : px,
        vertical ? px : kPlotRight, vertical ? kPlotBottom : px, color);
    out += LegendEntry(legend_y + 18 * static_cast<double>(i), color, true, l.label);
  }
  return out;
}

std::string Gauges(const Chart& c) {
  // Bars are drawn in units of their limit: the limit line at 1, bars capped at 2.
  Axis x{0, 2, kPlotLeft, kPlotRight, false};
  std::string out;
  for (size_t i = 0; i < c.gauges.size(); ++i) {
    const Gauge& g = c.gauges[i];
    double top = kPlotTop + kGaugeRow * static_cast<double>(i);
    double ratio = g.limit > 0 ? std::clamp(g.value / g.limit, 0.0, 2.0) : 0;
    out += Text(kPlotLeft, top + 12, g.label);
    out += fmt::format(
        "<rect data-gauge=\"{}\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.2f}\" height=\"16\" "
        "fill=\"{}\"/>",
        HtmlEscape(g.label), x.ToPx(0), top + 18, x.ToPx(ratio) - x.ToPx(0),
        g.met ? kMetColor : kMissedColor);
    out += fmt::format(
        "<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\" stroke=\"#000\" "
        "stroke-width=\"2\"/>",
        x.ToPx(1), top + 15, top + 37);
    out += Text(kPlotRight + 10, top + 31, g.text);
  }
  return out;
}

}  // namespace

double Axis::ToPx(double v) const {
  double a = log ? std::log10(std::max(v, lo)) : v;
  double b0 = log ? std::log10(lo) : lo;
  double b1 = log ? std::log10(hi) : hi;
  return px_lo + (a - b0) / (b1 - b0) * (px_hi - px_lo);
}

double Axis::FromPx(double px) const {
  double b0 = log ? std::log10(lo) : lo;
  double b1 = log ? std::log10(hi) : hi;
  double a = b0 + (px - px_lo) / (px_hi - px_lo) * (b1 - b0);
  return log ? std::pow(10, a) : a;
}

double Nines(double q) {
  if (q >= 1) return kMaxNines;
  return std::min(kMaxNines, -std::log10(1 - std::max(q, 0.0)));
}

double QuantileOfNines(double nines) {
  return 1 - std::pow(10, -nines);
}

std::string HtmlEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

std::pair<Axis, Axis> ChartAxes(const Chart& c) {
  double x_lo = INFINITY, x_hi = -INFINITY, y_hi = 0;
  for (const auto& s : c.series) {
    for (const auto& [x, y] : s.points) {
      if (c.kind == ChartKind::kCdf && x <= 0) continue;
      x_lo = std::min(x_lo, x);
      x_hi = std::max(x_hi, x);
      y_hi = std::max(y_hi, y);
    }
  }
  for (const auto& l : c.lines) {
    if (c.kind == ChartKind::kCdf) {
      x_lo = std::min(x_lo, l.value);
      x_hi = std::max(x_hi, l.value);
    } else {
      y_hi = std::max(y_hi, l.value);
    }
  }
  Axis x{0, 1, kPlotLeft, kPlotRight, false};
  Axis y{0, 1, kPlotBottom, kPlotTop, false};
  if (c.kind == ChartKind::kCdf) {
    x.log = true;
    if (!(x_lo > 0)) x_lo = 1, x_hi = 10;
    x.lo = std::pow(10, std::floor(std::log10(x_lo)));
    x.hi = std::pow(10, std::ceil(std::log10(x_hi)));
    if (x.hi <= x.lo) x.hi = x.lo * 10;
    y.hi = kMaxNines;
    return {x, y};
  }
  x.hi = x_hi > 0 ? x_hi : 1;
  double step = NiceStep(y_hi > 0 ? y_hi * 1.05 : 1, 5);
  y.hi = std::ceil((y_hi > 0 ? y_hi * 1.05 : 1) / step) * step;
  return {x, y};
}

std::string RenderSvg(const Chart& c) {
  if (c.kind == ChartKind::kGauge) {
    double height = kPlotTop + kGaugeRow * static_cast<double>(c.gauges.size()) + 10;
    return Frame(c, height) + Gauges(c) + "</svg>";
  }
  auto [x, y] = ChartAxes(c);
  return Frame(c, kChartHeight) + Axes(c, x, y) + Series(c, x, y) + TargetLines(c, x, y) + "</svg>";
}

}  // namespace conv::cmd
