#include "harness/agent/agent.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "base/parent_death.h"
#include "base/process_table.h"
#include "harness/agent/agent_request.h"
#include "harness/agent/guest_info.h"
#include "harness/protocol/agent_protocol.h"

namespace patchlab::agent {
namespace proto = harness::agent_protocol;
using nlohmann::json;

namespace {

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

json Fail(const std::string& why) { return {{"ok", false}, {"error", why}}; }

// Writes all of `data`, waiting while a non-blocking fd is full.
bool WriteAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, 1000);
    } else {
      return false;
    }
  }
  return true;
}

void SetNonBlocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Everything an `exec`/`run` child needs, prepared before fork.
struct ChildExec {
  std::vector<char*> argv, env;  // null-terminated
  std::string cwd;
  bool capture = false;            // `run`: stdin, stdout and stderr are pipes
  std::string out_path, err_path;  // `exec`: where output goes; empty: output_dir/PID.*
  std::string output_dir;
  int err_pipe[2] = {-1, -1};  // the exec failure's errno
  int out_pipe[2] = {-1, -1}, errp[2] = {-1, -1}, in_pipe[2] = {-1, -1};  // with capture
  pid_t agent_pid = 0;
};

// The child's side of fork: never returns.
[[noreturn]] void RunExecChild(ChildExec& c) {
  // Its own process group keeps a workload out of a kill of ours, so without
  // this an agent killed on a host (the tests run it there) leaves every
  // workload running. In a guest, where the agent is PID 1, its death ends
  // the machine anyway. The agent has one thread, so the signal comes only
  // when the agent ends.
  DieWithParent(c.agent_pid);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  ::signal(SIGPIPE, SIG_DFL);
  ::setpgid(0, 0);
  auto die = [&](int err) {
    (void)!::write(c.err_pipe[1], &err, sizeof err);
    ::_exit(127);
  };
  if (::chdir(c.cwd.c_str()) != 0) die(errno);
  if (c.capture) {
    ::dup2(c.in_pipe[0], 0);
    ::dup2(c.out_pipe[1], 1);
    ::dup2(c.errp[1], 2);
  } else {
    int in = ::open("/dev/null", O_RDONLY);
    if (in >= 0) ::dup2(in, 0);
    // The agent is single-threaded, so the child may allocate here.
    if (c.out_path.empty()) c.out_path = c.output_dir + "/" + std::to_string(::getpid()) + ".out";
    if (c.err_path.empty()) c.err_path = c.output_dir + "/" + std::to_string(::getpid()) + ".err";
    int o = ::open(c.out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = ::open(c.err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o < 0 || e < 0) die(errno);
    ::dup2(o, 1);
    ::dup2(e, 2);
  }
  ::execvpe(c.argv[0], c.argv.data(), c.env.data());
  die(errno);
  ::_exit(127);  // not reached: die() exits
}

// A started `run` child's pipes on the agent's side: stdin written and
// closed; stdout and stderr (returned) read without blocking by the loop.
void AttachCapture(const ChildExec& c, const std::string& stdin_data, int& out_fd, int& err_fd) {
  ::close(c.out_pipe[1]);
  ::close(c.errp[1]);
  ::close(c.in_pipe[0]);
  if (!stdin_data.empty()) WriteAll(c.in_pipe[1], stdin_data);
  ::close(c.in_pipe[1]);
  out_fd = c.out_pipe[0];
  err_fd = c.errp[0];
  SetNonBlocking(out_fd);
  SetNonBlocking(err_fd);
}

}  // namespace

bool MakeRaw(int fd, std::string* error) {
  termios t{};
  if (::tcgetattr(fd, &t) != 0) {
    *error = Errno("tcgetattr");
    return false;
  }
  ::cfmakeraw(&t);
  t.c_cflag |= CLOCAL | CREAD;
  t.c_cflag &= ~CRTSCTS;
  ::cfsetispeed(&t, B115200);
  ::cfsetospeed(&t, B115200);
  if (::tcsetattr(fd, TCSANOW, &t) != 0) {
    *error = Errno("tcsetattr");
    return false;
  }
  return true;
}

Agent::Agent(AgentOptions options) : options_(std::move(options)) {}

void Agent::Send(const json& message) {
  std::string line = message.dump(-1, ' ', false, json::error_handler_t::replace);
  line += '\n';
  if (!WriteAll(options_.channel_fd, line)) stop_ = true;
}

