#include "base/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <map>

#include "base/parent_death.h"

extern char** environ;

namespace patchlab {
namespace {

using Clock = std::chrono::steady_clock;

Result<ScopedFd> OpenOutputFile(const std::string& path) {
  if (path.empty()) return Fail(ErrorCode::kInvalidArgument, "output mode kFile needs a path");
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return FailErrno("open " + path);
  return ScopedFd(fd);
}

Result<ScopedFd> OpenNull(int flags) {
  int fd = ::open("/dev/null", flags | O_CLOEXEC);
  if (fd < 0) return FailErrno("open /dev/null");
  return ScopedFd(fd);
}

// Where a child's output stream goes: the fd to dup2 in the child (or -1 to
// inherit), and the parent's read end when captured.
struct OutputPlan {
  ScopedFd child_fd;
  ScopedFd parent_read;
};

Result<OutputPlan> PlanOutput(OutputMode mode, const std::string& path) {
  OutputPlan plan;
  switch (mode) {
    case OutputMode::kInherit:
      break;
    case OutputMode::kNull: {
      auto fd = OpenNull(O_WRONLY);
      if (!fd) return std::unexpected(fd.error());
      plan.child_fd = std::move(*fd);
      break;
    }
    case OutputMode::kFile: {
      auto fd = OpenOutputFile(path);
      if (!fd) return std::unexpected(fd.error());
      plan.child_fd = std::move(*fd);
      break;
    }
    case OutputMode::kCapture: {
      int fds[2];
      if (::pipe2(fds, O_CLOEXEC) != 0) return FailErrno("pipe2");
      plan.parent_read.Reset(fds[0]);
      plan.child_fd.Reset(fds[1]);
      break;
    }
  }
  return plan;
}

std::vector<std::string> BuildEnv(const SubprocessOptions& options) {
  std::map<std::string, std::string> env;
  if (!options.clear_env) {
    for (char** e = environ; e && *e; ++e) {
      std::string_view entry(*e);
      size_t eq = entry.find('=');
      if (eq == std::string_view::npos) continue;
      env[std::string(entry.substr(0, eq))] = std::string(entry.substr(eq + 1));
    }
  }
  for (const auto& [k, v] : options.env_set) env[k] = v;
  std::vector<std::string> out;
  out.reserve(env.size());
  for (const auto& [k, v] : env) out.push_back(fmt::format("{}={}", k, v));
  return out;
}

// Reads whatever is available on `fd` into `out`; returns false at EOF or error.
bool DrainOnce(int fd, std::string& out) {
  char buf[65536];
  ssize_t n = ::read(fd, buf, sizeof buf);
  if (n > 0) {
    out.append(buf, static_cast<size_t>(n));
    return true;
  }
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
  return false;
}

// stdin of a child: `data` in a memfd, held up front so the child can never
// block us; /dev/null without data.
Result<ScopedFd> OpenStdin(const std::optional<std::string>& data) {
  if (!data) return OpenNull(O_RDONLY);
  ScopedFd fd(::memfd_create("patchlab-stdin", MFD_CLOEXEC));
  if (!fd) return FailErrno("memfd_create");
  size_t done = 0;
  while (done < data->size()) {
    ssize_t n = ::write(fd.get(), data->data() + done, data->size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FailErrno("write stdin memfd");
    done += static_cast<size_t>(n);
  }
  ::lseek(fd.get(), 0, SEEK_SET);
  return fd;
}

// err_fd's value for "stderr goes wherever stdout goes".
constexpr int kErrWithOut = -2;

// Everything the child needs, prepared before fork: after it, only
// async-signal-safe calls are allowed.
struct ChildSetup {
  pid_t parent = 0;
  int stdin_fd = -1;
  int out_fd = -1;  // < 0: inherit
  int err_fd = -1;  // < 0: inherit; kErrWithOut: as stdout
  const char* cwd = nullptr;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  int status_fd = -1;  // the exec failure's errno goes here
};

// The child's side of fork: never returns.
[[noreturn]] void RunChild(const ChildSetup& c) {
  // First, to keep short the window in which a parent that dies leaves the
  // child behind. It is tied to this thread, which is safe for the lab's
  // callers: each starts and stops its child on one thread (a runner worker
  // boots, uses and kills its cell's QEMU or workload itself).
  DieWithParent(c.parent);
  ::setpgid(0, 0);
  // Restore default dispositions and an empty mask: a parent's ignored
  // SIGPIPE or blocked signals must not leak into the program.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig = 1; sig < NSIG; ++sig) ::signal(sig, SIG_DFL);
  ::dup2(c.stdin_fd, 0);
  if (c.out_fd >= 0) ::dup2(c.out_fd, 1);
  if (c.err_fd >= 0) ::dup2(c.err_fd, 2);
  if (c.err_fd == kErrWithOut) ::dup2(1, 2);
  if (c.cwd == nullptr || ::chdir(c.cwd) == 0) ::execvpe(c.argv[0], c.argv, c.envp);
  int e = errno;
  [[maybe_unused]] ssize_t n = ::write(c.status_fd, &e, sizeof e);
  ::_exit(127);
}

}  // namespace

Result<Subprocess> Subprocess::Start(SubprocessOptions options) {
  if (options.argv.empty()) return Fail(ErrorCode::kInvalidArgument, "subprocess: empty argv");
  const std::string& program = options.argv[0];

  auto stdin_fd = OpenStdin(options.stdin_data);
  if (!stdin_fd) return std::unexpected(stdin_fd.error());

  auto out = PlanOutput(options.stdout_mode, options.stdout_path);
  if (!out) return std::unexpected(std::move(out.error()).AddContext("stdout of " + program));
  OutputPlan err_plan;
  if (!options.stderr_to_stdout) {
    auto err = PlanOutput(options.stderr_mode, options.stderr_path);
    if (!err) return std::unexpected(std::move(err.error()).AddContext("stderr of " + program));
    err_plan = std::move(*err);
  }

  // Everything the child touches is prepared before fork: after it, only
  // async-signal-safe calls are allowed.
  std::vector<std::string> env_strings = BuildEnv(options);
  std::vector<char*> envp;
  envp.reserve(env_strings.size() + 1);
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<char*> argv;
  argv.reserve(options.argv.size() + 1);
  for (auto& s : options.argv) argv.push_back(s.data());
  argv.push_back(nullptr);

  int status_pipe[2];  // the child reports an exec failure's errno here
  if (::pipe2(status_pipe, O_CLOEXEC) != 0) return FailErrno("pipe2");
  ScopedFd status_read(status_pipe[0]);
  ScopedFd status_write(status_pipe[1]);

  ChildSetup child;
  child.parent = ::getpid();
  child.stdin_fd = stdin_fd->get();
  child.out_fd = out->child_fd.get();
  child.err_fd = options.stderr_to_stdout ? kErrWithOut : err_plan.child_fd.get();
  child.cwd = options.cwd.empty() ? nullptr : options.cwd.c_str();
  child.argv = argv.data();
  child.envp = envp.data();
  child.status_fd = status_write.get();
  pid_t pid = ::fork();
  if (pid < 0) return FailErrno("fork for " + program);
  if (pid == 0) RunChild(child);
  // Also set the group from the parent: whichever runs first wins the race
  // against a kill of the group.
  ::setpgid(pid, pid);
  status_write.Reset();

  Subprocess sp;
  sp.options_ = std::move(options);
  sp.pid_ = pid;
  sp.started_ = Clock::now();
  sp.stdout_pipe_ = std::move(out->parent_read);
  sp.stderr_pipe_ = std::move(err_plan.parent_read);

  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(status_read.get(), &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  if (n == sizeof child_errno) {
    int status;
    ::waitpid(pid, &status, 0);
    sp.reaped_ = true;
    return std::unexpected(Error::FromErrno(
        sp.options_.cwd.empty() ? "exec " + program : "exec " + program + " in " + sp.options_.cwd,
        child_errno));
  }
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    sp.KillAndReap();
    return FailErrno("pidfd_open");
  }
  sp.pidfd_.Reset(pidfd);
  return sp;
}

Subprocess::Subprocess(Subprocess&& other) noexcept { *this = std::move(other); }

Subprocess& Subprocess::operator=(Subprocess&& other) noexcept {
  if (this != &other) {
    if (pid_ > 0 && !reaped_) KillAndReap();
    options_ = std::move(other.options_);
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::move(other.pidfd_);
    stdout_pipe_ = std::move(other.stdout_pipe_);
    stderr_pipe_ = std::move(other.stderr_pipe_);
    started_ = other.started_;
    reaped_ = std::exchange(other.reaped_, true);
  }
  return *this;
}

Subprocess::~Subprocess() {
  if (pid_ > 0 && !reaped_) KillAndReap();
}

void Subprocess::KillAndReap() {
  ::kill(-pid_, SIGKILL);
  ::kill(pid_, SIGKILL);
  int status;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  reaped_ = true;
}

Status Subprocess::Signal(int sig) {
  if (reaped_) return Fail(ErrorCode::kTargetGone, "pid {} has already exited", pid_);
  if (::kill(-pid_, sig) != 0 && ::kill(pid_, sig) != 0) {
    return FailErrno(fmt::format("kill pid {} with {}", pid_, SignalName(sig)));
  }
  return {};
}

Result<SubprocessResult> Subprocess::Wait() {
  if (reaped_) return Fail(ErrorCode::kInvalidArgument, "pid {}: Wait called twice", pid_);
  SubprocessResult result;
  const bool has_deadline = options_.timeout.count() > 0;
  auto deadline = started_ + options_.timeout;
  bool term_sent = false;
  bool exited = false;

  while (!exited) {
    pollfd fds[3];
    int nfds = 0;
    fds[nfds++] = {pidfd_.get(), POLLIN, 0};
    int out_index = -1, err_index = -1;
    if (stdout_pipe_) {
      out_index = nfds;
      fds[nfds++] = {stdout_pipe_.get(), POLLIN, 0};
    }
    if (stderr_pipe_) {
      err_index = nfds;
      fds[nfds++] = {stderr_pipe_.get(), POLLIN, 0};
    }

    int wait_ms = -1;
    if (has_deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      wait_ms = static_cast<int>(std::max<int64_t>(0, left.count()));
    }
    int ready = ::poll(fds, static_cast<nfds_t>(nfds), wait_ms);
    if (ready < 0 && errno != EINTR) return FailErrno("poll");
    if (ready > 0) {
      if (out_index >= 0 && fds[out_index].revents &&
          !DrainOnce(stdout_pipe_.get(), result.stdout_data)) {
        stdout_pipe_.Reset();
      }
      if (err_index >= 0 && fds[err_index].revents &&
          !DrainOnce(stderr_pipe_.get(), result.stderr_data)) {
        stderr_pipe_.Reset();
      }
      if (fds[0].revents) exited = true;
    }
    if (!exited && has_deadline && Clock::now() >= deadline) {
      if (!term_sent) {
        result.status.timed_out = true;
        ::kill(-pid_, SIGTERM);
        term_sent = true;
        deadline = Clock::now() + options_.kill_grace;
      } else {
        ::kill(-pid_, SIGKILL);
        ::kill(pid_, SIGKILL);
        deadline = Clock::now() + std::chrono::hours(1);  // SIGKILL cannot be refused
      }
    }
  }

  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0) {
    if (errno != EINTR) return FailErrno(fmt::format("waitpid {}", pid_));
  }
  reaped_ = true;
  result.wall = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started_);

  // Collect what is left in the pipes. A grandchild that inherited them may
  // keep them open forever, so read only what is already there.
  for (ScopedFd* pipe : {&stdout_pipe_, &stderr_pipe_}) {
    if (!*pipe) continue;
    std::string& sink = pipe == &stdout_pipe_ ? result.stdout_data : result.stderr_data;
    ::fcntl(pipe->get(), F_SETFL, O_NONBLOCK);
    char buf[65536];
    ssize_t n;
    while ((n = ::read(pipe->get(), buf, sizeof buf)) > 0) sink.append(buf, static_cast<size_t>(n));
    pipe->Reset();
  }

  if (WIFEXITED(status)) {
    result.status.exited = true;
    result.status.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.status.signal = WTERMSIG(status);
    result.status.core_dumped = WCOREDUMP(status);
  }
  return result;
}

Result<SubprocessResult> RunSubprocess(SubprocessOptions options) {
  auto sp = Subprocess::Start(std::move(options));
  if (!sp) return std::unexpected(sp.error());
  return sp->Wait();
}

}  // namespace patchlab
