#include "emulator/float_value.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>

namespace patchlab::emulator {

void EncodeFloat(FloatFormat format, double v, uint8_t* out) {
  switch (format) {
    case FloatFormat::kSingle: {
      const auto f = static_cast<float>(v);
      std::memcpy(out, &f, 4);
      return;
    }
    case FloatFormat::kDouble:
      std::memcpy(out, &v, 8);
      return;
    case FloatFormat::kX87: {
      // The host's long double is the x87 format (x86-64 Linux).
      const auto ld = static_cast<long double>(v);
      std::memset(out, 0, 16);
      std::memcpy(out, &ld, 10);
      return;
    }
    case FloatFormat::kQuad: {
      const auto q = static_cast<__float128>(v);
      std::memcpy(out, &q, 16);
      return;
    }
    case FloatFormat::kNone:
      return;
  }
}

double DecodeFloat(FloatFormat format, const uint8_t* in) {
  switch (format) {
    case FloatFormat::kSingle: {
      float f;
      std::memcpy(&f, in, 4);
      return f;
    }
    case FloatFormat::kDouble: {
      double d;
      std::memcpy(&d, in, 8);
      return d;
    }
    case FloatFormat::kX87: {
      long double ld = 0;
      std::memcpy(&ld, in, 10);
      return static_cast<double>(ld);
    }
    case FloatFormat::kQuad: {
      __float128 q;
      std::memcpy(&q, in, 16);
      return static_cast<double>(q);
    }
    case FloatFormat::kNone:
      break;
  }
  return 0;
}

bool IsNan(FloatFormat format, const uint8_t* in) {
  if (format == FloatFormat::kX87) {
    uint64_t mantissa = 0;
    uint16_t exponent = 0;
    std::memcpy(&mantissa, in, 8);
    std::memcpy(&exponent, in + 8, 2);
    return (exponent & 0x7fff) == 0x7fff && (mantissa & 0x7fffffffffffffffull) != 0;
  }
  if (format == FloatFormat::kQuad) {
    uint64_t lo = 0, hi = 0;
    std::memcpy(&lo, in, 8);
    std::memcpy(&hi, in + 8, 8);
    return ((hi >> 48) & 0x7fff) == 0x7fff && (lo != 0 || (hi & 0xffffffffffffull) != 0);
  }
  return std::isnan(DecodeFloat(format, in));
}

bool FloatsEqual(FloatFormat format, const uint8_t* a, const uint8_t* b) {
  const size_t bytes = format == FloatFormat::kX87 ? 10 : static_cast<size_t>(FloatBytes(format));
  if (std::memcmp(a, b, bytes) == 0) return true;
  return IsNan(format, a) && IsNan(format, b);
}

std::string RenderFloat(FloatFormat format, const uint8_t* in) {
  const double v = DecodeFloat(format, in);
  std::string s = IsNan(format, in)                ? "nan"
                  : v == 0 && std::signbit(v)      ? "-0"
                  : format == FloatFormat::kSingle ? fmt::format("{:.9g}", v)
                                                   : fmt::format("{:.17g}", v);
  if (format == FloatFormat::kX87) s += "L";
  if (format == FloatFormat::kQuad) s += "Q";
  return s;
}

}  // namespace patchlab::emulator