int Agent::Run() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  // A dying host end must not kill us with SIGPIPE; the write fails instead.
  ::signal(SIGPIPE, SIG_IGN);
  sigchld_fd_ = ::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  timer_fd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  auto interval = std::chrono::duration_cast<std::chrono::nanoseconds>(proto::kHeartbeatInterval);
  itimerspec spec{};
  spec.it_interval.tv_sec = interval.count() / 1000000000;
  spec.it_interval.tv_nsec = interval.count() % 1000000000;
  spec.it_value = spec.it_interval;
  ::timerfd_settime(timer_fd_, 0, &spec, nullptr);
  SetNonBlocking(options_.channel_fd);
  std::error_code ec;
  std::filesystem::create_directories(options_.output_dir, ec);

  json ready = ReadHello();
  ready["event"] = "ready";
  Send(ready);

  std::vector<pollfd> fds;
  std::vector<pid_t> fd_owner;
  while (!stop_) {
    fds.clear();
    fd_owner.clear();
    fds.push_back({options_.channel_fd, POLLIN, 0});
    fds.push_back({sigchld_fd_, POLLIN, 0});
    fds.push_back({timer_fd_, POLLIN, 0});
    for (auto& [pid, child] : children_) {
      if (child.out_fd >= 0) fds.push_back({child.out_fd, POLLIN, 0}), fd_owner.push_back(pid);
      if (child.err_fd >= 0) fds.push_back({child.err_fd, POLLIN, 0}), fd_owner.push_back(pid);
    }
    int n = ::poll(fds.data(), fds.size(), NextTimeoutMs());
    if (n < 0 && errno != EINTR) break;
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) HandleInput();
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo info;
      while (::read(sigchld_fd_, &info, sizeof info) == sizeof info) {
      }
    }
    if (fds[2].revents & POLLIN) {
      uint64_t expirations;
      if (::read(timer_fd_, &expirations, sizeof expirations) > 0) Heartbeat();
    }
    for (size_t i = 3; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      auto it = children_.find(fd_owner[i - 3]);
      if (it != children_.end()) DrainCapture(it->second, false);
    }
    // Reap on every pass: SIGCHLD may coalesce, and orphans reparented to us
    // (PID 1 in the guest) must not linger as zombies.
    ReapChildren();
    CheckDeadlines();
  }
  return 0;
}

void Agent::Heartbeat() {
  ++heartbeat_seq_;
  // On a serial port, a host that connected after our first "ready" missed it.
  if (options_.serial && !got_request_) {
    json ready = ReadHello();
    ready["event"] = "ready";
    Send(ready);
  }
  Send({{"event", "heartbeat"}, {"seq", heartbeat_seq_}, {"uptime_s", UptimeSeconds()}});
}

int Agent::NextTimeoutMs() const {
  auto now = Clock::now();
  auto next = now + std::chrono::seconds(1);
  for (const auto& w : waiters_) next = std::min(next, w.deadline);
  for (const auto& [pid, c] : children_) {
    if (c.run_reply_id && !c.ended) next = std::min(next, c.deadline);
  }
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count();
  return static_cast<int>(std::max<int64_t>(0, ms + 1));
}

void Agent::HandleInput() {
  char buf[65536];
  while (true) {
    ssize_t n = ::read(options_.channel_fd, buf, sizeof buf);
    if (n > 0) {
      inbuf_.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) {
      // A tty reports 0 when no data; a socket's 0 is the host hanging up.
      if (!options_.serial) stop_ = true;
      break;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN) stop_ = true;
    break;
  }
  size_t start = 0;
  for (size_t nl; (nl = inbuf_.find('\n', start)) != std::string::npos; start = nl + 1) {
    HandleLine(inbuf_.substr(start, nl - start));
  }
  inbuf_.erase(0, start);
  if (inbuf_.size() > proto::kMaxLineBytes) {
    inbuf_.clear();
    Send({{"event", "error"}, {"error", "request line longer than the protocol's limit; dropped"}});
  }
}

void Agent::HandleLine(const std::string& line) {
  if (line.empty() || line == "\r") return;
  auto request = ParseAgentRequest(line);
  if (!request) {
    const RequestError& error = request.error();
    if (!error.id) {
      Send({{"event", "error"},
            {"error", "malformed request (" + error.message + "): " + line.substr(0, 200)}});
      return;
    }
    // A request with an id but a bad field: answered, so the host need not time out.
    got_request_ = true;
    Send({{"id", *error.id}, {"ok", false}, {"error", error.message}});
    return;
  }
  got_request_ = true;
  bool deferred = false;
  json reply = Dispatch(*request, &deferred);
  if (deferred) return;
  reply["id"] = request->id;
  if (!reply.contains("ok")) reply["ok"] = true;
  Send(reply);
}

