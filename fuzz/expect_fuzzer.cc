// The expression language of `patchlab check --expect` (emulator/expect.h):
// parsed against a signature, then evaluated on a few inputs and outcomes,
// including the extreme values the arithmetic must wrap on.
//
// Input: a prototype on the first line (a fixed one when it does not parse),
// the expression after it.
#include <cstdint>
#include <limits>

#include "emulator/expect.h"
#include "fuzz/fuzz_target.h"

namespace {

using namespace patchlab::emulator;

constexpr std::string_view kDefaultSig =
    "int f(const char *buf, size_t len, int flags, unsigned char *out /* 8 bytes */)";

// Argument values for `sig`, varied by `round`: zeros, all ones, the most
// negative values with NULL pointers, and short buffers.
Input MakeInput(const Signature& sig, int round) {
  Input in;
  for (const Param& p : sig.params) {
    ArgValue v;
    v.value = round == 0 ? 0 : round == 1 ? ~uint64_t{0} : uint64_t{1} << 63;
    v.is_null = p.is_pointer && round == 2;
    if (p.is_pointer && !v.is_null) {
      size_t n = p.fixed_size > 0 ? p.fixed_size : static_cast<size_t>(round * 3);
      v.bytes.assign(n, static_cast<uint8_t>(round == 1 ? 0xff : 0x41));
    }
    in.args.push_back(std::move(v));
  }
  return in;
}

RunOutcome MakeOutcome(int round, bool new_side) {
  RunOutcome o;
  o.ending = static_cast<Ending>((round + (new_side ? 1 : 0)) % 3);
  o.ret = round == 2 ? uint64_t{1} << 63 : ~uint64_t{0};
  return o;
}

}  // namespace

PATCHLAB_FUZZ_TARGET(expect) {
  std::string_view text = patchlab::fuzz::AsText(data, size);
  size_t newline = text.find('\n');
  std::string_view sig_text = newline == std::string_view::npos ? "" : text.substr(0, newline);
  std::string_view expr = newline == std::string_view::npos ? text : text.substr(newline + 1);
  auto sig = ParseSignature(sig_text);
  if (!sig) sig = ParseSignature(kDefaultSig);
  FUZZ_CHECK(sig.has_value());
  auto expect = Expect::Parse(expr, *sig);
  if (!expect) {
    FUZZ_CHECK(expect.error().ToString().find("--expect") != std::string::npos);
    return 0;
  }
  for (int round = 0; round < 3; ++round) {
    (void)expect->Evaluate(MakeInput(*sig, round), MakeOutcome(round, false),
                           MakeOutcome(round, true));
  }
  return 0;
}
