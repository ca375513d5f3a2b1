// What every signature the checker accepts must satisfy, whichever reader
// made it (--sig's parser or the DWARF reader): a call plan exists for it
// (registers and at most kMaxStackArgBytes of stack), every scalar has a width
// its kind can have, every pointer a knowable size no larger than the
// sandbox's buffers with its NULL-generated members inside it, every length
// parameter pointing back at its buffer. Aborts through FUZZ_CHECK otherwise.
#pragma once

#include "emulator/call_plan.h"
#include "emulator/signature.h"
#include "fuzz/fuzz_target.h"

namespace patchlab::fuzz {

inline void CheckSignatureInvariants(const emulator::Signature& sig) {
  using namespace patchlab::emulator;
  FUZZ_CHECK(PlanCall(sig).has_value());
  for (size_t i = 0; i < sig.params.size(); ++i) {
    const Param& p = sig.params[i];
    if (p.kind == ValueKind::kInteger) {
      FUZZ_CHECK(p.width == 1 || p.width == 2 || p.width == 4 || p.width == 8 || p.width == 16);
    } else if (p.kind == ValueKind::kFloat) {
      FUZZ_CHECK(p.width == FloatBytes(p.format));
    } else if (p.kind == ValueKind::kRecord) {
      FUZZ_CHECK(p.width > 0 && static_cast<uint64_t>(p.width) == p.record.size);
    }
    if (!p.is_pointer) continue;
    FUZZ_CHECK(p.width == 8);
    FUZZ_CHECK(p.fixed_size <= kMaxBufferBytes);
    FUZZ_CHECK(p.fixed_size > 0 || p.length_param >= 0 || p.cstring);
    for (uint64_t off : p.null_offsets) FUZZ_CHECK(off + 8 <= p.fixed_size);
    if (p.length_param >= 0) {
      FUZZ_CHECK(static_cast<size_t>(p.length_param) < sig.params.size());
      FUZZ_CHECK(sig.params[p.length_param].length_of == static_cast<int>(i));
    }
  }
}

}  // namespace patchlab::fuzz
