// RemoteSyscall: makes one stopped thread of a tracee run system calls
// (mmap, mprotect, munmap) on our behalf, and nothing else.
//
// The thread is pointed at an existing `syscall` instruction of the target
// and single-stepped over it: no target code runs, so nothing that could take
// a lock (no malloc, no dlopen). orig_rax is set to -1 so the kernel does not
// treat our call as a syscall to restart. The thread's registers are restored
// by Restore() or the destructor, and an interrupted syscall of the thread
// itself restarts normally afterwards.
//
// Thread-safety: like Tracee, confined to the attaching thread.
#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <array>
#include <cstdint>
#include <optional>

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

  // Runs syscall `nr` with `args` in the thread. Returns the raw result
  // (negative errno on failure); fails only if ptrace itself fails.
  Result<int64_t> Call(long nr, std::array<uint64_t, 6> args);

  // mmap(hint, size, prot, flags, -1, 0). Fails naming the pid and errno.
  Result<RemotePtr> Mmap(RemotePtr hint, uint64_t size, int prot, int flags);
  Status Mprotect(RemotePtr addr, uint64_t size, int prot);
  Status Munmap(RemotePtr addr, uint64_t size);

  // Puts the thread's registers back. Called by the destructor too.
  Status Restore();

 private:
  Tracee& tracee_;
  pid_t tid_;
  RemotePtr insn_;
  std::optional<user_regs_struct> saved_;
  bool stepped_ = false;  // the trap flag needs clearing (Tracee::ClearStepFlag)
};

}  // namespace patchlab::patchcore
