// Tracee: every thread of one process held in a ptrace stop.
//
// Attach() seizes each thread (PTRACE_SEIZE + PTRACE_INTERRUPT), waits until
// it stops, and re-reads /proc/PID/task until a pass finds no new thread, so
// threads born during the attach are caught too (a stopped thread cannot
// clone, so the loop ends). Threads that exit meanwhile are dropped.
// Signals that arrive while we hold a thread are kept and delivered again on
// detach. The destructor detaches (resuming every thread) on every exit path.
//
// Thread-safety: ptrace requests must come from the thread that attached, so a
// Tracee belongs to the thread that created it.
#pragma once

#include <sched.h>
#include <sys/types.h>
#include <sys/user.h>

#include <chrono>
#include <vector>

#include "base/error.h"
#include "patchcore/remote_ptr.h"

namespace patchlab::patchcore {

class Tracee {
 public:
  using Clock = std::chrono::steady_clock;

  // Stops every thread of `pid`. Errors: kTargetGone (pid gone), kRefused
  // (ptrace denied, e.g. another tracer), kTimeout (a thread did not stop
  // within `stop_timeout`). On failure every thread seized so far is released.
  static Result<Tracee> Attach(pid_t pid,
                               std::chrono::milliseconds stop_timeout = std::chrono::seconds(2));
  // Stops one thread of `pid` only (the main thread, or the first live one
  // when it has ended), for work that needs a stopped thread but not a
  // stopped process: injected syscalls on memory nothing refers to yet. The
  // other threads run on. Errors as Attach.
  static Result<Tracee> AttachOne(pid_t pid,
                                  std::chrono::milliseconds stop_timeout = std::chrono::seconds(2));

  Tracee(Tracee&& other) noexcept;
  Tracee& operator=(Tracee&& other) = delete;
  Tracee(const Tracee&) = delete;
  Tracee& operator=(const Tracee&) = delete;
  // Detaches (see Detach), ignoring errors: the threads run on.
  ~Tracee();

  pid_t pid() const { return pid_; }
  // Thread ids, the ones still held.
  std::vector<pid_t> threads() const;
  // When the first thread was asked to stop, and how long until all had stopped.
  Clock::time_point first_stop() const { return first_stop_; }
  std::chrono::microseconds attach_time() const { return attach_time_; }
  // How long the process was held: from the first stop until Detach had
  // let the last thread go (not until Detach returned: the patcher, back
  // from real-time priority among the threads it just released, may wait
  // its turn to run then, and that is not the target's pause). Zero
  // before Detach.
  std::chrono::microseconds held() const;

  Result<user_regs_struct> GetRegs(pid_t tid) const;
  Status SetRegs(pid_t tid, const user_regs_struct& regs);

  // Resumes `tid` until it has entered and left one system call
  // (PTRACE_SYSCALL twice) and stops it there. Signals that arrive meanwhile
  // are kept for later delivery. Nothing is left armed in the thread: a
  // tracer that dies at any point leaves it simply running on.
  Status RunSyscall(pid_t tid);

  // Threads of the process not held yet (born since the attach, e.g. while
  // some held threads ran on): seized and stopped like Attach does. Returns
  // their ids.
  Result<std::vector<pid_t>> HoldNewThreads(
      std::chrono::milliseconds stop_timeout = std::chrono::seconds(2));

  // Lets held threads run on (still traced), and stops them again. Threads
  // that exit meanwhile are dropped by StopThreads.
  Status ResumeThreads(const std::vector<pid_t>& tids);
  Status StopThreads(const std::vector<pid_t>& tids, Clock::time_point deadline);

  // Resumes every thread and ends tracing; returns when all are released. Safe
  // to call twice. Fails only if the whole process vanished (kTargetGone).
  Status Detach();

 private:
  struct Thread {
    pid_t tid;
    std::vector<int> pending_signals;  // to deliver again on detach
  };
  explicit Tracee(pid_t pid) : pid_(pid) {}
  Thread* FindThread(pid_t tid);
  // Seizes `tids` (running), then interrupts them in one tight loop and waits
  // until each has stopped; threads that exit meanwhile are dropped. Returns
  // the ones held.
  Result<std::vector<pid_t>> SeizeAndStop(const std::vector<pid_t>& tids,
                                          Clock::time_point deadline);
  // Waits until `tid` reports a stop. Returns false when the thread exited.
  Result<bool> WaitForStop(Thread& t, Clock::time_point deadline);

  // While threads are held, the tracer thread runs SCHED_FIFO (when allowed):
  // a target whose threads keep every CPU busy would otherwise preempt it
  // between ptrace requests and stretch the pause by whole time slices.
  class Boost {
   public:
    Boost() = default;
    Boost(Boost&& other) noexcept;
    Boost& operator=(Boost&&) = delete;
    ~Boost() { Lower(); }
    void Raise();
    void Lower();

   private:
    bool raised_ = false;
    int saved_policy_ = 0;
    sched_param saved_param_{};
  };

  pid_t pid_;
  std::vector<Thread> threads_;
  Clock::time_point first_stop_{};
  Clock::time_point released_{};
  std::chrono::microseconds attach_time_{0};
  bool attached_ = false;
  Boost boost_;
};

}  // namespace patchlab::patchcore
