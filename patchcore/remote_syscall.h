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
// kernel then lets the thread go on from wherever it is:
//  - from an existing `syscall` instruction of the target: the thread's own
//    registers are put back right after each call, so only the few
//    microseconds of one call are exposed (it would run on with ours);
//  - from the spin stub of one of our island pages (UseStub): `syscall;
//    jmp .`. Between calls the thread waits at the `jmp .`, and its own
//    registers are kept in the page's save area first, so a patcher killed
//    at any point leaves the thread spinning, never running on with ours;
//    `hotpatch recover` puts them back (RestoreStrandedThreads).
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

// An address in an executable mapping of the target that holds the bytes
// 0f 05 (`syscall`); the vdso first, then any executable file mapping.
// kNotFound when the target has none.
Result<RemotePtr> FindSyscallInstruction(const ProcessMemory& memory, const ProcessMaps& maps);

class RemoteSyscall {
 public:
  // REQUIRES: `tid` is held stopped by `tracee`, which outlives this object.
  RemoteSyscall(Tracee& tracee, pid_t tid, RemotePtr syscall_insn);
  ~RemoteSyscall();
  RemoteSyscall(const RemoteSyscall&) = delete;
  RemoteSyscall& operator=(const RemoteSyscall&) = delete;

  // From now on, calls run from the spin stub of island page `island` (see
  // the top). False, with nothing changed, when that page holds no stub
  // (one made by an older hotpatch) or cannot be read.
  bool UseStub(const ProcessMemory& memory, RemotePtr island);
  // UseStub with the first of `islands` that holds a stub and lies outside
  // every range of `going` (pages about to be unmapped).
  void UseStubOf(const ProcessMemory& memory, const std::vector<RemotePtr>& islands,
                 const std::vector<RemoteRange>& going = {});

  // Runs syscall `nr` with `args` in the thread. Returns the raw result
  // (negative errno on failure); fails only if ptrace itself fails.
  Result<int64_t> Call(long nr, std::array<uint64_t, 6> args);

  // mmap(hint, size, prot, flags, -1, 0). Fails naming the pid and errno.
  Result<RemotePtr> Mmap(RemotePtr hint, uint64_t size, int prot, int flags);
  Status Mprotect(RemotePtr addr, uint64_t size, int prot);
  // A range that holds the stub in use is unmapped from the syscall
  // instruction instead: a thread must not be left inside unmapped code.
  Status Munmap(RemotePtr addr, uint64_t size);

  // Puts the thread's registers back. Called by the destructor too.
  Status Restore();

 private:
  Status SaveRegistersInStub();

  Tracee& tracee_;
  pid_t tid_;
  RemotePtr insn_;
  std::optional<RemotePtr> stub_;  // island page whose stub runs the calls
  const ProcessMemory* memory_ = nullptr;
  std::optional<user_regs_struct> saved_;
  bool saved_in_stub_ = false;  // the save area of stub_ holds saved_
  bool moved_ = false;          // the thread's registers are not its own
};

// For `hotpatch recover`: puts back the registers of every thread of the
// held process that waits at the spin stub of one of its island pages
// (a patcher died while it ran injected calls), from that page's save area.
// Returns how many threads it restored.
Result<int> RestoreStrandedThreads(Tracee& tracee, const ProcessMemory& memory,
                                   const ProcessMaps& maps);

}  // namespace patchlab::patchcore
