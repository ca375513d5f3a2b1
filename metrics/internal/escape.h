// Escaping for each report format. Every string that came from the database is
// user input (scenario names, reasons, checker output) and goes through these.
#pragma once

#include <string>
#include <string_view>

namespace patchlab::metrics::internal {

// &, <, >, " and ' as entities; control characters other than \n and \t dropped
// (they are not allowed in XML 1.0 at all, and mean nothing in HTML).
std::string HtmlEscape(std::string_view text);
inline std::string XmlEscape(std::string_view text) { return HtmlEscape(text); }
// A label value in Prometheus/OpenMetrics text: backslash, double quote, newline.
std::string PromLabelEscape(std::string_view text);
// A Markdown table cell: pipes, backticks, brackets and angle brackets escaped,
// newlines folded to spaces, so user text cannot break the table or inject links.
std::string MarkdownCell(std::string_view text);
// A relative URL for a file path (percent-encodes what a href cannot carry).
std::string PathHref(std::string_view path);

}  // namespace patchlab::metrics::internal
