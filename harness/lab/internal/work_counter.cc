#include "harness/lab/internal/work_counter.h"

#include <cmath>
#include <cstdlib>
#include <regex>

namespace patchlab::harness::internal {
namespace {

Result<double> Number(const std::string& text, const std::string& pattern) {
  const char* begin = text.c_str();
  char* end = nullptr;
  double v = std::strtod(begin, &end);
  if (text.empty() || end != begin + text.size() || !std::isfinite(v) || v < 0) {
    return Fail(ErrorCode::kParse, "'{}' matched by '{}' is not a number", text, pattern);
  }
  return v;
}

Result<std::regex> Compile(const std::string& pattern) {
  try {
    return std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    return Fail(ErrorCode::kParse, "'{}' is not a valid regex: {}", pattern, e.what());
  }
}

}  // namespace

Result<std::optional<uint64_t>> CountWork(const std::string& pattern, std::string_view output) {
  auto re = Compile(pattern);
  if (!re) return std::unexpected(re.error());
  std::optional<uint64_t> total;
  for (std::cregex_iterator it(output.data(), output.data() + output.size(), *re), end; it != end;
       ++it) {
    uint64_t add = 1;
    if (it->size() > 1 && (*it)[1].matched) {
      auto v = Number((*it)[1].str(), pattern);
      if (!v) return std::unexpected(v.error());
      add = static_cast<uint64_t>(std::floor(*v));
    }
    total = total.value_or(0) + add;
    // An empty match would loop forever on one position; the iterator steps
    // past it, but a pattern that only matches empty strings counts nothing.
    if (it->length(0) == 0) return std::optional<uint64_t>();
  }
  return total;
}

Result<std::optional<double>> FirstNumber(const std::string& pattern, std::string_view output) {
  auto re = Compile(pattern);
  if (!re) return std::unexpected(re.error());
  if (re->mark_count() < 1)
    return Fail(ErrorCode::kParse, "'{}' has no capture group for the number", pattern);
  std::cmatch m;
  if (!std::regex_search(output.data(), output.data() + output.size(), m, *re))
    return std::optional<double>();
  auto v = Number(m[1].str(), pattern);
  if (!v) return std::unexpected(v.error());
  return std::optional<double>(*v);
}

}  // namespace patchlab::harness::internal
