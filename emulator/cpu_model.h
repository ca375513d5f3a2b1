// CpuModel: the x86-64 CPU a check pretends to run on, as far as code can
// ask: what `cpuid` answers, and so which implementation an IFUNC resolver
// picks (see ld_so_data.h for glibc's resolvers, which read the features
// ld.so recorded instead of running cpuid).
//
// Models are the x86-64 psABI levels Unicorn 2.0.1 can execute:
//   x86-64      the baseline (SSE2): the default
//   x86-64-v2   + SSE3, SSSE3, SSE4.1, SSE4.2, POPCNT, CMPXCHG16B, LAHF
// x86-64-v3 and v4 are refused: their code is AVX2/AVX-512, which Unicorn
// 2.0.1 cannot run (it reports such instructions invalid).
//
// Thread-safety: immutable values.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace patchlab::emulator {

struct CpuidLeaf {
  uint32_t leaf = 0;
  uint32_t subleaf = 0;
  std::array<uint32_t, 4> regs{};  // eax, ebx, ecx, edx
};

struct CpuModel {
  std::string name;  // "x86-64", "x86-64-v2"
  std::vector<CpuidLeaf> leaves;
  // What `cpuid` answers for (leaf, subleaf); zeros for a leaf the model
  // does not have, as a real CPU answers past its highest leaf.
  std::array<uint32_t, 4> Cpuid(uint32_t leaf, uint32_t subleaf) const;
};

// The model called `name` ("" is the default, x86-64). Fails with
// kInvalidArgument for an unknown name and kUnsupported for v3 and v4,
// saying why.
Result<CpuModel> CpuModelByName(std::string_view name);

}  // namespace patchlab::emulator
