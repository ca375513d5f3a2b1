// RunOutcome: everything one execution of a function did that the checker
// compares: how it ended (returned, faulted, hung, or could not be judged), the
// return value, the fault's class and address, the calls it made to library
// stubs, and its cost in basic blocks and instructions.
//
// Thread-safety: plain values.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace patchlab::emulator {

enum class Ending {
  kReturned,      // reached the sentinel return address
  kFault,         // a fault a real process would die of (see FaultClass)
  kHang,          // ran past the basic-block budget
  kInconclusive,  // did something the sandbox cannot judge (reason says what)
};

enum class FaultClass {
  kNone,
  kReadUnmapped,
  kWriteUnmapped,
  kFetchUnmapped,
  kWriteProtected,  // write to read-only memory (e.g. .rodata, code)
  kFetchProtected,  // jump into non-executable memory
  kInvalidInstruction,
  kDivideByZero,  // #DE: division by zero or quotient overflow
  kTrap,          // int3 or another software interrupt
  kAbort,         // abort() or a failed assertion
  kStackSmash,    // __stack_chk_fail(): the canary was overwritten
  kBadFree,       // free/realloc of a pointer the sandbox heap never gave out
  kPrivileged,    // a privileged instruction (hlt) in user mode: #GP, SIGSEGV
};

std::string_view EndingName(Ending e);
std::string_view FaultClassName(FaultClass f);

// One call with an effect beyond its return value (a library stub's, a
// system call's), for comparing and traces: "malloc(24) = 0x7d0000000010".
struct StubCall {
  std::string name;
  std::vector<uint64_t> args;  // only the arguments that say what the call did
  uint64_t ret = 0;
  std::string data;  // the bytes it wrote out (write), compared whole
  // The call; `data` shown as a string of at most 64 bytes.
  std::string ToString() const;
  bool operator==(const StubCall&) const = default;
};

struct RunOutcome {
  Ending ending = Ending::kReturned;
  uint64_t ret = 0;  // rax; masked to the declared width when the checker reads it
  // The return value's image when it is not just rax (floating point in
  // xmm0 or st0, a record in registers or behind the hidden pointer, an
  // __int128): call_plan.h says which bytes come from where.
  std::vector<uint8_t> ret_image;
  FaultClass fault = FaultClass::kNone;
  uint64_t fault_addr = 0;  // the data address for memory faults, else the PC
  uint64_t fault_pc = 0;  // block start in a fast run; exact in a sandbox created with exact = true
  bool fault_pc_exact = false;
  std::string where;  // "in memcpy" for faults inside a stub; the reason when inconclusive
  std::vector<StubCall> calls;
  uint64_t blocks = 0;
  uint64_t insns = 0;
};

// "returned 0x2a", "fault read-unmapped at 0x7a00001000 (pc 0x401136)", "hang", ...
std::string DescribeOutcome(const RunOutcome& o);

}  // namespace patchlab::emulator
