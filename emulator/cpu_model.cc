#include "emulator/cpu_model.h"

namespace patchlab::emulator {
namespace {

// CPUID.1:EDX of every x86-64 CPU: FPU, TSC, CX8, APIC-less basics, CMOV,
// MMX, FXSR, SSE, SSE2 (the psABI baseline), with PSE/PAE/MSR/PGE/... that
// any 64-bit CPU has.
constexpr uint32_t kBaselineEdx1 = (1u << 0) | (1u << 3) | (1u << 4) | (1u << 5) | (1u << 6) |
                                   (1u << 8) | (1u << 11) | (1u << 13) | (1u << 15) | (1u << 19) |
                                   (1u << 23) | (1u << 24) | (1u << 25) | (1u << 26);
// CPUID.80000001:EDX: SYSCALL, NX, LM.
constexpr uint32_t kBaselineEdxExt = (1u << 11) | (1u << 20) | (1u << 29);
// x86-64-v2 in CPUID.1:ECX: SSE3, SSSE3, CX16, SSE4.1, SSE4.2, POPCNT; and
// LAHF-SAHF in CPUID.80000001:ECX.
constexpr uint32_t kV2Ecx1 =
    (1u << 0) | (1u << 9) | (1u << 13) | (1u << 19) | (1u << 20) | (1u << 23);
constexpr uint32_t kV2EcxExt = 1u << 0;

// "GenuineIntel" in ebx, edx, ecx order.
constexpr uint32_t kVendorEbx = 0x756e6547, kVendorEdx = 0x49656e69, kVendorEcx = 0x6c65746e;

CpuModel Make(std::string name, uint32_t ecx1, uint32_t ecx_ext) {
  CpuModel m;
  m.name = std::move(name);
  // Family 6, model 0x3a: a plain Intel family number, nothing glibc keys
  // special preferences on beyond the features themselves.
  m.leaves = {
      {0, 0, {7, kVendorEbx, kVendorEcx, kVendorEdx}},
      {1, 0, {0x000306a9, 0x00000800, ecx1, kBaselineEdx1}},
      {7, 0, {0, 0, 0, 0}},
      {0x80000000, 0, {0x80000008, 0, 0, 0}},
      {0x80000001, 0, {0, 0, ecx_ext, kBaselineEdxExt}},
      {0x80000008, 0, {0x00003030, 0, 0, 0}},
  };
  return m;
}

}  // namespace

std::array<uint32_t, 4> CpuModel::Cpuid(uint32_t leaf, uint32_t subleaf) const {
  for (const CpuidLeaf& l : leaves) {
    // Leaf 7 has subleaves; the others ignore ecx.
    if (l.leaf == leaf && (leaf != 7 || l.subleaf == subleaf)) return l.regs;
  }
  return {0, 0, 0, 0};
}

Result<CpuModel> CpuModelByName(std::string_view name) {
  if (name.empty() || name == "x86-64" || name == "x86-64-v1") return Make("x86-64", 0, 0);
  if (name == "x86-64-v2") return Make("x86-64-v2", kV2Ecx1, kV2EcxExt);
  if (name == "x86-64-v3" || name == "x86-64-v4") {
    return Fail(ErrorCode::kUnsupported,
                "--cpu {}: its IFUNC implementations use AVX2{}, which Unicorn 2.0.1 cannot run; "
                "the models are x86-64 and x86-64-v2",
                name, name == "x86-64-v4" ? " and AVX-512" : "");
  }
  return Fail(ErrorCode::kInvalidArgument, "--cpu {}: unknown model (x86-64, x86-64-v2)", name);
}

}  // namespace patchlab::emulator
