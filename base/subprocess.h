// Subprocess: start a program with argv and environment, capture its output to
// a pipe or file, wait for it with a timeout that kills it (and its process
// group), and tell a normal exit from a death by signal.
//
// The child dies with its parent: it gets SIGKILL when the thread that called
// Start() exits, which covers the whole process being killed (a ctest timeout,
// a Ctrl-C of its parent), so no QEMU or target program outlives the lab or
// test binary that started it. That is PR_SET_PDEATHSIG (base/parent_death.h):
// it is tied to the *starting thread*, so a child that must outlive a
// std::thread or pool worker is started from a longer-lived thread; and it
// reaches the child only, not the processes the child starts (the destructor
// and the timeout kill those, as its process group).
//
// Thread-safety: a Subprocess object belongs to one thread. Start() is safe to
// call from several threads at once (it only forks and execs).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"
#include "base/exit_status.h"
#include "base/scoped_fd.h"

namespace patchlab {

enum class OutputMode {
  kInherit,  // the parent's stream
  kNull,     // /dev/null
  kCapture,  // collected into SubprocessResult
  kFile,     // written to a file (created or truncated, mode 0644)
};

struct SubprocessOptions {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH when it has no '/'
  // The child's environment: the parent's, minus nothing, plus/overridden by env_set.
  // With clear_env, only env_set.
  std::vector<std::pair<std::string, std::string>> env_set;
  bool clear_env = false;
  std::string cwd;  // empty: the parent's

  std::optional<std::string> stdin_data;  // nullopt: /dev/null
  OutputMode stdout_mode = OutputMode::kCapture;
  OutputMode stderr_mode = OutputMode::kCapture;
  std::string stdout_path;        // with kFile
  std::string stderr_path;        // with kFile
  bool stderr_to_stdout = false;  // stderr goes wherever stdout goes

  // 0: no timeout. On timeout the process group gets SIGTERM, then SIGKILL after kill_grace.
  std::chrono::milliseconds timeout{0};
  std::chrono::milliseconds kill_grace{500};
};

struct SubprocessResult {
  ExitStatus status;
  std::string stdout_data;  // with kCapture
  std::string stderr_data;  // with kCapture
  std::chrono::microseconds wall{0};
};

class Subprocess {
 public:
  // Starts the program. Fails (naming argv[0]) when it cannot be executed:
  // not found, not executable, an output file that cannot be opened.
  // The child is SIGKILLed when the calling thread exits (see the top).
  static Result<Subprocess> Start(SubprocessOptions options);

  Subprocess(Subprocess&& other) noexcept;
  Subprocess& operator=(Subprocess&& other) noexcept;
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;
  // A child still running is killed (SIGKILL to its group) and reaped.
  ~Subprocess();

  pid_t pid() const { return pid_; }

  // Waits until the child exits or the options' timeout passes (then kills it),
  // collecting captured output meanwhile. Call once.
  Result<SubprocessResult> Wait();

  // Sends `sig` to the child's process group.
  Status Signal(int sig);

 private:
  Subprocess() = default;
  void KillAndReap();

  SubprocessOptions options_;
  pid_t pid_ = -1;
  ScopedFd pidfd_;
  ScopedFd stdout_pipe_;
  ScopedFd stderr_pipe_;
  std::chrono::steady_clock::time_point started_;
  bool reaped_ = false;
};

// Start + Wait in one call.
Result<SubprocessResult> RunSubprocess(SubprocessOptions options);

}  // namespace patchlab
