#include "patchcore/tracee.h"

#include <dirent.h>
#include <sched.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <thread>

#include "base/file_util.h"
#include "base/log.h"
#include "base/proc_stat.h"

namespace patchlab::patchcore {
namespace {

// Thread ids in /proc/PID/task, or kTargetGone.
Result<std::vector<pid_t>> ListThreads(pid_t pid) {
  std::string dir = fmt::format("/proc/{}/task", pid);
  DIR* d = ::opendir(dir.c_str());
  if (!d) return Fail(ErrorCode::kTargetGone, "pid {} is gone", pid);
  std::vector<pid_t> out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    out.push_back(static_cast<pid_t>(std::atoi(e->d_name)));
  }
  ::closedir(d);
  return out;
}

}  // namespace

void Tracee::Boost::Raise() {
  if (raised_) return;
  saved_policy_ = ::sched_getscheduler(0);
  if (saved_policy_ < 0 || ::sched_getparam(0, &saved_param_) != 0) return;
  sched_param fifo{};
  fifo.sched_priority = 1;
  if (::sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &fifo) == 0) {
    raised_ = true;
  } else {
    Log("patchcore")
        ->debug(
            "no real-time priority for the stop ({}); the pause may be longer "
            "when the target's threads keep every CPU busy",
            strerror(errno));
  }
}

void Tracee::Boost::Lower() {
  if (!std::exchange(raised_, false)) return;
  if (::sched_setscheduler(0, saved_policy_, &saved_param_) != 0) {
    Log("patchcore")->warn("restoring the patcher's scheduling policy: {}", strerror(errno));
  }
}

Tracee::Boost::Boost(Boost&& other) noexcept
    : raised_(std::exchange(other.raised_, false)),
      saved_policy_(other.saved_policy_),
      saved_param_(other.saved_param_) {}

Tracee::Tracee(Tracee&& other) noexcept
    : pid_(other.pid_),
      threads_(std::move(other.threads_)),
      first_stop_(other.first_stop_),
      attach_time_(other.attach_time_),
      attached_(std::exchange(other.attached_, false)),
      boost_(std::move(other.boost_)) {}

Tracee::~Tracee() { (void)Detach(); }

std::vector<pid_t> Tracee::threads() const {
  std::vector<pid_t> out;
  out.reserve(threads_.size());
  for (const Thread& t : threads_) out.push_back(t.tid);
  return out;
}

Tracee::Thread* Tracee::FindThread(pid_t tid) {
  for (Thread& t : threads_) {
    if (t.tid == tid) return &t;
  }
  return nullptr;
}

Result<Tracee> Tracee::Attach(pid_t pid, std::chrono::milliseconds stop_timeout) {
  Tracee tracee(pid);
  tracee.attached_ = true;
  tracee.boost_.Raise();
  if (::kill(pid, 0) != 0 && errno == ESRCH) {
    return Fail(ErrorCode::kTargetGone, "pid {} does not exist", pid);
  }
  auto held = tracee.HoldNewThreads(stop_timeout);
  if (!held) return std::unexpected(std::move(held.error()));
  if (tracee.threads_.empty()) return Fail(ErrorCode::kTargetGone, "pid {} is gone", pid);
  tracee.attach_time_ =
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - tracee.first_stop_);
  Log("patchcore")
      ->debug("pid {}: {} threads stopped in {} us", pid, tracee.threads_.size(),
              tracee.attach_time_.count());
  return tracee;
}

Result<Tracee> Tracee::AttachOne(pid_t pid, std::chrono::milliseconds stop_timeout) {
  Tracee tracee(pid);
  tracee.attached_ = true;
  auto tids = ListThreads(pid);
  if (!tids) return std::unexpected(std::move(tids.error()));
  // The main thread first: it is the one most processes keep.
  std::stable_partition(tids->begin(), tids->end(), [&](pid_t tid) { return tid == pid; });
  for (pid_t tid : *tids) {
    if (HasEnded(pid, tid)) continue;
    auto held = tracee.SeizeAndStop({tid}, Clock::now() + stop_timeout);
    if (!held) return std::unexpected(std::move(held.error()));
    if (held->empty()) continue;  // it exited meanwhile: the next one
    tracee.attach_time_ =
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - tracee.first_stop_);
    return tracee;
  }
  return Fail(ErrorCode::kTargetGone, "pid {} is gone", pid);
}

