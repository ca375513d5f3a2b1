#include "metrics/internal/svg_chart.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "metrics/internal/escape.h"

namespace patchlab::metrics::internal {
namespace {

constexpr double kWidth = 960;
constexpr double kLabelWidth = 330;
constexpr double kRight = 40;
constexpr double kRowHeight = 22;
constexpr double kTop = 34;
constexpr double kAxis = 34;
constexpr const char* kGood = "#2f7d4f";
constexpr const char* kBad = "#c0392b";
constexpr const char* kNeutral = "#3b6ea8";

// A "nice" step (1, 2 or 5 times a power of ten) giving about `ticks` ticks.
double NiceStep(double span, int ticks) {
  if (span <= 0) return 1;
  double raw = span / ticks;
  double power = std::pow(10, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * power >= raw) return m * power;
  }
  return 10 * power;
}

struct Scale {
  double lo, hi, x0, x1;
  double operator()(double v) const {
    return x0 + (std::clamp(v, lo, hi) - lo) / (hi - lo) * (x1 - x0);
  }
};

Scale MakeScale(double lo, double hi, double x0, double x1) {
  if (hi - lo < 1e-12) hi = lo + 1;
  double step = NiceStep(hi - lo, 6);
  return Scale{std::floor(lo / step) * step, std::ceil(hi / step) * step, x0, x1};
}

std::string Axis(const Scale& s, double y, const std::string& unit) {
  std::string out = fmt::format(
      "<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#888\"/>\n", s.x0, y,
      s.x1, y);
  double step = NiceStep(s.hi - s.lo, 6);
  for (double v = s.lo; v <= s.hi + step / 2; v += step) {
    double x = s(v);
    double shown = std::fabs(v) < step / 1e6 ? 0 : v;
    out += fmt::format(
        "<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\" stroke=\"#888\"/>"
        "<text x=\"{0:.1f}\" y=\"{3:.1f}\" font-size=\"11\" text-anchor=\"middle\">{4:g}</text>\n",
        x, y, y + 4, y + 16, shown);
  }
  out += fmt::format(
      "<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"11\" text-anchor=\"end\">{}</text>\n", s.x1,
      y + 30, HtmlEscape(unit));
  return out;
}

std::string Open(double height, const std::string& title) {
  return fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"{0:.0f}\" "
      "height=\"{1:.0f}\" "
      "viewBox=\"0 0 {0:.0f} {1:.0f}\" font-family=\"sans-serif\" role=\"img\" "
      "aria-label=\"{2}\">\n"
      "<title>{2}</title>\n<text x=\"4\" y=\"18\" font-size=\"14\" "
      "font-weight=\"bold\">{2}</text>\n",
      kWidth, height, HtmlEscape(title));
}

std::string LimitLine(const Scale& s, std::optional<double> limit, double y0, double y1) {
  if (!limit) return "";
  double x = s(*limit);
  return fmt::format(
      "<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\" stroke=\"{3}\" "
      "stroke-dasharray=\"5,3\"/>"
      "<text x=\"{0:.1f}\" y=\"{4:.1f}\" font-size=\"11\" fill=\"{3}\" "
      "text-anchor=\"middle\">limit {5:g}</text>\n",
      x, y0, y1, kBad, y0 - 3, *limit);
}

}  // namespace

