// Expect: the small expression language of `--expect`, declaring which
// divergences are the fix itself. An input on which old and new differ is an
// expected divergence when any declared expression is true for it.
//
//   expr      := cond [ "when" cond ]      "A when B" means "B && A"
//   cond      := or-expression over || && ! == != < <= > >= + - * / % & | ^ ~ ( )
//   literals  := 42  -1  0x2a  'a'  true  false
//   names     := old.ret new.ret ret (= new.ret)   the return value, as declared (signed or not)
//                old.fault new.fault               the run faulted (1) or not (0)
//                old.hang new.hang                 the run ran past the block budget
//                old.returned new.returned         the run returned normally
//                PARAM                             an integer argument's value; a pointer's: 0 when
//                NULL, else 1 len(PARAM)                        a buffer argument's length in bytes
//                PARAM[I]                          byte I of a buffer argument (0 past its end)
// Examples: "ret == 0 when len > 16", "old.fault && new.ret == -1",
//           "new.ret == -22 when buf == 0".
// Arithmetic is 64-bit signed and wraps; division by zero yields 0.
// Floating-point values (parameters, ret) are truncated toward 0 (NaN is 0);
// a struct parameter's bytes are PARAM[I]; a generated callback parameter is
// its behaviour's number (callback.h).
//
// Thread-safety: an Expect is immutable after Parse; Evaluate is const.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/error.h"
#include "emulator/input.h"
#include "emulator/outcome.h"
#include "emulator/signature.h"

namespace patchlab::emulator {

class Expect {
 public:
  // Parses `text` against `sig` (so unknown names fail now, not per input).
  // Fails with kInvalidArgument naming the column and what was expected.
  static Result<Expect> Parse(std::string_view text, const Signature& sig);

  // Whether the expression holds for this input and these two runs.
  bool Evaluate(const Input& in, const RunOutcome& old_out, const RunOutcome& new_out) const;

  const std::string& text() const { return text_; }

  struct Node;

 private:
  std::string text_;
  std::shared_ptr<const Node> root_;
  std::shared_ptr<const Signature> sig_;
};

}  // namespace patchlab::emulator