json Agent::Dispatch(const AgentRequest& request, bool* deferred) {
  switch (request.op) {
    case AgentOp::kHello:
      return ReadHello();
    case AgentOp::kExec:
    case AgentOp::kRun:
      return OpExec(request, deferred);
    case AgentOp::kWait:
      return OpWait(request, deferred);
    case AgentOp::kKill:
      if (::kill(request.pid, request.signal) != 0) {
        return Fail(Errno("kill " + std::to_string(request.pid)));
      }
      return json::object();
    case AgentOp::kSample: {
      json out;
      std::string error;
      if (!ReadSample(request.pid, &out, &error)) return Fail(error);
      return out;
    }
    case AgentOp::kProcs: {
      json list = json::array();
      for (const ProcessCpu& p : ProcessesRunning(request.path)) {
        list.push_back({{"pid", p.pid},
                        {"ppid", p.ppid},
                        {"comm", p.comm},
                        {"start_ticks", p.start_ticks},
                        {"cpu_ns", p.cpu_ns}});
      }
      return {{"processes", std::move(list)}};
    }
    case AgentOp::kPut:
      return OpPut(request);
    case AgentOp::kGet:
      return OpGet(request);
    case AgentOp::kKmsgMark:
    case AgentOp::kKmsg:
      return OpKernelLog(request);
    case AgentOp::kShutdown:
      Send({{"id", request.id}, {"ok", true}});
      *deferred = true;
      ::sync();
      if (options_.power_off_on_shutdown) ::reboot(RB_POWER_OFF);
      stop_ = true;
      return json::object();
  }
  return Fail("unknown op");  // not reached: the decoder knows every op
}

json Agent::OpKernelLog(const AgentRequest& request) {
  const bool with_lines = request.op == AgentOp::kKmsg;
  json lines = json::array();
  uint64_t mark = 0;
  std::string error;
  if (!ReadKernelLog(options_.kmsg_path, request.since, with_lines ? &lines : nullptr, &mark,
                     &error)) {
    return Fail(error);
  }
  json out = {{"mark", mark}};
  if (with_lines) out["lines"] = std::move(lines);
  return out;
}

json Agent::OpExec(const AgentRequest& request, bool* deferred) {
  const bool capture = request.op == AgentOp::kRun;
  // execvpe takes non-const strings: copies the child's side of fork can point into.
  std::vector<std::string> argv = request.argv;
  std::vector<std::string> env_strings = request.env;
  ChildExec exec;
  exec.cwd = request.cwd;
  exec.capture = capture;
  exec.out_path = request.stdout_path;
  exec.err_path = request.stderr_path;
  exec.output_dir = options_.output_dir;
  if (::pipe2(exec.err_pipe, O_CLOEXEC) != 0) return Fail(Errno("pipe"));
  if (capture && (::pipe2(exec.out_pipe, O_CLOEXEC) != 0 || ::pipe2(exec.errp, O_CLOEXEC) != 0 ||
                  ::pipe2(exec.in_pipe, O_CLOEXEC) != 0)) {
    return Fail(Errno("pipe"));
  }
  for (auto& a : argv) exec.argv.push_back(a.data());
  exec.argv.push_back(nullptr);
  for (auto& e : env_strings) exec.env.push_back(e.data());
  exec.env.push_back(nullptr);

  exec.agent_pid = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return Fail(Errno("fork"));
  if (pid == 0) RunExecChild(exec);
  ::setpgid(pid, pid);
  ::close(exec.err_pipe[1]);
  int child_errno = 0;
  ssize_t got = ::read(exec.err_pipe[0], &child_errno, sizeof child_errno);
  ::close(exec.err_pipe[0]);
  Child child;
  child.pid = pid;
  if (capture) {
    child.capture = true;
    AttachCapture(exec, request.stdin_data, child.out_fd, child.err_fd);
  }
  if (got == static_cast<ssize_t>(sizeof child_errno)) {
    // exec failed; the child exits 127 and is reaped by the loop.
    if (capture) {
      ::close(child.out_fd);
      ::close(child.err_fd);
    }
    children_[pid] = Child{.pid = pid};
    children_[pid].capture = false;
    errno = child_errno;
    return Fail(Errno("exec " + argv[0]));
  }
  if (capture) {
    child.run_reply_id = request.id;
    child.deadline = Clock::now() + std::chrono::milliseconds(request.timeout_ms);
    *deferred = true;
  }
  children_[pid] = std::move(child);
  return {{"pid", pid}};
}

json Agent::OpWait(const AgentRequest& request, bool* deferred) {
  const pid_t pid = request.pid;
  auto it = children_.find(pid);
  if (it == children_.end())
    return Fail("no child with pid " + std::to_string(pid) + " (not started by the agent)");
  if (it->second.ended) return ExitFields(it->second);
  if (request.timeout_ms <= 0) return {{"exited", false}, {"timed_out", true}};
  waiters_.push_back(
      {request.id, pid, Clock::now() + std::chrono::milliseconds(request.timeout_ms)});
  *deferred = true;
  return json::object();
}

