#include "base/json_util.h"

#include <optional>

namespace patchlab {
namespace {

// The offset of the first bracket that opens level kMaxJsonDepth + 1, if any.
// Brackets inside strings do not count; the text need not be valid JSON.
std::optional<size_t> TooDeepAt(std::string_view text) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) return i;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return std::nullopt;
}

}  // namespace

Result<nlohmann::json> ParseJson(std::string_view text, std::string_view origin) {
  if (auto at = TooDeepAt(text)) {
    return Fail(ErrorCode::kParse, "{}: byte {}: nested deeper than {} levels", origin, *at,
                kMaxJsonDepth);
  }
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    // A syntax error (parse_error) or a number too large for a double
    // (out_of_range 406); what() is "[json.exception.parse_error.101] parse
    // error at line 1, column 2: ...".
    std::string_view what = e.what();
    if (size_t bracket = what.find("] "); bracket != std::string_view::npos) {
      what.remove_prefix(bracket + 2);
    }
    return Fail(ErrorCode::kParse, "{}: {}", origin, what);
  }
}

namespace internal {

const nlohmann::json& JsonField(const nlohmann::json& object, std::string_view key) {
  if (!object.is_object()) {
    throw std::invalid_argument(
        fmt::format("field '{}': its parent is {}, not an object", key, object.type_name()));
  }
  auto it = object.find(key);
  if (it == object.end()) throw std::out_of_range(fmt::format("field '{}' is missing", key));
  return *it;
}

void ThrowJsonNotInteger(std::string_view key, const nlohmann::json& value) {
  throw std::invalid_argument(fmt::format("field '{}': expected an integer, got {}", key,
                                          value.is_number() ? value.dump() : value.type_name()));
}

void ThrowJsonWrongType(std::string_view key, const nlohmann::json& value,
                        std::string_view expected) {
  throw std::invalid_argument(fmt::format("field '{}': expected {}, got {}", key, expected,
                                          value.is_number() ? value.dump() : value.type_name()));
}

void ThrowJsonOutOfRange(std::string_view key, const nlohmann::json& value, int bits,
                         bool is_signed) {
  throw std::out_of_range(fmt::format("field '{}': {} does not fit a {}-bit {} integer", key,
                                      value.dump(), bits, is_signed ? "signed" : "unsigned"));
}

}  // namespace internal
}  // namespace patchlab
