#include "emulator/entry_page.h"

#include <cstring>

#include "emulator/layout.h"

namespace patchlab::emulator {
namespace {

constexpr uint64_t kMxcsrOffset = 0x610;

// Assembled with GNU as (Intel syntax) from the following, at offset 0x10;
// the RIP-relative operands point into this page (mxcsr 0x610, args 0x618,
// rsp 0x648, target 0x650):
//   xor on every general register but the arguments and rsp
//   movq xmm0, rax (rax is 0)        clears all 128 bits (a helper call in
//                                    QEMU 5's SSE code; so would pxor be,
//                                    and movaps would be a guest load)
//   movq xmmN, xmm0                  the same for the other 15 as plain
//                                    moves within the CPU state, no call
//   fninit                           x87 control, status and tags (not the
//                                    register contents: see docs/check.md)
//   ldmxcsr [rip + mxcsr]
//   mov rdi..r9, [rip + args]
//   inc eax; test eax, eax; mov eax, 0; cld
//                                    flags as Unicorn starts them (0x2): the
//                                    arithmetic ones and DF. popfq would also
//                                    reset AC, TF, IF, ID, but it ends the
//                                    translated block (a return to Unicorn's
//                                    loop every run); the sandbox checks those
//                                    after each run instead (Sandbox::Run)
//   mov rsp, [rip + rsp]; jmp [rip + target]
// fxrstor would also clear the x87 registers, but QEMU's helper reads its
// image through ~20 slow-path loads, each with a Unicorn region lookup: in a
// profile of the adler32-like check that lookup alone took 8% of the time.
// clang-format off
constexpr uint8_t kCode[] = {
    0x31, 0xc0,                                      // xor eax,eax
    0x31, 0xdb,                                      // xor ebx,ebx
    0x31, 0xed,                                      // xor ebp,ebp
    0x45, 0x31, 0xd2,                                // xor r10d,r10d
    0x45, 0x31, 0xdb,                                // xor r11d,r11d
    0x45, 0x31, 0xe4,                                // xor r12d,r12d
    0x45, 0x31, 0xed,                                // xor r13d,r13d
    0x45, 0x31, 0xf6,                                // xor r14d,r14d
    0x45, 0x31, 0xff,                                // xor r15d,r15d
    0x66, 0x48, 0x0f, 0x6e, 0xc0,                    // movq xmm0,rax
    0xf3, 0x0f, 0x7e, 0xc8,                          // movq xmm1,xmm0
    0xf3, 0x0f, 0x7e, 0xd0,                          // movq xmm2,xmm0
    0xf3, 0x0f, 0x7e, 0xd8,                          // movq xmm3,xmm0
    0xf3, 0x0f, 0x7e, 0xe0,                          // movq xmm4,xmm0
    0xf3, 0x0f, 0x7e, 0xe8,                          // movq xmm5,xmm0
    0xf3, 0x0f, 0x7e, 0xf0,                          // movq xmm6,xmm0
    0xf3, 0x0f, 0x7e, 0xf8,                          // movq xmm7,xmm0
    0xf3, 0x44, 0x0f, 0x7e, 0xc0,                    // movq xmm8,xmm0
    0xf3, 0x44, 0x0f, 0x7e, 0xc8,                    // movq xmm9,xmm0
    0xf3, 0x44, 0x0f, 0x7e, 0xd0,                    // movq xmm10,xmm0
    0xf3, 0x44, 0x0f, 0x7e, 0xd8,                    // movq xmm11,xmm0
    0xf3, 0x44, 0x0f, 0x7e, 0xe0,                    // movq xmm12,xmm0
    0xf3, 0x44, 0x0f, 0x7e, 0xe8,                    // movq xmm13,xmm0
    0xf3, 0x44, 0x0f, 0x7e, 0xf0,                    // movq xmm14,xmm0
    0xf3, 0x44, 0x0f, 0x7e, 0xf8,                    // movq xmm15,xmm0
    0xdb, 0xe3,                                      // fninit
    0x0f, 0xae, 0x15, 0x96, 0x05, 0x00, 0x00,        // ldmxcsr [rip+0x596]
    0x48, 0x8b, 0x3d, 0x97, 0x05, 0x00, 0x00,        // mov rdi,[rip+0x597]
    0x48, 0x8b, 0x35, 0x98, 0x05, 0x00, 0x00,        // mov rsi,[rip+0x598]
    0x48, 0x8b, 0x15, 0x99, 0x05, 0x00, 0x00,        // mov rdx,[rip+0x599]
    0x48, 0x8b, 0x0d, 0x9a, 0x05, 0x00, 0x00,        // mov rcx,[rip+0x59a]
    0x4c, 0x8b, 0x05, 0x9b, 0x05, 0x00, 0x00,        // mov r8,[rip+0x59b]
    0x4c, 0x8b, 0x0d, 0x9c, 0x05, 0x00, 0x00,        // mov r9,[rip+0x59c]
    0xff, 0xc0,                                      // inc eax
    0x85, 0xc0,                                      // test eax,eax
    0xb8, 0x00, 0x00, 0x00, 0x00,                    // mov eax,0x0
    0xfc,                                            // cld
    0x48, 0x8b, 0x25, 0x93, 0x05, 0x00, 0x00,        // mov rsp,[rip+0x593]
    0xff, 0x25, 0x95, 0x05, 0x00, 0x00,              // jmp [rip+0x595]
};
// clang-format on
static_assert(sizeof kCode == 171 && kEntryCodeOffset + sizeof kCode <= kEntrySseCodeOffset);

// The entry for calls that pass arguments in SSE registers (floating point,
// structs with float members) or call a variadic function: assembled the
// same way at offset 0x100, it differs in loading XMM0-7 from the page
// (xmm args 0x680, 16 bytes each) instead of clearing them, and AL from the
// page (0x700: how many vector registers a variadic call passes) after the
// flags are reset (mov does not change them).
//   xor on every general register but the arguments and rsp
//   movq xmm8, rax; movq xmm9..15, xmm8
//   movdqu xmm0..7, [rip + xmm args + 16 * N]
//   fninit; ldmxcsr [rip + mxcsr]; mov rdi..r9, [rip + args]
//   inc eax; test eax, eax; mov eax, [rip + al]; cld
//   mov rsp, [rip + rsp]; jmp [rip + target]
// clang-format off
constexpr uint8_t kSseCode[] = {
0x31, 0xc0,                                      // xor eax,eax
    0x31, 0xdb,                                      // xor ebx,ebx
    0x31, 0xed,                                      // xor ebp,ebp
    0x45, 0x31, 0xd2,                                // xor r10d,r10d
    0x45, 0x31, 0xdb,                                // xor r11d,r11d
    0x45, 0x31, 0xe4,                                // xor r12d,r12d
    0x45, 0x31, 0xed,                                // xor r13d,r13d
    0x45, 0x31, 0xf6,                                // xor r14d,r14d
    0x45, 0x31, 0xff,                                // xor r15d,r15d
    0x66, 0x4c, 0x0f, 0x6e, 0xc0,                    // movq xmm8,rax
    0xf3, 0x45, 0x0f, 0x7e, 0xc8,                    // movq xmm9,xmm8
    0xf3, 0x45, 0x0f, 0x7e, 0xd0,                    // movq xmm10,xmm8
    0xf3, 0x45, 0x0f, 0x7e, 0xd8,                    // movq xmm11,xmm8
    0xf3, 0x45, 0x0f, 0x7e, 0xe0,                    // movq xmm12,xmm8
    0xf3, 0x45, 0x0f, 0x7e, 0xe8,                    // movq xmm13,xmm8
    0xf3, 0x45, 0x0f, 0x7e, 0xf0,                    // movq xmm14,xmm8
    0xf3, 0x45, 0x0f, 0x7e, 0xf8,                    // movq xmm15,xmm8
    0xf3, 0x0f, 0x6f, 0x05, 0x38, 0x05, 0x00, 0x00,  // movdqu xmm0,[rip+0x538]
    0xf3, 0x0f, 0x6f, 0x0d, 0x40, 0x05, 0x00, 0x00,  // movdqu xmm1,[rip+0x540]
    0xf3, 0x0f, 0x6f, 0x15, 0x48, 0x05, 0x00, 0x00,  // movdqu xmm2,[rip+0x548]
    0xf3, 0x0f, 0x6f, 0x1d, 0x50, 0x05, 0x00, 0x00,  // movdqu xmm3,[rip+0x550]
    0xf3, 0x0f, 0x6f, 0x25, 0x58, 0x05, 0x00, 0x00,  // movdqu xmm4,[rip+0x558]
    0xf3, 0x0f, 0x6f, 0x2d, 0x60, 0x05, 0x00, 0x00,  // movdqu xmm5,[rip+0x560]
    0xf3, 0x0f, 0x6f, 0x35, 0x68, 0x05, 0x00, 0x00,  // movdqu xmm6,[rip+0x568]
    0xf3, 0x0f, 0x6f, 0x3d, 0x70, 0x05, 0x00, 0x00,  // movdqu xmm7,[rip+0x570]
    0xdb, 0xe3,                                      // fninit
    0x0f, 0xae, 0x15, 0x87, 0x04, 0x00, 0x00,        // ldmxcsr [rip+0x487]
    0x48, 0x8b, 0x3d, 0x88, 0x04, 0x00, 0x00,        // mov rdi,[rip+0x488]
    0x48, 0x8b, 0x35, 0x89, 0x04, 0x00, 0x00,        // mov rsi,[rip+0x489]
    0x48, 0x8b, 0x15, 0x8a, 0x04, 0x00, 0x00,        // mov rdx,[rip+0x48a]
    0x48, 0x8b, 0x0d, 0x8b, 0x04, 0x00, 0x00,        // mov rcx,[rip+0x48b]
    0x4c, 0x8b, 0x05, 0x8c, 0x04, 0x00, 0x00,        // mov r8,[rip+0x48c]
    0x4c, 0x8b, 0x0d, 0x8d, 0x04, 0x00, 0x00,        // mov r9,[rip+0x48d]
    0xff, 0xc0,                                      // inc eax
    0x85, 0xc0,                                      // test eax,eax
    0x8b, 0x05, 0x43, 0x05, 0x00, 0x00,              // mov eax,[rip+0x543]
    0xfc,                                            // cld
    0x48, 0x8b, 0x25, 0x83, 0x04, 0x00, 0x00,        // mov rsp,[rip+0x483]
    0xff, 0x25, 0x85, 0x04, 0x00, 0x00,              // jmp [rip+0x485]
};
// clang-format on
static_assert(sizeof kSseCode == 203 && kEntrySseCodeOffset + sizeof kSseCode <= kMxcsrOffset);
static_assert(kEntryXmmArgsOffset == 0x680 && kEntryAlOffset == 0x700);
static_assert(kEntryArgsOffset == kMxcsrOffset + 8 && kEntryRspOffset == kEntryArgsOffset + 48 &&
              kEntryTargetOffset == kEntryRspOffset + 8);

}  // namespace

void WriteEntryPage(uint8_t* page) {
  std::memset(page, 0, kPageSize);
  std::memcpy(page + kEntryCodeOffset, kCode, sizeof kCode);
  std::memcpy(page + kEntrySseCodeOffset, kSseCode, sizeof kSseCode);
  // SSE: all exceptions masked, round to nearest, as a Linux process starts
  // (Unicorn's reset leaves MXCSR and the x87 control word at 0: every
  // exception unmasked). fninit sets the x87 control word to 0x37f.
  const uint32_t mxcsr = 0x1f80;
  std::memcpy(page + kMxcsrOffset, &mxcsr, sizeof mxcsr);
  // The sentinel: `hlt`, never executed because runs end when they reach it.
  static_assert(kSentinel == kEntryBase);
  page[0] = 0xf4;
}

bool IsEntryCode(uint64_t addr) {
  return addr - (kEntryBase + kEntryCodeOffset) < kPageSize - kEntryCodeOffset;
}

}  // namespace patchlab::emulator
