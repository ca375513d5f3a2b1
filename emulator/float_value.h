// Floating-point values as the checker stores them: an image of
// FloatBytes(format) bytes (a float's 4, a double's 8, a long double's 16 of
// which the x87 format uses 10, a _Float128's 16), converted to and from
// the host's double, compared and printed.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>

#include "emulator/signature.h"

namespace patchlab::emulator {

// Writes `v` in `format` to `out` (FloatBytes(format) bytes; a long
// double's 6 unused bytes 0).
void EncodeFloat(FloatFormat format, double v, uint8_t* out);
// The value of the image at `in`, as a double (rounded, or inf when too large).
double DecodeFloat(FloatFormat format, const uint8_t* in);
bool IsNan(FloatFormat format, const uint8_t* in);
// Equal bit for bit (so +0 and -0 differ), or both NaN whatever their payload.
bool FloatsEqual(FloatFormat format, const uint8_t* a, const uint8_t* b);
// "1.5", "-0", "nan", "inf", "1e+300", with "L" for a long double.
std::string RenderFloat(FloatFormat format, const uint8_t* in);

}  // namespace patchlab::emulator
