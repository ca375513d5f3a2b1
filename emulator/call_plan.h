// CallPlan: where each argument of a call goes and where its return value
// comes back, under the SysV x86-64 psABI (section 3.2.3, "Parameter
// Passing"): every value is classified by eightbyte (INTEGER, SSE, SSEUP,
// X87, X87UP, MEMORY; a struct or union from the scalar leaves it holds, one
// over 16 bytes or with a misaligned leaf in MEMORY), INTEGER eightbytes go
// in rdi, rsi, rdx, rcx, r8, r9, SSE ones in xmm0-7, and a value that does
// not fit in the registers left, or is MEMORY or X87, goes on the stack
// whole, in order, each at least 8-aligned (16 for long double, _Float128,
// __int128 and 16-aligned records). A return value in MEMORY is written
// where a hidden first argument (rdi) points; the callee returns that
// address in rax. Others come back in rax, rdx, xmm0, xmm1, or st0 for a
// long double.
//
// A value's "image" is its bytes in memory (an integer's little-endian
// bytes, a long double's 16 bytes of which 10 count, a record's layout);
// pieces of the image go to registers and stack slots.
//
// Thread-safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <vector>

#include "base/error.h"
#include "emulator/signature.h"

namespace patchlab::emulator {

struct Piece {
  enum Where : uint8_t {
    kGpr,      // a general register: rdi.. for arguments; rax, rdx for returns
    kXmm,      // the low 8 bytes of an xmm register
    kXmmHigh,  // its high 8 bytes (SSEUP)
    kStack,    // the stack argument area (index: offset from rsp + 8)
    kX87,      // st0 (10 bytes)
  };
  uint32_t offset = 0;  // in the value's image
  uint32_t size = 0;
  Where where = kGpr;
  uint32_t index = 0;  // register number (argument order), or stack offset
};

struct ValuePlan {
  std::vector<Piece> pieces;
};

struct CallPlan {
  std::vector<ValuePlan> params;  // one per Signature::params
  uint64_t stack_bytes = 0;       // the stack argument area, a multiple of 16
  int sse_registers = 0;          // xmm0-7 used: AL of a variadic call
  bool needs_sse_entry = false;   // an argument in xmm0-7, or AL to set
  bool hidden_return = false;     // rdi points where the return value goes
  uint64_t return_size = 0;       // bytes of the return value's image
  ValuePlan ret;                  // empty for void and a hidden return
  // Every argument one general register, no stack, a return in rax or none:
  // what the checker ran before it knew the rest of the ABI.
  bool simple = false;
};

// The plan of a call to `sig`. Fails with kUnsupported when the stack
// arguments exceed kMaxStackArgBytes or a value cannot be classified (a
// complex long double return).
Result<CallPlan> PlanCall(const Signature& sig);

// The bytes of the image of a parameter of this kind.
uint64_t ImageBytes(const Param& p);

}  // namespace patchlab::emulator
