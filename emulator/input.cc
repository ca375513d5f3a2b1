#include "emulator/input.h"

#include <fmt/format.h>

#include <cstring>

#include "emulator/callback.h"
#include "emulator/float_value.h"

namespace patchlab::emulator {

uint64_t PlacedSize(const Param& p, const ArgValue& v) {
  return v.bytes.size() + (p.cstring ? 1 : 0);
}

bool HeldInValue(const Param& p) {
  switch (p.kind) {
    case ValueKind::kInteger:
      return p.width <= 8;
    case ValueKind::kFloat:
      return p.format == FloatFormat::kSingle || p.format == FloatFormat::kDouble;
    case ValueKind::kFunction:
      return true;
    default:
      return false;
  }
}

std::vector<uint8_t> ArgImage(const Param& p, const ArgValue& v, uint64_t address) {
  std::vector<uint8_t> image(8, 0);
  if (p.kind == ValueKind::kPointer || p.kind == ValueKind::kFunction) {
    std::memcpy(image.data(), &address, 8);
  } else if (HeldInValue(p)) {
    // Integers sign-extended to 8 bytes, as the caller's register holds them.
    std::memcpy(image.data(), &v.value, 8);
    if (p.kind == ValueKind::kFloat) image.resize(static_cast<size_t>(FloatBytes(p.format)));
  } else {
    image = v.bytes;
  }
  return image;
}

int64_t SignedValue(const Param& p, uint64_t v) {
  return SignedValueOf(std::min(p.width, 8), p.is_signed, v);
}

int64_t SignedValueOf(int width, bool is_signed, uint64_t v) {
  int bits = width * 8;
  if (bits >= 64) return static_cast<int64_t>(v);
  uint64_t mask = (1ull << bits) - 1;
  v &= mask;
  if (is_signed && (v >> (bits - 1)) != 0) return static_cast<int64_t>(v | ~mask);
  return static_cast<int64_t>(v);
}

std::string_view CallbackBehaviourName(int behaviour) {
  switch (behaviour) {
    case 0:
      return "returns 0";
    case 1:
      return "returns 1";
    case 2:
      return "returns -1";
    case 3:
      return "compares its arguments' first bytes, ascending";
    case 4:
      return "compares its arguments' first bytes, descending";
    default:
      return "?";
  }
}

namespace {

std::string RenderBytes(const std::vector<uint8_t>& b, bool as_string) {
  constexpr size_t kShown = 64;
  std::string s;
  if (as_string) {
    s = "\"";
    for (size_t i = 0; i < b.size() && i < kShown; ++i) {
      uint8_t c = b[i];
      if (c == '"' || c == '\\')
        s += fmt::format("\\{}", static_cast<char>(c));
      else if (c >= 0x20 && c < 0x7f)
        s += static_cast<char>(c);
      else
        s += fmt::format("\\x{:02x}", c);
    }
    s += b.size() > kShown ? "\"..." : "\"";
  } else {
    s = "<";
    for (size_t i = 0; i < b.size() && i < kShown; ++i)
      s += fmt::format("{}{:02x}", i ? " " : "", b[i]);
    s += b.size() > kShown ? " ...>" : ">";
  }
  return s + fmt::format(" ({} bytes)", b.size());
}

}  // namespace

std::string RenderInput(const Signature& sig, const Input& in) {
  std::string out;
  for (size_t i = 0; i < sig.params.size() && i < in.args.size(); ++i) {
    const Param& p = sig.params[i];
    const ArgValue& v = in.args[i];
    if (!out.empty()) out += ", ";
    out += p.name + "=";
    if (p.kind == ValueKind::kFloat) {
      const std::vector<uint8_t> image = ArgImage(p, v, 0);
      out += RenderFloat(p.format, image.data());
    } else if (p.kind == ValueKind::kRecord || (p.kind == ValueKind::kInteger && p.width > 8)) {
      out += RenderBytes(v.bytes, false);
    } else if (p.kind == ValueKind::kFunction) {
      out += p.callback_target.empty()
                 ? fmt::format("<generated callback: {}>",
                               CallbackBehaviourName(static_cast<int>(v.value)))
                 : p.callback_target;
    } else if (!p.is_pointer) {
      int64_t sv = SignedValue(p, v.value);
      out += p.is_signed ? fmt::format("{}", sv) : fmt::format("{}", static_cast<uint64_t>(sv));
    } else if (v.is_null) {
      out += "NULL";
    } else {
      out += RenderBytes(v.bytes, p.cstring || p.byte_pointee);
    }
  }
  out += in.leading ? " [buffers after the leading guard]" : " [buffers before the trailing guard]";
  return out;
}

}  // namespace patchlab::emulator
