// Comparing what the old and the new function did on one input: how each run
// ended, the return value (at the declared width; floating point bit for bit
// but any NaN equal to any NaN; records by their members, not their
// padding; behind a hidden pointer, that pointer too), every writable byte both
// sides share (argument pages, the target image's writable segments, the used
// heap), and the calls to effectful library stubs (allocation, abort).
// Two runs that fault the same way at the same address are equal whatever they
// wrote before: the process would die either way.
//
// Thread-safety: pure functions of their arguments.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/elf_file.h"
#include "emulator/outcome.h"
#include "emulator/sandbox.h"
#include "emulator/signature.h"

namespace patchlab::emulator {

enum class DivergenceKind {
  kReturn,        // both returned, different values
  kMemory,        // both returned, a shared writable byte differs
  kCalls,         // both returned, different allocation/abort calls
  kFault,         // both faulted, differently (class or address)
  kNewCrash,      // old returned, new faulted
  kFixedCrash,    // old faulted, new returned
  kNewHang,       // new ran past the block budget, old did not
  kFixedHang,     // old hung, new did not
  kInconclusive,  // either side could not be judged (no comparison made)
};

std::string_view DivergenceKindName(DivergenceKind k);

struct Divergence {
  DivergenceKind kind;
  std::string detail;  // "first differing byte at 0x7a000010a008 (arg1+8): old 0x00, new 0x41"
};

// What a comparison learned about writable argument pages on its way, for
// the next Reset of both sides (Sandbox::MarkCleanArgPages): the pages equal
// on both sides that still hold kFillByte outside their placed bytes. Only
// filled in when every shared region compared equal.
struct CleanArgPages {
  std::array<uint64_t, 6> addrs{};
  size_t count = 0;
  std::span<const uint64_t> span() const { return {addrs.data(), count}; }
};

// Two builds in their own address spaces (side_layout.h): the programs'
// data is compared variable by variable, matched by name, instead of by
// address, and a pointer returned into a program by the variable it points
// into and the offset.
struct GlobalPair {
  std::string name;
  uint64_t old_addr = 0, new_addr = 0, size = 0;  // guest addresses
};
struct SeparateSpaces {
  std::vector<GlobalPair> globals;
  // Each side's program (what regions named "target:..." map) and its bias.
  const ElfFile* program[2] = {nullptr, nullptr};
  uint64_t bias[2] = {0, 0};
};

// The first difference between two runs, or nullopt when they are equal.
// Argument pages read-only on both sides are not compared: both hold the
// same placed input and nothing else could have written there.
std::optional<Divergence> Compare(const Signature& sig, const Sandbox& old_side,
                                  const RunOutcome& old_out, const Sandbox& new_side,
                                  const RunOutcome& new_out, CleanArgPages* clean = nullptr,
                                  const SeparateSpaces* separate = nullptr);

// The return value as the declared type reads it, e.g. "-1" or "0x7a0000008010".
// Floating point as "1.5", records as "{+0: 1.5, +8: 2}", __int128 in hex.
std::string RenderReturn(const Signature& sig, const RunOutcome& out);

}  // namespace patchlab::emulator
