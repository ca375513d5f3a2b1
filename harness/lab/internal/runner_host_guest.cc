#include "harness/lab/internal/runner_host_guest.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <thread>

#include "base/file_util.h"
#include "base/log.h"
#include "base/scoped_fd.h"
#include "base/subprocess.h"

namespace patchlab::harness::internal {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

class HostGuest : public CellGuest {
 public:
  HostGuest(fs::path hotpatch, GuestSpec spec, fs::path scratch)
      : hotpatch_(std::move(hotpatch)), spec_(std::move(spec)), scratch_(std::move(scratch)) {
    // Only the kernel log written from now on is this cell's.
    kmsg_.Reset(::open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    if (kmsg_) {
      ::lseek(kmsg_.get(), 0, SEEK_END);
    } else {
      Log("harness")->warn(
          "host backend: cannot read /dev/kmsg ({}); kernel-log crash lines are not seen",
          std::strerror(errno));
    }
  }
  ~HostGuest() override { (void)Shutdown(); }

  Status Put(const std::string& guest_path, mode_t mode, std::string_view bytes) override {
    return WriteFileAtomic(guest_path, bytes, mode);
  }

  Result<std::string> Get(const std::string& guest_path) override {
    return patchlab::ReadFile(guest_path);
  }

  Result<RunResult> Run(const ExecRequest& request, milliseconds run_for) override {
    SubprocessOptions o;
    o.argv = request.argv;
    o.env_set.assign(request.env.begin(), request.env.end());
    o.cwd = request.cwd;
    o.timeout = run_for;
    auto r = RunSubprocess(std::move(o));
    if (!r) return std::unexpected(r.error());
    return RunResult{r->status, std::move(r->stdout_data), std::move(r->stderr_data)};
  }

  Result<std::vector<ProcessCpu>> Processes(const std::string& program) override {
    return ProcessesRunning(program);
  }

  // `request.env` adds to the lab's own environment here (the agent's
  // replaces it); an empty stderr_path sends stderr along with stdout.
  Result<pid_t> Exec(const ExecRequest& request) override {
    SubprocessOptions o;
    o.argv = request.argv;
    o.env_set.assign(request.env.begin(), request.env.end());
    o.cwd = request.cwd;
    o.stdout_mode = OutputMode::kFile;
    o.stdout_path = request.stdout_path;
    if (request.stderr_path.empty()) {
      o.stderr_to_stdout = true;
    } else {
      o.stderr_mode = OutputMode::kFile;
      o.stderr_path = request.stderr_path;
    }
    auto sp = Subprocess::Start(std::move(o));
    if (!sp) return std::unexpected(sp.error());
    pid_t pid = sp->pid();
    programs_.push_back(fs::path(request.argv.at(0)).filename().string());
    children_.emplace(pid, std::move(*sp));
    return pid;
  }

  Result<ExitStatus> Wait(pid_t pid, milliseconds wait_for) override {
    auto it = children_.find(pid);
    if (it == children_.end())
      return Fail(ErrorCode::kNotFound, "pid {} was not started here", pid);
    auto until = std::chrono::steady_clock::now() + wait_for;
    while (true) {
      // Peek without reaping: Subprocess::Wait reaps once it has ended.
      siginfo_t info{};
      if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
        return FailErrno(fmt::format("waitid {}", pid));
      }
      if (info.si_pid == pid) break;
      if (std::chrono::steady_clock::now() >= until) return ExitStatus{.timed_out = true};
      std::this_thread::sleep_for(milliseconds(20));
    }
    auto r = it->second.Wait();
    children_.erase(it);
    if (!r) return std::unexpected(r.error());
    return r->status;
  }

  Status Kill(pid_t pid, int signal) override {
    auto it = children_.find(pid);
    if (it == children_.end())
      return Fail(ErrorCode::kNotFound, "pid {} was not started here", pid);
    return it->second.Signal(signal);
  }

  Result<ProcessSample> Sample(pid_t pid) override {
    auto text = patchlab::ReadFile(fmt::format("/proc/{}/smaps_rollup", pid));
    if (!text) return std::unexpected(text.error());
    auto field = [&](std::string_view name) -> uint64_t {
      size_t at = text->find(std::string("\n") + std::string(name) + ":");
      if (at == std::string::npos) return 0;
      return std::strtoull(text->c_str() + at + name.size() + 2, nullptr, 10);
    };
    ProcessSample s;
    s.pid = pid;
    s.pss_kib = field("Pss");
    s.rss_kib = field("Rss");
    return s;
  }

