// RemoteSyscall: makes one stopped thread of a tracee run system calls
// (mmap, mprotect, munmap) on our behalf, and nothing else.
//
// The thread's registers are set up for the call and it is resumed until it
// has entered and left that one system call (PTRACE_SYSCALL twice): no
// target code runs, so nothing that could take a lock (no malloc, no
// dlopen). orig_rax is set to -1 so the kernel does not treat our call as a
// syscall to restart, and an interrupted syscall of the thread itself
// restarts normally once its registers are back.
//
// Where the call runs matters if the patcher dies meanwhile, because the
// kernel then lets the thread go on from wherever it is, with whatever
// registers it has. Every call runs from a spin stub (`syscall; jmp .`)
// next to a save area that holds the thread's own registers first:
//  - the stub of one of our island pages (UseStub), when there is one;
//  - else the stub written into a code cave of a module (code_cave.h) for
//    as long as the calls last (the mmap of the first island, the munmap of
//    the last one), and zeroed again after.
// Between calls the thread waits at the `jmp .`, so a patcher killed at any
// point leaves it spinning, never running on with our registers; `hotpatch
// recover` puts them back (RestoreStrandedThreads). Only a process with no
// cave at all (no executable segment ending 248 bytes before its page's end)
// runs its calls from an existing `syscall` instruction of its own: its
// registers are put back right after each call, and a patcher killed during
// one of those few microseconds leaves the thread running on with ours.
// Restore() or the destructor puts the registers back.
//
// Thread-safety: like Tracee, confined to the attaching thread.
#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "base/error.h"
#include "patchcore/process_maps.h"
#include "patchcore/process_memory.h"
#include "patchcore/remote_ptr.h"
#include "patchcore/tracee.h"

namespace patchlab::patchcore {

// Where a process's injected calls run when no island stub can: a code cave
// (see the top), else an existing `syscall` instruction.
struct InjectionSite {
  std::optional<RemotePtr> cave;
  RemotePtr syscall_insn;  // when there is no cave
};

// The first free code cave of the process; without one, an address in an
// executable mapping that holds the bytes 0f 05 (`syscall`), the vdso first.
// kNotFound when the target has neither.
Result<InjectionSite> FindInjectionSite(const ProcessMemory& memory, const ProcessMaps& maps);

class RemoteSyscall {
 public:
  // REQUIRES: `tid` is held stopped by `tracee`, which outlives this
  // object, as does `memory` (of the same process).
  RemoteSyscall(Tracee& tracee, pid_t tid, const ProcessMemory& memory, InjectionSite site);
  ~RemoteSyscall();
  RemoteSyscall(const RemoteSyscall&) = delete;
  RemoteSyscall& operator=(const RemoteSyscall&) = delete;

  // From now on, calls run from the spin stub of island page `island` (see
  // the top). False, with nothing changed, when that page holds no stub
  // (one made by an older hotpatch) or cannot be read.
  bool UseStub(RemotePtr island);
  // UseStub with the first of `islands` that holds a stub and lies outside
  // every range of `going` (pages about to be unmapped).
  void UseStubOf(const std::vector<RemotePtr>& islands, const std::vector<RemoteRange>& going = {});

  // Runs syscall `nr` with `args` in the thread. Returns the raw result
  // (negative errno on failure); fails only if ptrace itself fails.
  Result<int64_t> Call(long nr, std::array<uint64_t, 6> args);

  // mmap(hint, size, prot, flags, -1, 0). Fails naming the pid and errno.
  Result<RemotePtr> Mmap(RemotePtr hint, uint64_t size, int prot, int flags);
  Status Mprotect(RemotePtr addr, uint64_t size, int prot);
  // A range that holds the island stub in use is unmapped from the cave (or
  // the syscall instruction) instead: a thread must not be left inside
  // unmapped code.
  Status Munmap(RemotePtr addr, uint64_t size);

  // Puts the thread's registers back and zeroes the cave. Called by the
  // destructor too.
  Status Restore();

 private:
  struct Stub {
    RemotePtr code;       // `syscall; jmp .`
    RemotePtr save_area;  // magic, thread id, registers
    bool operator==(const Stub&) const = default;
  };

  // The stub the next call runs from (the cave's written first), or nullopt
  // for the syscall instruction.
  Result<std::optional<Stub>> StubForCall();
  Status SaveRegistersAt(RemotePtr save_area);
  Status EraseCave();

  Tracee& tracee_;
  pid_t tid_;
  const ProcessMemory& memory_;
  InjectionSite site_;
  std::optional<Stub> island_stub_;  // an island page's stub runs the calls
  bool cave_written_ = false;        // the cave holds our stub
  std::optional<user_regs_struct> saved_;
  std::optional<RemotePtr> saved_at_;  // the save area that holds saved_
  bool moved_ = false;                 // the thread's registers are not its own
};

// The stubs a patcher that died may have left a thread at: island pages'
// and code caves' whose save area holds registers. Reads only.
struct StrandedStub {
  RemotePtr code;
  RemotePtr save_area;
  bool in_cave = false;  // zeroed once no thread waits there
};
std::vector<StrandedStub> FindStrandedStubs(const ProcessMemory& memory, const ProcessMaps& maps);

// The threads RestoreStrandedThreads gave their registers back, with what
// the last injected call of each returned (rax at the stub): an mmap the
// patcher died in the middle of names its new mapping only there.
struct StrandedThreads {
  int restored = 0;
  std::vector<uint64_t> last_results;
};

// For `hotpatch recover`: puts back the registers of every thread of the
// held process that waits at one of `stubs` (a patcher died while it ran
// injected calls), from the stub's save area; then zeroes the caves no
// thread waits at.
Result<StrandedThreads> RestoreStrandedThreads(Tracee& tracee, const ProcessMemory& memory,
                                               const std::vector<StrandedStub>& stubs);

}  // namespace patchlab::patchcore
