// Stack check: is any thread of a stopped process executing, or about to
// return into, code we are about to replace or unmap?
//
// Every held thread is unwound with libunwind (the thread's PC, then each
// return address). A PC inside a range, or a return address whose call lies
// inside one, is a hit. Memory is read through /proc/PID/mem in pages (not
// word by word with PTRACE_PEEKDATA) to keep the process's pause short.
// Given the process's modules, their unwind tables are read from the decoded
// files (eh_frame_index.h); code elsewhere (the vdso, a module without
// .eh_frame_hdr) is left to libunwind-ptrace, which opens the file itself.
//
// Thread-safety: one StackChecker per Tracee, on the tracer thread.
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "patchcore/eh_frame_index.h"
#include "patchcore/module_set.h"
#include "patchcore/process_maps.h"
#include "patchcore/process_memory.h"
#include "patchcore/remote_ptr.h"
#include "patchcore/tracee.h"

namespace patchlab::patchcore {

struct GuardedRange {
  RemoteRange range;
  std::string name;  // the function (or "patch object of ID") it holds
};

struct StackHit {
  pid_t tid = 0;
  RemotePtr address;
  int frame = 0;  // 0: the PC
  std::string name;
  // Where the thread goes once it has left every guarded frame: the return
  // address of its outermost guarded frame. Unknown (nullopt) when unwinding
  // did not reach a frame outside them.
  std::optional<RemotePtr> escape;
};

class StackChecker {
 public:
  // `modules` (may be null) are the process's loaded modules as planned;
  // they must outlive the checker.
  explicit StackChecker(const ModuleSet* modules = nullptr);
  ~StackChecker();
  StackChecker(const StackChecker&) = delete;
  StackChecker& operator=(const StackChecker&) = delete;

  // Loads the unwind tables of every module of `pid` the checker was not
  // given while the process still runs, so that the checks made while it is
  // stopped do not. Optional; a failure only leaves the loading to the checks.
  void Prepare(pid_t pid, const ProcessMemory& memory);

  // The first hit among all threads of `tracee`, or nullopt when none.
  // Fails only when a thread's registers cannot be read (e.g. it vanished).
  Result<std::optional<StackHit>> Check(const Tracee& tracee, const ProcessMemory& memory,
                                        const std::vector<GuardedRange>& ranges);

  // One hit per thread of `tids` (held by `tracee`) that runs in or returns
  // into a range; only the first when `first_only`.
  Result<std::vector<StackHit>> Hits(const Tracee& tracee, const ProcessMemory& memory,
                                     const std::vector<GuardedRange>& ranges,
                                     const std::vector<pid_t>& tids, bool first_only = false);

 private:
  void* UptFor(pid_t pid, uint64_t ip, void* fallback);
  // The index of the given module that holds `addr`, or null.
  const EhFrameIndex* IndexFor(uint64_t addr) const;

  void* address_space_;  // unw_addr_space_t, kept so unwind info is cached across calls
  std::optional<ProcessMaps> maps_;
  std::map<std::string, void*> module_upts_;  // libunwind-ptrace UPT per module path
  std::vector<EhFrameIndex> indexes_;         // of the modules given
  bool all_indexed_ = false;                  // every module given has one
};

}  // namespace patchlab::patchcore