Result<std::vector<pid_t>> Tracee::HoldNewThreads(std::chrono::milliseconds stop_timeout) {
  const auto deadline = Clock::now() + stop_timeout;
  std::vector<pid_t> added;
  while (true) {
    auto tids = ListThreads(pid_);
    if (!tids) return std::unexpected(std::move(tids.error()));
    std::vector<pid_t> fresh;
    for (pid_t tid : *tids) {
      // A zombie thread (a main thread that called pthread_exit) never stops;
      // it also never runs again, so it needs no stopping.
      if (!FindThread(tid) && !HasEnded(pid_, tid)) fresh.push_back(tid);
    }
    if (fresh.empty()) break;
    auto held = SeizeAndStop(fresh, deadline);
    if (!held) return std::unexpected(std::move(held.error()));
    added.insert(added.end(), held->begin(), held->end());
  }
  return added;
}

Result<std::vector<pid_t>> Tracee::SeizeAndStop(const std::vector<pid_t>& tids,
                                                Clock::time_point deadline) {
  // Seize the batch first (the threads run on), then interrupt it in one
  // tight loop: the pause starts with the first interrupt.
  std::vector<pid_t> seized;
  for (pid_t tid : tids) {
    // TRACESYSGOOD: the syscall-stops of injected calls tell themselves apart.
    if (::ptrace(PTRACE_SEIZE, tid, nullptr, reinterpret_cast<void*>(PTRACE_O_TRACESYSGOOD)) != 0) {
      int err = errno;
      if (err == ESRCH) continue;  // exited meanwhile
      if (err == EPERM) {
        return std::unexpected(
            Error(ErrorCode::kRefused,
                  fmt::format("cannot ptrace thread {} of pid {} (is another tracer attached?)",
                              tid, pid_),
                  err));
      }
      return FailErrno(fmt::format("PTRACE_SEIZE thread {} of pid {}", tid, pid_), err);
    }
    threads_.push_back(Thread{tid, {}});
    seized.push_back(tid);
  }
  if (first_stop_ == Clock::time_point{} && !seized.empty()) first_stop_ = Clock::now();
  auto stopped = StopThreads(seized, deadline);
  if (!stopped) return std::unexpected(std::move(stopped.error()));
  std::vector<pid_t> held;
  for (pid_t tid : seized) {
    if (FindThread(tid)) held.push_back(tid);
  }
  return held;
}

Status Tracee::ResumeThreads(const std::vector<pid_t>& tids) {
  for (pid_t tid : tids) {
    if (::ptrace(PTRACE_CONT, tid, nullptr, nullptr) != 0 && errno != ESRCH) {
      return FailErrno(fmt::format("PTRACE_CONT thread {} of pid {}", tid, pid_));
    }
  }
  return {};
}

Status Tracee::StopThreads(const std::vector<pid_t>& tids, Clock::time_point deadline) {
  for (pid_t tid : tids) {
    if (::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) != 0 && errno != ESRCH) {
      return FailErrno(fmt::format("PTRACE_INTERRUPT thread {} of pid {}", tid, pid_));
    }
  }
  // Wait after interrupting the whole batch so the threads stop in parallel.
  std::vector<pid_t> exited;
  for (pid_t tid : tids) {
    Thread* t = FindThread(tid);
    if (!t) continue;
    auto stopped = WaitForStop(*t, deadline);
    if (!stopped) return std::unexpected(std::move(stopped.error()));
    if (!*stopped) exited.push_back(tid);
  }
  std::erase_if(threads_, [&](const Thread& t) {
    return std::find(exited.begin(), exited.end(), t.tid) != exited.end();
  });
  return {};
}

Result<bool> Tracee::WaitForStop(Thread& t, Clock::time_point deadline) {
  int spins = 0;
  while (true) {
    int status = 0;
    pid_t r = ::waitpid(t.tid, &status, __WALL | WNOHANG);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == ECHILD) return false;  // reaped or gone
      return FailErrno(fmt::format("waitpid thread {} of pid {}", t.tid, pid_));
    }
    if (r == 0) {
      if (Clock::now() > deadline) {
        return Fail(ErrorCode::kTimeout, "thread {} of pid {} did not stop", t.tid, pid_);
      }
      // Most threads stop within microseconds; spin a little before sleeping.
      if (++spins > 50) std::this_thread::sleep_for(std::chrono::microseconds(20));
      continue;
    }
    if (WIFEXITED(status) || WIFSIGNALED(status)) return false;
    if (!WIFSTOPPED(status)) continue;
    int event = status >> 16;
    int sig = WSTOPSIG(status);
    if (event == 0 && sig != SIGTRAP) {
      // A signal-delivery-stop: the thread is stopped, and the signal is
      // ours to deliver again later.
      t.pending_signals.push_back(sig);
    }
    return true;
  }
}

