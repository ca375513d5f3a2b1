// StagedObject: the patch object and new island pages of one apply, mapped,
// filled and protected while the process runs, so that the stop-the-world
// pause covers only the consistency check and the jump writes.
//
// One thread is held for the injected syscalls (mmap, mprotect); the others
// run on. That is safe because nothing refers to the new pages until the
// switch writes the jumps: no thread can run in them, and the fresh slots
// written into existing island pages are slots no jump leads to yet. The
// write-ahead journal lists every mapping (with its first bytes) before it
// is made, so `hotpatch recover` can take it out again after a crash.
//
// Unless Keep() is called, the destructor unstages: it holds one thread
// again, puts back the bytes of slots written into existing island pages,
// and unmaps what was mapped.
//
// Thread-safety: ptrace; confined to the thread that staged it.
#pragma once

#include <sys/types.h>

#include <chrono>

#include "base/error.h"
#include "patchcore/internal/apply_plan.h"
#include "patchcore/process_memory.h"
#include "patchcore/remote_ptr.h"
#include "patchcore/remote_syscall.h"

namespace patchlab::patchcore::internal {

class StagedObject {
 public:
  // Maps and fills everything `plan` maps, and writes its fresh slots. On
  // failure whatever was made is undone before returning (kRolledBack is for
  // the caller to decide; the error says what failed).
  static Result<StagedObject> Stage(pid_t pid, const ApplyPlan& plan, const ProcessMemory& memory,
                                    const InjectionSite& injection);

  StagedObject(StagedObject&& other) noexcept;
  StagedObject& operator=(StagedObject&&) = delete;
  StagedObject(const StagedObject&) = delete;
  StagedObject& operator=(const StagedObject&) = delete;
  ~StagedObject();

  // Whether every staged page still starts with what was written there.
  bool Intact() const;
  // The pages belong to the process from now on (the switch succeeded).
  void Keep() { staged_ = false; }
  // Takes everything out again now. Fails when a thread could not be held or
  // a slot's bytes not put back; the journal must then stay for `recover`.
  Status Unstage();

  // How long the injection thread was held.
  std::chrono::microseconds held() const { return held_; }

 private:
  StagedObject(pid_t pid, const ApplyPlan& plan, const ProcessMemory& memory,
               const InjectionSite& injection)
      : pid_(pid), plan_(&plan), memory_(&memory), injection_(injection) {}

  pid_t pid_;
  const ApplyPlan* plan_;
  const ProcessMemory* memory_;
  InjectionSite injection_;
  bool staged_ = false;
  std::chrono::microseconds held_{0};
};

}  // namespace patchlab::patchcore::internal