json Agent::OpPut(const AgentRequest& request) {
  const std::string& path = request.path;
  const uint64_t offset = request.offset;
  const mode_t mode = request.mode;
  const std::string& data = request.data;
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  int flags = O_WRONLY | O_CLOEXEC | (offset == 0 ? O_CREAT | O_TRUNC : 0);
  int fd = ::open(path.c_str(), flags, mode);
  if (fd < 0) return Fail(Errno("open " + path));
  ssize_t n = data.empty() ? 0 : ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
  int err = errno;
  ::fchmod(fd, mode);
  struct stat st {};
  ::fstat(fd, &st);
  ::close(fd);
  if (n != static_cast<ssize_t>(data.size())) {
    errno = err;
    return Fail(Errno("write " + path));
  }
  return {{"size", st.st_size}};
}

json Agent::OpGet(const AgentRequest& request) {
  const std::string& path = request.path;
  const uint64_t offset = request.offset;
  const size_t length = request.length;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Fail(Errno("open " + path));
  std::string data(length, '\0');
  ssize_t n = ::pread(fd, data.data(), length, static_cast<off_t>(offset));
  int err = errno;
  ::close(fd);
  if (n < 0) {
    errno = err;
    return Fail(Errno("read " + path));
  }
  data.resize(static_cast<size_t>(n));
  return {{"data", proto::Base64Encode(data)}, {"eof", static_cast<size_t>(n) < length}};
}

void Agent::ReapChildren() {
  while (true) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) break;
    auto it = children_.find(pid);
    if (it == children_.end()) continue;  // an orphan we inherited as PID 1
    Child& child = it->second;
    child.ended = true;
    child.status = status;
    json event = ExitFields(child);
    event["event"] = "exit";
    event["pid"] = pid;
    Send(event);
    if (child.run_reply_id) FinishRun(child);
  }
  for (size_t i = 0; i < waiters_.size();) {
    auto it = children_.find(waiters_[i].pid);
    if (it != children_.end() && it->second.ended) {
      json reply = ExitFields(it->second);
      reply["id"] = waiters_[i].id;
      reply["ok"] = true;
      Send(reply);
      waiters_.erase(waiters_.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
}

void Agent::DrainCapture(Child& child, bool to_eof) {
  char buf[65536];
  for (int* fd : {&child.out_fd, &child.err_fd}) {
    std::string& sink = fd == &child.out_fd ? child.out : child.err;
    while (*fd >= 0) {
      ssize_t n = ::read(*fd, buf, sizeof buf);
      if (n > 0) {
        // Keep the output bounded: a chatty command must not eat the guest's memory.
        if (sink.size() < proto::kMaxChunkBytes) sink.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n == 0 || (n < 0 && errno != EAGAIN) || to_eof) {
        ::close(*fd);
        *fd = -1;
      }
      break;
    }
  }
}

void Agent::FinishRun(Child& child) {
  // The child has ended; take what is left in the pipes (a grandchild holding
  // them open must not delay the reply).
  DrainCapture(child, true);
  json reply = ExitFields(child);
  reply["id"] = *child.run_reply_id;
  reply["ok"] = true;
  reply["stdout"] = child.out;
  reply["stderr"] = child.err;
  Send(reply);
  child.run_reply_id.reset();
  child.out.clear();
  child.err.clear();
}

void Agent::CheckDeadlines() {
  auto now = Clock::now();
  for (size_t i = 0; i < waiters_.size();) {
    if (waiters_[i].deadline <= now) {
      Send({{"id", waiters_[i].id}, {"ok", true}, {"exited", false}, {"timed_out", true}});
      waiters_.erase(waiters_.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
  for (auto& [pid, child] : children_) {
    if (child.run_reply_id && !child.ended && !child.killed_for_timeout && child.deadline <= now) {
      child.killed_for_timeout = true;
      ::kill(-pid, SIGKILL);
      ::kill(pid, SIGKILL);
    }
  }
}

json Agent::ExitFields(const Child& child) const {
  json out;
  if (!child.ended) return {{"exited", false}, {"timed_out", true}};
  if (WIFEXITED(child.status)) {
    out["exited"] = true;
    out["code"] = WEXITSTATUS(child.status);
  } else {
    out["exited"] = false;
    out["signal"] = WTERMSIG(child.status);
    out["core_dumped"] = static_cast<bool>(WCOREDUMP(child.status));
  }
  out["timed_out"] = child.killed_for_timeout;
  return out;
}

}  // namespace patchlab::agent
