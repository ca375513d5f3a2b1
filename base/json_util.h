// Reading JSON that comes from outside: hotpatch's state and journals, patch
// manifests, the guest agent's lines. A hostile document must end in an
// Error, never in undefined behaviour or a blown stack.
//
// ParseJson bounds the nesting depth (nlohmann's parser is iterative, but
// dump() and comparisons recurse) and names the origin and where the text went
// wrong. JsonInteger reads an integer strictly: nlohmann's get<integer>()
// converts a floating-point number with a cast that is undefined behaviour
// when out of range (1e30), truncates 1.5 to 1 and wraps out-of-range
// integers; JsonInteger refuses all three.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "base/error.h"

namespace patchlab {

// Deeper than any document the lab writes (they nest at most 5 levels).
inline constexpr int kMaxJsonDepth = 64;

// Parses `text`. Fails with kParse, the message starting "ORIGIN: ", naming the
// line and column of a syntax error, or the byte offset where the nesting
// passed kMaxJsonDepth.
Result<nlohmann::json> ParseJson(std::string_view text, std::string_view origin);

// The integer `object[key]` holds, as T. Throws std::out_of_range when the key
// is absent or the value does not fit T, std::invalid_argument when it is not
// an integer (a string, 1.5, 1e30); the message names the key. For readers
// that catch std::exception at their boundary.
template <typename T>
T JsonInteger(const nlohmann::json& object, std::string_view key);

// `object[key]` read strictly as T (an integer type as JsonInteger reads it,
// bool, double, std::string), or `fallback` when the key is absent. Throws
// std::invalid_argument / std::out_of_range naming the key when it holds
// another type or does not fit: where nlohmann's value() would throw its own
// type_error or cast a float with undefined behaviour.
template <typename T>
T JsonFieldOr(const nlohmann::json& object, std::string_view key, T fallback);

// Implementation.

namespace internal {
[[noreturn]] void ThrowJsonNotInteger(std::string_view key, const nlohmann::json& value);
[[noreturn]] void ThrowJsonWrongType(std::string_view key, const nlohmann::json& value,
                                     std::string_view expected);
[[noreturn]] void ThrowJsonOutOfRange(std::string_view key, const nlohmann::json& value, int bits,
                                      bool is_signed);
const nlohmann::json& JsonField(const nlohmann::json& object, std::string_view key);
}  // namespace internal

template <typename T>
T JsonInteger(const nlohmann::json& object, std::string_view key) {
  static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>);
  const nlohmann::json& value = internal::JsonField(object, key);
  if (value.is_number_unsigned()) {
    auto v = value.get<uint64_t>();
    if (!std::in_range<T>(v))
      internal::ThrowJsonOutOfRange(key, value, sizeof(T) * 8, std::is_signed_v<T>);
    return static_cast<T>(v);
  }
  if (value.is_number_integer()) {
    auto v = value.get<int64_t>();
    if (!std::in_range<T>(v))
      internal::ThrowJsonOutOfRange(key, value, sizeof(T) * 8, std::is_signed_v<T>);
    return static_cast<T>(v);
  }
  internal::ThrowJsonNotInteger(key, value);
}

template <typename T>
T JsonFieldOr(const nlohmann::json& object, std::string_view key, T fallback) {
  if (!object.is_object()) (void)internal::JsonField(object, key);  // throws, naming the key
  auto it = object.find(key);
  if (it == object.end()) return fallback;
  if constexpr (std::is_same_v<T, bool>) {
    if (!it->is_boolean()) internal::ThrowJsonWrongType(key, *it, "true or false");
    return it->template get<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    return JsonInteger<T>(object, key);
  } else if constexpr (std::is_same_v<T, double>) {
    if (!it->is_number()) internal::ThrowJsonWrongType(key, *it, "a number");
    return it->template get<double>();
  } else {
    static_assert(std::is_same_v<T, std::string>);
    if (!it->is_string()) internal::ThrowJsonWrongType(key, *it, "a string");
    return it->template get<std::string>();
  }
}

}  // namespace patchlab
