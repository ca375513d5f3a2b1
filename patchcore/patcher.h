// Patcher: applies, reverts, verifies and recovers live patches in one
// running process. This is the patch core's front door: `hotpatch` calls it
// (the lab's guest agent runs `hotpatch` in the guest).
//
// Apply, in order, changing nothing live before every check passed:
//  1. signature and manifest rules (sequence number, depends, replaces);
//  2. the target module by build-id; every old function found (.symtab,
//     .dynsym or the debug file) and its prologue checked;
//  3. the patch object prepared (symbols resolved) and every change planned
//     while the process runs; the journal saved;
//  4. the object and new island pages mapped (injected mmap, one thread
//     held, the others running: nothing refers to them yet), relocated,
//     protected, the fresh island slots written;
//  5. every thread stopped; no PC or return address in a function being
//     replaced (else resume, back off, retry until the timeout, then refuse
//     and unmap what step 4 mapped); the entries rewritten;
//  6. every thread resumed; the state committed.
// Any failure after the first change undoes every change (kRolledBack).
//
// Errors: kInvalidArgument (bad usage or input), kRefused (a rule said no,
// nothing changed), kRolledBack, kTargetGone; others are internal failures.
//
// Thread-safety: a Patcher belongs to one thread (ptrace); it holds the
// process's state lock, so patchers of one process run one at a time.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "patchcore/patch_package.h"
#include "patchcore/patch_state.h"
#include "patchcore/prepared_package.h"
#include "patchcore/remote_syscall.h"

namespace patchlab::patchcore {

struct ApplyOptions {
  std::filesystem::path pubkey;  // required unless allow_unsigned
  bool allow_unsigned = false;
  std::chrono::milliseconds timeout{2000};
};

struct FunctionReport {
  std::string name;
  RemotePtr old_addr;
  RemotePtr new_addr;
};

struct ApplyReport {
  std::string patch_id;
  uint64_t seq = 0;
  std::vector<FunctionReport> functions;
  std::chrono::microseconds pause{0};    // the whole process stopped, last attempt
  std::chrono::microseconds attach{0};   // until every thread had stopped
  std::chrono::microseconds staging{0};  // one thread held to map the object, before
  int retries = 0;                       // stack-check attempts that found a thread inside
  uint64_t mapped_bytes = 0;             // patch object plus new island pages
  uint64_t island_bytes = 0;             // of which new island pages
  pid_t inherited_from = 0;              // the stack was adopted from this process first (fork)
  std::vector<std::string> warnings;
};

struct RevertReport {
  std::vector<std::string> reverted;  // ids, top first
  pid_t inherited_from = 0;           // the stack was adopted from this process first (fork)
  std::chrono::microseconds pause{0};
  int retries = 0;
};

struct VerifyReport {
  int checked = 0;
  std::vector<std::string> mismatches;  // empty: everything matches the stack
  bool ok() const { return mismatches.empty(); }
};

struct RecoverReport {
  bool had_journal = false;
  int stranded_threads = 0;  // threads given their registers back (killed injection)
  std::string action;        // "none", "rolled back apply of ID", "completed revert of ID", ...
};

class Patcher {
 public:
  // Takes the state lock of `pid`. kTargetGone when it does not exist.
  static Result<Patcher> Open(pid_t pid);

  Result<ApplyReport> Apply(const PatchPackage& package, const ApplyOptions& options);
  // The same with the package's shared work done once (apply --system); its
  // signature was checked by PreparedPackage::Prepare.
  Result<ApplyReport> Apply(const PreparedPackage& prepared, const ApplyOptions& options);
  // Reverts patch `id` (any position in the stack), or every patch when nullopt.
  Result<RevertReport> Revert(std::optional<std::string> id,
                              std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));
  // The recorded stack (also while an interrupted operation awaits `recover`:
  // see HasPendingJournal).
  Result<ProcessState> State() const;
  bool HasPendingJournal() const;
  // A process forked from a patched one runs its patched code without a
  // record of its own: when this one has none, finds the record it inherited
  // (internal/inherited_state.h), checks it byte for byte and saves it as
  // its own. Returns the pid it came from, or 0 when there was nothing to
  // adopt; kRefused when it holds island pages no record matches. Apply and
  // Revert do this first on their own.
  Result<pid_t> AdoptInherited();
  Result<VerifyReport> Verify() const;
  Result<RecoverReport> Recover(
      std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));

  pid_t pid() const { return pid_; }
  uint64_t start_time() const { return store_.start_time(); }

 private:
  Patcher(pid_t pid, StateStore store) : pid_(pid), store_(std::move(store)) {}
  // The stack an apply or revert starts from; kRefused while an interrupted
  // operation awaits `recover`.
  Result<ProcessState> LoadForChange() const;
  // Takes out the spin traps a killed patcher left; true when there were any.
  Result<bool> TakeOutParkTraps();
  // Puts back the registers of threads a killed patcher left at an island's
  // spin stub; how many.
  Result<StrandedThreads> RestoreStranded();
  pid_t pid_;
  StateStore store_;
};

}  // namespace patchlab::patchcore
