#include "emulator/entry_page.h"

#include <cstring>

#include "emulator/layout.h"

namespace patchlab::emulator {
namespace {

constexpr uint64_t kZerosOffset = 0x410;  // 16 zero bytes, 16-byte aligned
constexpr uint64_t kMxcsrOffset = 0x610;
constexpr uint64_t kFlagsOffset = 0x658;

// Assembled with GNU as (Intel syntax) from the following, at offset 0x10;
// the RIP-relative operands point into this page (zeros 0x410, mxcsr 0x610,
// args 0x618, rsp 0x648, target 0x650, flags 0x658):
//   lea rsp, [rip + flags]; popfq    popfq only reads: no guest store (stores
//                                    cost ~115 ns each in Unicorn 2.0.1); it
//                                    restores every flag a function can change
//                                    (DF, AC, TF and ID too, which arithmetic
//                                    alone could not)
//   xor on every other general register
//   movaps xmmN, [rip + zeros]       inline loads; pxor would be a helper
//                                    call each in QEMU 5's SSE code
//   fninit                           x87 control, status and tags (not the
//                                    register contents: see docs/check.md)
//   ldmxcsr [rip + mxcsr]
//   mov rdi..r9, [rip + args]; mov rsp, [rip + rsp]; jmp [rip + target]
// fxrstor would also clear the x87 registers, but QEMU's helper reads its
// image through ~20 slow-path loads, each with a Unicorn region lookup: in a
// profile of the adler32-like check that lookup alone took 8% of the time.
constexpr uint8_t kCode[] = {
    0x48, 0x8d, 0x25, 0x41, 0x06, 0x00, 0x00,        // lea rsp,[rip+0x641]
    0x9d,                                            // popf
    0x31, 0xc0,                                      // xor eax,eax
    0x31, 0xdb,                                      // xor ebx,ebx
    0x31, 0xed,                                      // xor ebp,ebp
    0x45, 0x31, 0xd2,                                // xor r10d,r10d
    0x45, 0x31, 0xdb,                                // xor r11d,r11d
    0x45, 0x31, 0xe4,                                // xor r12d,r12d
    0x45, 0x31, 0xed,                                // xor r13d,r13d
    0x45, 0x31, 0xf6,                                // xor r14d,r14d
    0x45, 0x31, 0xff,                                // xor r15d,r15d
    0x0f, 0x28, 0x05, 0xd9, 0x03, 0x00, 0x00,        // movaps xmm0,[rip+0x3d9]
    0x0f, 0x28, 0x0d, 0xd2, 0x03, 0x00, 0x00,        // movaps xmm1,[rip+0x3d2]
    0x0f, 0x28, 0x15, 0xcb, 0x03, 0x00, 0x00,        // movaps xmm2,[rip+0x3cb]
    0x0f, 0x28, 0x1d, 0xc4, 0x03, 0x00, 0x00,        // movaps xmm3,[rip+0x3c4]
    0x0f, 0x28, 0x25, 0xbd, 0x03, 0x00, 0x00,        // movaps xmm4,[rip+0x3bd]
    0x0f, 0x28, 0x2d, 0xb6, 0x03, 0x00, 0x00,        // movaps xmm5,[rip+0x3b6]
    0x0f, 0x28, 0x35, 0xaf, 0x03, 0x00, 0x00,        // movaps xmm6,[rip+0x3af]
    0x0f, 0x28, 0x3d, 0xa8, 0x03, 0x00, 0x00,        // movaps xmm7,[rip+0x3a8]
    0x44, 0x0f, 0x28, 0x05, 0xa0, 0x03, 0x00, 0x00,  // movaps xmm8,[rip+0x3a0]
    0x44, 0x0f, 0x28, 0x0d, 0x98, 0x03, 0x00, 0x00,  // movaps xmm9,[rip+0x398]
    0x44, 0x0f, 0x28, 0x15, 0x90, 0x03, 0x00, 0x00,  // movaps xmm10,[rip+0x390]
    0x44, 0x0f, 0x28, 0x1d, 0x88, 0x03, 0x00, 0x00,  // movaps xmm11,[rip+0x388]
    0x44, 0x0f, 0x28, 0x25, 0x80, 0x03, 0x00, 0x00,  // movaps xmm12,[rip+0x380]
    0x44, 0x0f, 0x28, 0x2d, 0x78, 0x03, 0x00, 0x00,  // movaps xmm13,[rip+0x378]
    0x44, 0x0f, 0x28, 0x35, 0x70, 0x03, 0x00, 0x00,  // movaps xmm14,[rip+0x370]
    0x44, 0x0f, 0x28, 0x3d, 0x68, 0x03, 0x00, 0x00,  // movaps xmm15,[rip+0x368]
    0xdb, 0xe3,                                      // fninit
    0x0f, 0xae, 0x15, 0x5f, 0x05, 0x00, 0x00,        // ldmxcsr [rip+0x55f]
    0x48, 0x8b, 0x3d, 0x60, 0x05, 0x00, 0x00,        // mov rdi,[rip+0x560]
    0x48, 0x8b, 0x35, 0x61, 0x05, 0x00, 0x00,        // mov rsi,[rip+0x561]
    0x48, 0x8b, 0x15, 0x62, 0x05, 0x00, 0x00,        // mov rdx,[rip+0x562]
    0x48, 0x8b, 0x0d, 0x63, 0x05, 0x00, 0x00,        // mov rcx,[rip+0x563]
    0x4c, 0x8b, 0x05, 0x64, 0x05, 0x00, 0x00,        // mov r8,[rip+0x564]
    0x4c, 0x8b, 0x0d, 0x65, 0x05, 0x00, 0x00,        // mov r9,[rip+0x565]
    0x48, 0x8b, 0x25, 0x66, 0x05, 0x00, 0x00,        // mov rsp,[rip+0x566]
    0xff, 0x25, 0x68, 0x05, 0x00, 0x00,              // jmp [rip+0x568]
};
static_assert(sizeof kCode == 216 && kEntryCodeOffset + sizeof kCode <= kZerosOffset);
static_assert(kEntryArgsOffset == kMxcsrOffset + 8 && kEntryRspOffset == kEntryArgsOffset + 48 &&
              kEntryTargetOffset == kEntryRspOffset + 8 && kFlagsOffset == kEntryTargetOffset + 8);

}  // namespace

void WriteEntryPage(uint8_t* page) {
  std::memset(page, 0, kPageSize);
  std::memcpy(page + kEntryCodeOffset, kCode, sizeof kCode);
  // SSE: all exceptions masked, round to nearest, as a Linux process starts
  // (Unicorn's reset leaves MXCSR and the x87 control word at 0: every
  // exception unmasked). fninit sets the x87 control word to 0x37f.
  const uint32_t mxcsr = 0x1f80;
  std::memcpy(page + kMxcsrOffset, &mxcsr, sizeof mxcsr);
  const uint64_t flags = 0x2;  // only the always-one bit
  std::memcpy(page + kFlagsOffset, &flags, sizeof flags);
  // The sentinel: `hlt`, never executed because runs end when they reach it.
  static_assert(kSentinel == kEntryBase);
  page[0] = 0xf4;
}

bool IsEntryCode(uint64_t addr) {
  return addr - (kEntryBase + kEntryCodeOffset) < kPageSize - kEntryCodeOffset;
}

}  // namespace patchlab::emulator
