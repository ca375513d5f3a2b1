// Prologue check: may the first bytes of a function be overwritten by a
// 5-byte `jmp rel32`? Read with Capstone over the whole function:
//   - an entry endbr64 is kept; the jump goes after it;
//   - only whole instructions are overwritten, at least 5 bytes of them,
//     all inside the function;
//   - every byte of the function decodes (an undecodable byte could hide a
//     jump, so any doubt is a refusal);
//   - no relative branch anywhere in the function lands strictly inside the
//     overwritten bytes (a branch to the entry itself is fine).
// Each refusal (kRefused) names the function and the rule.
//
// Thread-safety: pure function; each call opens its own Capstone handle.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "base/error.h"

namespace patchlab::patchcore {

struct PrologueLayout {
  uint32_t patch_offset = 0;  // 4 after an entry endbr64, else 0
  uint32_t patch_size = 0;    // whole instructions, >= 5
  bool endbr64 = false;
};

// `code` is the whole function as it lies at `address` (its first byte).
Result<PrologueLayout> CheckPrologue(std::string_view function, uint64_t address,
                                     std::span<const uint8_t> code);

}  // namespace patchlab::patchcore