std::string HorizontalChart(const std::string& title, const std::vector<ChartRow>& rows,
                            const std::string& unit, std::optional<double> limit) {
  double lo = 0, hi = 0;
  for (const ChartRow& r : rows) {
    for (const auto& v : {r.value, r.low, r.high}) {
      if (v) {
        lo = std::min(lo, *v);
        hi = std::max(hi, *v);
      }
    }
  }
  if (limit) hi = std::max(hi, *limit);
  Scale s = MakeScale(lo, hi * 1.05, kLabelWidth, kWidth - kRight);
  double plot_bottom =
      kTop + 8 + kRowHeight * static_cast<double>(std::max<size_t>(rows.size(), 1));
  std::string out = Open(plot_bottom + kAxis + 8, title);
  double zero = s(0);
  for (size_t i = 0; i < rows.size(); ++i) {
    const ChartRow& r = rows[i];
    double y = kTop + 8 + kRowHeight * static_cast<double>(i);
    double mid = y + kRowHeight / 2;
    const char* colour = r.bad ? kBad : kGood;
    out += fmt::format(
        "<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"12\" text-anchor=\"end\">{}</text>\n",
        kLabelWidth - 6, mid + 4, HtmlEscape(r.label));
    if (!r.value) {
      out +=
          fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"11\" fill=\"#888\">n/a</text>\n",
                      zero + 4, mid + 4);
      continue;
    }
    double x = s(*r.value);
    if (r.low && r.high) {
      out += fmt::format(
          "<line x1=\"{0:.1f}\" y1=\"{2:.1f}\" x2=\"{1:.1f}\" y2=\"{2:.1f}\" stroke=\"{3}\" "
          "stroke-width=\"2\"/>"
          "<line x1=\"{0:.1f}\" y1=\"{4:.1f}\" x2=\"{0:.1f}\" y2=\"{5:.1f}\" stroke=\"{3}\"/>"
          "<line x1=\"{1:.1f}\" y1=\"{4:.1f}\" x2=\"{1:.1f}\" y2=\"{5:.1f}\" stroke=\"{3}\"/>"
          "<circle cx=\"{6:.1f}\" cy=\"{2:.1f}\" r=\"4.5\" fill=\"{3}\"/>\n",
          s(*r.low), s(*r.high), mid, colour, mid - 5, mid + 5, x);
    } else {
      out += fmt::format(
          "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"{}\"/>\n",
          std::min(zero, x), y + 4, std::max(std::fabs(x - zero), 1.0), kRowHeight - 8, colour);
    }
    out += fmt::format(
        "<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"10\" fill=\"#333\">{:.3g}</text>\n",
        std::max(x, r.high ? s(*r.high) : x) + 6, mid + 3, *r.value);
  }
  out += fmt::format(
      "<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\" stroke=\"#444\"/>\n", zero,
      kTop + 4, plot_bottom);
  out += LimitLine(s, limit, kTop + 4, plot_bottom);
  out += Axis(s, plot_bottom + 2, unit);
  out += "</svg>\n";
  return out;
}

std::string Histogram(const std::string& title, const std::vector<double>& samples, int bins,
                      const std::string& unit, std::optional<double> limit) {
  constexpr double kPlotHeight = 160;
  double height = kTop + kPlotHeight + kAxis + 12;
  std::string out = Open(height, title);
  if (samples.empty() || bins <= 0) {
    out +=
        "<text x=\"20\" y=\"60\" font-size=\"12\" fill=\"#888\">no samples "
        "recorded</text>\n</svg>\n";
    return out;
  }
  double lo = *std::min_element(samples.begin(), samples.end());
  double hi = *std::max_element(samples.begin(), samples.end());
  // A limit far above every sample would squash them all into the first bin:
  // then the limit is named, not drawn.
  std::optional<double> drawn_limit = limit;
  if (limit && *limit > 2 * hi) {
    drawn_limit.reset();
    out += fmt::format(
        "<text x=\"{:.1f}\" y=\"18\" font-size=\"11\" fill=\"#2f7d4f\" text-anchor=\"end\">"
        "every sample below the limit {:g} {}</text>\n",
        kWidth - kRight, *limit, HtmlEscape(unit));
  }
  if (drawn_limit) hi = std::max(hi, *drawn_limit);
  Scale s = MakeScale(std::min(lo, 0.0), hi * 1.05, 60, kWidth - kRight);
  std::vector<int> counts(static_cast<size_t>(bins), 0);
  double width = (s.hi - s.lo) / bins;
  for (double v : samples) {
    int b = static_cast<int>((v - s.lo) / width);
    counts[static_cast<size_t>(std::clamp(b, 0, bins - 1))]++;
  }
  int most = *std::max_element(counts.begin(), counts.end());
  double base = kTop + kPlotHeight;
  for (int b = 0; b < bins; ++b) {
    int c = counts[static_cast<size_t>(b)];
    if (c == 0) continue;
    double x0 = s(s.lo + width * b), x1 = s(s.lo + width * (b + 1));
    double h = kPlotHeight * c / most;
    bool over = drawn_limit && s.lo + width * (b + 1) > *drawn_limit;
    out += fmt::format(
        "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" "
        "fill=\"{}\"><title>{}</title></rect>\n",
        x0 + 0.5, base - h, std::max(x1 - x0 - 1, 1.0), h, over ? kBad : kNeutral, c);
  }
  out += fmt::format("<text x=\"56\" y=\"{:.1f}\" font-size=\"11\" text-anchor=\"end\">{}</text>\n",
                     kTop + 10, most);
  out += fmt::format("<text x=\"56\" y=\"{:.1f}\" font-size=\"11\" text-anchor=\"end\">0</text>\n",
                     base);
  out += LimitLine(s, drawn_limit, kTop + 4, base);
  out += Axis(s, base + 2, unit);
  out += "</svg>\n";
  return out;
}

}  // namespace patchlab::metrics::internal