Result<user_regs_struct> Tracee::GetRegs(pid_t tid) const {
  user_regs_struct regs;
  if (::ptrace(PTRACE_GETREGS, tid, nullptr, &regs) != 0) {
    if (errno == ESRCH)
      return Fail(ErrorCode::kTargetGone, "thread {} of pid {} is gone", tid, pid_);
    return FailErrno(fmt::format("PTRACE_GETREGS thread {} of pid {}", tid, pid_));
  }
  return regs;
}

Status Tracee::SetRegs(pid_t tid, const user_regs_struct& regs) {
  if (::ptrace(PTRACE_SETREGS, tid, nullptr, &regs) != 0) {
    if (errno == ESRCH)
      return Fail(ErrorCode::kTargetGone, "thread {} of pid {} is gone", tid, pid_);
    return FailErrno(fmt::format("PTRACE_SETREGS thread {} of pid {}", tid, pid_));
  }
  return {};
}

Status Tracee::RunSyscall(pid_t tid) {
  Thread* t = FindThread(tid);
  if (!t) return Fail(ErrorCode::kInternal, "thread {} of pid {} is not held", tid, pid_);
  constexpr int kMaxStops = 64;
  int syscall_stops = 0;
  for (int stop = 0; stop < kMaxStops && syscall_stops < 2; ++stop) {
    if (::ptrace(PTRACE_SYSCALL, tid, nullptr, nullptr) != 0) {
      if (errno == ESRCH)
        return Fail(ErrorCode::kTargetGone, "thread {} of pid {} is gone", tid, pid_);
      return FailErrno(fmt::format("PTRACE_SYSCALL thread {} of pid {}", tid, pid_));
    }
    int status = 0;
    pid_t r;
    do {
      r = ::waitpid(tid, &status, __WALL);
    } while (r < 0 && errno == EINTR);
    if (r < 0) return FailErrno(fmt::format("waitpid thread {} of pid {}", tid, pid_));
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
      return Fail(ErrorCode::kTargetGone, "thread {} of pid {} exited in an injected call", tid,
                  pid_);
    }
    const int sig = WSTOPSIG(status);
    const int event = status >> 16;
    if (sig == (SIGTRAP | 0x80)) {
      ++syscall_stops;  // entry, then exit (PTRACE_O_TRACESYSGOOD)
    } else if (event == 0) {
      t->pending_signals.push_back(sig);  // a signal-delivery-stop: kept, not delivered now
    }
  }
  if (syscall_stops < 2) {
    return Fail(ErrorCode::kInternal, "thread {} of pid {} never completed an injected call", tid,
                pid_);
  }
  return {};
}

std::chrono::microseconds Tracee::held() const {
  if (released_ == Clock::time_point{}) return std::chrono::microseconds(0);
  return std::chrono::duration_cast<std::chrono::microseconds>(released_ - first_stop_);
}

Status Tracee::Detach() {
  if (!attached_) return {};
  attached_ = false;
  for (const Thread& t : threads_) {
    int sig = t.pending_signals.empty() ? 0 : t.pending_signals.front();
    if (::ptrace(PTRACE_DETACH, t.tid, nullptr, reinterpret_cast<void*>(static_cast<long>(sig))) !=
        0) {
      Log("patchcore")->debug("detach thread {} of pid {}: {}", t.tid, pid_, strerror(errno));
    }
    for (size_t i = 1; i < t.pending_signals.size(); ++i) {
      ::syscall(SYS_tgkill, pid_, t.tid, t.pending_signals[i]);
    }
  }
  threads_.clear();
  released_ = Clock::now();
  boost_.Lower();
  if (::kill(pid_, 0) != 0 && errno == ESRCH) {
    return Fail(ErrorCode::kTargetGone, "pid {} is gone", pid_);
  }
  return {};
}

}  // namespace patchlab::patchcore
