// DieWithParent: makes a freshly forked child end when the process that forked
// it does, so a killed lab or test binary (SIGKILL from a ctest timeout, a
// Ctrl-C of its parent) leaves no QEMU or spinning target program behind.
//
// It is PR_SET_PDEATHSIG, which has two edges a caller must know:
//  - The signal comes when the *thread* that called fork() exits, not when the
//    parent process does. A child forked from a std::thread or a pool worker
//    dies as soon as that thread returns, though the process lives on. Fork a
//    child that must outlive such a thread from a thread that lives as long as
//    the child should (the main thread, say).
//  - It covers this child only, not the processes it starts in turn. It
//    survives execve, except of a set-user-ID, set-group-ID or file-capability
//    program: the kernel clears it then.
//
// Thread-safety: async-signal-safe (prctl, getppid, _exit, abort), as the child
// of a multithreaded parent needs between fork and exec.
#pragma once

#include <signal.h>
#include <sys/types.h>

namespace patchlab {

// Has the kernel send `signal` to the calling process when the thread that
// forked it exits. When the parent is already gone (it died between fork and
// this call, so the signal would never come) it calls _exit(127) at once.
// REQUIRES: called in the child right after fork(); `parent` is the parent's
// getpid(), read before fork(); `signal` is a valid signal number.
void DieWithParent(pid_t parent, int signal = SIGKILL);

}  // namespace patchlab