  Result<HotpatchResult> Hotpatch(const std::string& subcommand, std::vector<std::string> args,
                                  milliseconds run_for) override {
    SubprocessOptions o;
    o.argv = {hotpatch_.string(), subcommand};
    o.argv.insert(o.argv.end(), args.begin(), args.end());
    o.argv.push_back("--json");
    o.timeout = run_for;
    auto r = RunSubprocess(std::move(o));
    if (!r) return std::unexpected(std::move(r.error()).AddContext("running hotpatch"));
    HotpatchResult out;
    out.exited = r->status.exited && !r->status.timed_out;
    out.exit_code = out.exited ? r->status.code : 128 + r->status.signal;
    out.stdout_data = std::move(r->stdout_data);
    out.stderr_data = std::move(r->stderr_data);
    if (!out.exited) {
      // The patcher itself died or hung: its journal is for `recover`; the cell
      // reports a failed call, saying how it ended.
      out.stderr_data = "(" + r->status.ToString() + ") " + out.stderr_data;
    }
    out.json = nlohmann::json::parse(out.stdout_data, nullptr, false);
    if (out.json.is_discarded()) out.json = nullptr;
    return out;
  }

  Result<std::string> KernelLogSince() override {
    std::string out;
    if (!kmsg_) return out;
    char record[8192];
    while (true) {
      ssize_t n = ::read(kmsg_.get(), record, sizeof record);
      if (n < 0 && errno == EPIPE) continue;  // overwritten records: skip ahead
      if (n <= 0) break;
      std::string_view line(record, static_cast<size_t>(n));
      size_t semi = line.find(';');
      if (semi != std::string_view::npos) line.remove_prefix(semi + 1);
      line = line.substr(0, line.find('\n'));
      // The host runs other things: keep only lines about this cell's programs.
      for (const auto& p : programs_) {
        if (line.find(p.substr(0, 15) + "[") != std::string_view::npos) {
          out += std::string(line) + "\n";
          break;
        }
      }
    }
    kernel_log_ += out;
    return out;
  }

  std::vector<Crash> MachineCrashes() override { return {}; }
  std::string ScratchDir() const override { return scratch_.string(); }
  metrics::CpuClock Clock() const override { return metrics::CpuClock::kNativeCpuTime; }

  Status Shutdown() override {
    for (auto& [pid, sp] : children_) (void)sp.Signal(SIGKILL);
    children_.clear();  // the destructors reap
    if (!shut_down_) {
      shut_down_ = true;
      (void)KernelLogSince();
      return WriteFileAtomic(spec_.artefacts / "kernel.log", kernel_log_);
    }
    return {};
  }

 private:
  fs::path hotpatch_;
  GuestSpec spec_;
  fs::path scratch_;
  ScopedFd kmsg_;
  std::map<pid_t, Subprocess> children_;
  std::vector<std::string> programs_;
  std::string kernel_log_;
  bool shut_down_ = false;
};

// A lab killed mid-cell (SIGKILL, OOM killer) leaves that cell's workload
// running from its scratch folder until its duration ends. Measuring the cell
// again (`--resume`) in the same folder would then fail to replace the busy
// program (ETXTBSY) or, worse, read the stray's stats as the new workload's.
// The strays are the lab's own test programs, run from the lab's own folder:
// kill them, and wait until their memory (and so the busy file) is released.
Status KillStrays(const fs::path& scratch) {
  const std::string prefix = scratch.string() + "/";
  std::vector<pid_t> strays;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::error_code link_ec;
    std::string exe = fs::read_symlink(entry.path() / "exe", link_ec).string();
    if (link_ec || exe.compare(0, prefix.size(), prefix) != 0) continue;
    pid_t pid = static_cast<pid_t>(std::stol(name));
    Log("harness")->warn(
        "host backend: pid {} ({}) still runs from an earlier attempt of this cell "
        "(a lab killed mid-cell?); killing it",
        pid, exe);
    if (::kill(pid, SIGKILL) != 0 && errno != ESRCH)
      return FailErrno(fmt::format("kill stray pid {}", pid));
    strays.push_back(pid);
  }
  for (pid_t pid : strays) {
    // Not our child: wait for its exe link to go (exit released its memory).
    for (int polls = 0;; ++polls) {
      std::error_code gone;
      [[maybe_unused]] fs::path exe = fs::read_symlink(fmt::format("/proc/{}/exe", pid), gone);
      if (gone) break;
      if (polls >= 500)
        return Fail(ErrorCode::kInfra, "stray pid {} from {} did not die after SIGKILL", pid,
                    prefix);
      std::this_thread::sleep_for(milliseconds(10));
    }
  }
  return {};
}

}  // namespace

Result<std::unique_ptr<CellGuest>> HostGuestFactory::Start(const GuestSpec& spec) {
  fs::path scratch = fs::absolute(spec.artefacts) / "guest";
  if (auto s = KillStrays(scratch); !s) return std::unexpected(s.error());
  // Nothing of an earlier attempt (a stats file above all) may pass for this one's.
  std::error_code ec;
  fs::remove_all(scratch, ec);
  if (ec) return Fail(ErrorCode::kIo, "emptying {}: {}", scratch.string(), ec.message());
  if (auto s = MakeDirs(scratch); !s) return std::unexpected(s.error());
  return std::unique_ptr<CellGuest>(new HostGuest(hotpatch_, spec, scratch));
}

std::vector<std::string> HostGuestFactory::DefaultCpus(const std::string&) { return {"host"}; }
std::vector<std::string> HostGuestFactory::Images() { return {"host"}; }

}  // namespace patchlab::harness::internal
