// StopWorld: stop every thread of a process at a moment when no thread runs in
// or returns into the guarded ranges; what patcher Apply, Revert and Recover
// share.
//
// A thread found inside is not waited for by releasing the whole process and
// sampling it again: a function that is hot in several threads at once is
// then almost never free in all of them at the same moment, and threads that
// are stopped and resumed over and over can be starved by the scheduler.
// Instead the threads found outside stay stopped ("parked"), and only the
// busy ones run on for short, growing intervals, each looked at again after
// every interval, until all have left. Threads they create meanwhile are
// caught and checked too. A busy thread that does not leave within the park
// budget (it sleeps or spins inside) releases the process; the attempt is
// repeated with backoff until the deadline, then refused.
//
// So that a thread that is inside nearly all the time is still caught once it
// leaves, the place it returns to (the return address of its outermost
// guarded frame) gets a spin trap, `jmp .` (EB FE), for as long as the busy
// threads run: a thread that reaches it waits there, outside, until it is
// looked at and parked. Traps go only where no held thread is stopped inside
// the two bytes, are recorded in the park journal before they are written,
// and are removed while every thread is stopped, so no thread ever executes
// past them. A patcher killed meanwhile leaves threads spinning, never
// crashing; `hotpatch recover` takes the traps out again (RemoveParkTraps).
//
// Thread-safety: ptrace; call from the thread that will own the Tracee.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <vector>

#include "base/error.h"
#include "patchcore/module_set.h"
#include "patchcore/process_memory.h"
#include "patchcore/stack_check.h"
#include "patchcore/tracee.h"

namespace patchlab::patchcore::internal {

struct StoppedWorld {
  Tracee tracee;
  int retries = 0;  // intervals parked plus whole attempts repeated
};

inline constexpr uint8_t kSpinTrap[2] = {0xeb, 0xfe};  // jmp .

// Takes the spin traps of `park_journal` out of the process (the threads must
// be held), where they are still in place; removes the journal. Succeeds when
// there is no journal.
Status RemoveParkTraps(const ProcessMemory& memory, const std::filesystem::path& park_journal);

// Every thread of `pid` stopped with none in or returning into `guarded`.
// kRefused naming the thread and function when the deadline passes with a
// thread still inside; other errors as Tracee::Attach. `park_journal` empty:
// no spin traps (sampling alone). `guarded` empty: the first stop is returned.
// `modules` (may be null): the process's modules as planned, whose decoded
// files then serve the unwinding (StackChecker).
Result<StoppedWorld> StopWorld(pid_t pid, const ProcessMemory& memory,
                               const std::vector<GuardedRange>& guarded,
                               std::chrono::milliseconds timeout,
                               const std::filesystem::path& park_journal = {},
                               const ModuleSet* modules = nullptr);

}  // namespace patchlab::patchcore::internal
