// RollbackGuard: the undo of one operation on a stopped process. Every write
// (and, with injected syscalls, every mapping) made through it is remembered;
// unless Commit() is called, the guard undoes them when it goes: the writes
// newest first (old bytes back), then the mappings (unmapped). Undo() does
// the same at once and says whether it got all the way, so the caller can
// keep the journal for `hotpatch recover` when it did not.
//
// REQUIRES: every thread of the process is held while the guard writes or
// undoes (the caller's Tracee outlives the guard).
// Thread-safety: confined to the tracer thread, like the Tracee.
#pragma once

#include <vector>

#include "base/error.h"
#include "patchcore/journal.h"
#include "patchcore/process_memory.h"
#include "patchcore/remote_ptr.h"
#include "patchcore/remote_syscall.h"

namespace patchlab::patchcore::internal {

class RollbackGuard {
 public:
  // `sys` may be null when the operation maps nothing.
  RollbackGuard(const ProcessMemory& memory, RemoteSyscall* sys) : memory_(memory), sys_(sys) {}
  RollbackGuard(const RollbackGuard&) = delete;
  RollbackGuard& operator=(const RollbackGuard&) = delete;
  // Undoes everything unless committed; errors are logged.
  ~RollbackGuard();

  // Writes `w.new_bytes` at `w.addr`; remembered only once written.
  Status Write(const JournalWrite& w);
  // Maps `range` anonymous with `prot` at exactly its address
  // (MAP_FIXED_NOREPLACE); kIo when the range is no longer free.
  // REQUIRES: constructed with `sys`.
  Status Map(RemoteRange range, int prot);

  // Keeps every change: the destructor does nothing any more.
  void Commit() { committed_ = true; }
  // Undoes every write, newest first, then unmaps every mapping. Fails naming
  // the address when a write could not be undone (the rest stays as it is,
  // for `hotpatch recover`); unmapping failures are only logged, since
  // nothing refers to those pages any more.
  Status Undo();

 private:
  const ProcessMemory& memory_;
  RemoteSyscall* sys_;
  std::vector<JournalWrite> done_;
  std::vector<RemoteRange> mapped_;
  bool committed_ = false;
};

}  // namespace patchlab::patchcore::internal
