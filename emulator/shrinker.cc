#include "emulator/shrinker.h"

#include <cctype>
#include <cmath>
#include <cstring>

#include "emulator/float_value.h"

namespace patchlab::emulator {
namespace {

class Shrinker {
 public:
  Shrinker(const Signature& sig, Input start, const StillFails& f, int budget)
      : sig_(sig), best_(std::move(start)), still_fails_(f), budget_(budget) {}

  Input Run() {
    bool progress = true;
    while (progress && budget_ > 0) {
      progress = false;
      if (best_.leading) {
        Input c = best_;
        c.leading = false;
        progress |= Try(c);
      }
      for (size_t i = 0; i < sig_.params.size(); ++i) {
        if (sig_.params[i].is_pointer) progress |= ShrinkBuffer(i);
      }
      for (size_t i = 0; i < sig_.params.size(); ++i) {
        const Param& p = sig_.params[i];
        if (p.is_pointer) continue;
        if (p.kind == ValueKind::kFloat)
          progress |= ShrinkFloat(i);
        else if (p.kind == ValueKind::kFunction)
          progress |= p.callback_target.empty() && best_.args[i].value != 0 && TryValue(i, 0);
        else if (p.kind == ValueKind::kRecord || p.width > 8)
          progress |= ShrinkBytes(i);
        else
          progress |= ShrinkInteger(i);
      }
    }
    return best_;
  }

 private:
  bool Try(const Input& c) {
    if (budget_ <= 0) return false;
    --budget_;
    if (!still_fails_(c)) return false;
    best_ = c;
    return true;
  }

  // Keeps a length argument in the same relation (equal, one less, one more)
  // to its buffer after the buffer changed size from `old_size`.
  void FollowLength(Input& c, size_t ptr, uint64_t old_size) {
    int lp = sig_.params[ptr].length_param;
    if (lp < 0) return;
    uint64_t n = c.args[ptr].bytes.size();
    uint64_t& len = c.args[lp].value;
    if (len == old_size)
      len = n;
    else if (len == old_size + 1)
      len = n + 1;
    else if (old_size > 0 && len == old_size - 1)
      len = n == 0 ? 0 : n - 1;
  }

  bool TryValue(size_t i, uint64_t v) {
    Input c = best_;
    c.args[i].value = v;
    return Try(c);
  }

  // Toward 0, 1 or -1, an integer, a half: whichever still fails first.
  bool ShrinkFloat(size_t i) {
    const Param& p = sig_.params[i];
    const std::vector<uint8_t> image = ArgImage(p, best_.args[i], 0);
    const double v = DecodeFloat(p.format, image.data());
    const double magnitude = std::fabs(v);
    bool progress = false;
    for (double c : {0.0, 1.0, -1.0, std::trunc(v), v / 2}) {
      const bool simpler = std::isnan(v) || std::isinf(v) || std::fabs(c) < magnitude ||
                           (std::trunc(v) != v && c == std::trunc(v));
      if (!simpler || (c == v && !std::isnan(v)) || budget_ <= 0) continue;
      Input cand = best_;
      uint8_t bytes[16] = {};
      EncodeFloat(p.format, c, bytes);
      if (HeldInValue(p)) {
        cand.args[i].value = 0;
        std::memcpy(&cand.args[i].value, bytes, static_cast<size_t>(FloatBytes(p.format)));
      } else {
        cand.args[i].bytes.assign(bytes, bytes + 16);
      }
      if (Try(cand)) {
        progress = true;
        break;
      }
    }
    return progress;
  }

  // A record's or __int128's bytes toward 0, byte by byte.
  bool ShrinkBytes(size_t i) {
    bool progress = false;
    for (size_t k = 0; k < best_.args[i].bytes.size() && budget_ > 0; ++k) {
      if (best_.args[i].bytes[k] == 0) continue;
      Input c = best_;
      c.args[i].bytes[k] = 0;
      progress |= Try(c);
    }
    return progress;
  }

  bool ShrinkBuffer(size_t i) {
    const Param& p = sig_.params[i];
    bool progress = false;
    if (best_.args[i].is_null) return false;
    if (p.fixed_size == 0) {
      for (size_t chunk = std::max<size_t>(best_.args[i].bytes.size() / 2, 1);
           chunk >= 1 && budget_ > 0; chunk /= 2) {
        for (size_t off = 0; off < best_.args[i].bytes.size() && budget_ > 0;) {
          Input c = best_;
          auto& b = c.args[i].bytes;
          uint64_t old_size = b.size();
          b.erase(b.begin() + off, b.begin() + std::min(b.size(), off + chunk));
          FollowLength(c, i, old_size);
          if (Try(c))
            progress = true;
          else
            off += chunk;
        }
        if (chunk == 1) break;
      }
    }
    for (size_t k = 0; k < best_.args[i].bytes.size() && budget_ > 0; ++k) {
      uint8_t b = best_.args[i].bytes[k];
      for (uint8_t target : Simpler(b, p.cstring)) {
        Input c = best_;
        c.args[i].bytes[k] = target;
        if (Try(c)) {
          progress = true;
          break;
        }
      }
    }
    return progress;
  }

  static std::vector<uint8_t> Simpler(uint8_t b, bool cstring) {
    std::vector<uint8_t> out;
    auto add = [&](uint8_t t) {
      if (t < b && (!cstring || t != 0)) out.push_back(t);
    };
    add(0);
    add(' ');
    if (std::isdigit(b)) add('0');
    if (std::islower(b)) add('a');
    if (std::isupper(b)) add('A');
    return out;
  }

  bool ShrinkInteger(size_t i) {
    const Param& p = sig_.params[i];
    bool progress = false;
    if (p.length_of >= 0) {
      const ArgValue& buf = best_.args[p.length_of];
      uint64_t exact = buf.is_null ? 0 : buf.bytes.size();
      if (best_.args[i].value != exact) {
        Input c = best_;
        c.args[i].value = exact;
        progress |= Try(c);
      }
      return progress;
    }
    auto set = [&](int64_t v) {
      Input c = best_;
      c.args[i].value = static_cast<uint64_t>(v);
      return Try(c);
    };
    int64_t v = SignedValue(p, best_.args[i].value);
    if (v == 0) return false;
    if (set(0)) return true;
    if (v != 1 && v != -1 && set(v > 0 ? 1 : -1)) return true;
    // Halve toward 0 while that still fails, then step by one a little.
    for (;;) {
      v = SignedValue(p, best_.args[i].value);
      int64_t half = v / 2;
      if (half == v || half == 0 || budget_ <= 0 || !set(half)) break;
      progress = true;
    }
    for (int steps = 0; steps < 32 && budget_ > 0; ++steps) {
      v = SignedValue(p, best_.args[i].value);
      if (v == 0 || !set(v > 0 ? v - 1 : v + 1)) break;
      progress = true;
    }
    return progress;
  }

  const Signature& sig_;
  Input best_;
  const StillFails& still_fails_;
  int budget_;
};

}  // namespace

Input Shrink(const Signature& sig, Input start, const StillFails& still_fails,
             int max_evaluations) {
  return Shrinker(sig, std::move(start), still_fails, max_evaluations).Run();
}

}  // namespace patchlab::emulator
