#include "harness/lab/internal/runner_app_cell.h"

#include <signal.h>

#include <algorithm>
#include <map>
#include <thread>

#include "base/elf_file.h"
#include "base/file_util.h"
#include "base/log.h"
#include "harness/lab/internal/abba_measurement.h"
#include "harness/lab/internal/host_load.h"
#include "harness/lab/internal/patch_calls.h"
#include "harness/lab/internal/system_patch_calls.h"
#include "harness/lab/internal/work_counter.h"
#include "harness/vm/internal/ldd_closure.h"

namespace patchlab::harness::internal {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// TCG runs guests 10-50x slower than the host: generous bounds for commands
// that must finish on their own.
constexpr milliseconds kCommandTimeout{60000};
constexpr milliseconds kStopGrace{10000};
constexpr milliseconds kPoll{200};
// How much of a failed check's or generator's output a reason quotes.
constexpr size_t kQuoteBytes = 300;

// Ends the sequence early; what happened is already in obs.
struct EndSequence {};

std::string Quote(std::string_view text) {
  std::string s(text.substr(0, kQuoteBytes));
  std::replace(s.begin(), s.end(), '\n', ' ');
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s.empty() ? "(no output)" : s;
}

void ReplaceAll(std::string& s, std::string_view from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) {
    s.replace(at, from.size(), to);
  }
}

// Running totals over the whole cell, sampled at each window's edges: the
// labstats path's StatsSample, filled from outside the target.
struct Totals {
  uint64_t work = 0;
  uint64_t wrong = 0;
  uint64_t cpu_ns = 0;
};

class AppSequence {
 public:
  AppSequence(CellGuest& guest, const CellPlan& plan, const std::atomic<bool>* cancel,
              CellObservations& obs)
      : guest_(guest),
        plan_(plan),
        s_(*plan.scenario),
        w_(*plan.workload),
        cancel_(cancel),
        obs_(obs),
        deadline_(Clock::now() + plan.scenario->timeout) {}

  void Run() {
    try {
      PushFiles();
      RecordApplication();
      StartService();
      Measure();
      StopService();
    } catch (const EndSequence&) {
      if (!obs_.infra_error && !machine_gone_) StopQuietly();
    }
    GatherCrashes();
  }

 private:
  // --- failures ------------------------------------------------------------

  // The lab's or the scenario's fault, found only in the guest: never the patch's.
  [[noreturn]] void Infra(std::string why) {
    obs_.infra_error = std::move(why);
    throw EndSequence{};
  }
  [[noreturn]] void Problem(std::string why) {
    obs_.problems.push_back(std::move(why));
    throw EndSequence{};
  }

  template <typename T>
  T Must(Result<T> r, std::string_view what) {
    if (r) return std::move(*r);
    if (r.error().code() == ErrorCode::kInfra || r.error().code() == ErrorCode::kTimeout) {
      std::vector<Crash> crashes = guest_.MachineCrashes();
      if (!crashes.empty()) {
        for (Crash& c : crashes) obs_.crashes.push_back(std::move(c));
        machine_gone_ = true;
        Problem(fmt::format("{}: the machine stopped answering", what));
      }
      Infra(fmt::format("{}: {}", what, r.error().ToString()));
    }
    Problem(fmt::format("{}: {}", what, r.error().ToString()));
  }
  void MustLab(Status st, std::string_view what) {
    if (!st) Infra(fmt::format("{}: {}", what, st.error().ToString()));
  }
  // Copying a host file into the machine is the lab's step: its failure is
  // never the patch's.
  void PutHostFile(const fs::path& host_path, const std::string& guest_path, mode_t mode,
                   std::string_view what) {
    auto bytes = ReadFile(host_path);
    if (!bytes) Infra(fmt::format("{}: {}", what, bytes.error().ToString()));
    MustLab(guest_.Put(guest_path, mode, *bytes), what);
  }

  void CheckTime() {
    if (cancel_ != nullptr && cancel_->load()) Infra("cancelled");
    if (Clock::now() > deadline_) {
      Problem(fmt::format("the cell exceeded its {}s timeout",
                          std::chrono::duration_cast<std::chrono::seconds>(s_.timeout).count()));
    }
  }

  // Runs argv to completion in the cell's folder.
  RunResult RunIn(const std::vector<std::string>& argv, milliseconds timeout,
                  std::string_view what) {
    CheckTime();
    ExecRequest request;
    request.argv = argv;
    request.cwd = scratch_;
    return Must(guest_.Run(request, timeout), what);
  }

  // Starts argv in the cell's folder, its stdout to `out_path` (stderr beside
  // it, `out_path`.err).
  pid_t Start(const std::vector<std::string>& argv, const std::string& out_path,
              std::string_view what) {
    ExecRequest request;
    request.argv = argv;
    request.cwd = scratch_;
    request.stdout_path = out_path;
    request.stderr_path = out_path + ".err";
    return Must(guest_.Exec(request), what);
  }

  // A guest file's content, or "" when it cannot be read (for messages).
  std::string GuestText(const std::string& path) { return guest_.Get(path).value_or(""); }

  // --- setup ---------------------------------------------------------------

  void PushFiles() {
    scratch_ = guest_.ScratchDir();
    for (const std::string& f : w_.files) {
      PutHostFile(s_.dir / f, scratch_ + "/" + fs::path(f).filename().string(), 0755,
                  "pushing workload file " + f);
    }
    package_ = scratch_ + "/" + plan_.patch->spec->id + ".hpk";
    pubkey_ = scratch_ + "/patch.pub";
    PutHostFile(plan_.patch->package, package_, 0644, "pushing the package");
    fs::path key = plan_.patch->public_key.empty() ? plan_.public_key : plan_.patch->public_key;
    PutHostFile(key, pubkey_, 0644, "pushing the public key");
    if (!s_.target.binary.empty()) PushBinary();
    (void)Must(guest_.KernelLogSince(), "reading the kernel log");
  }

  // target.binary: the program and those of its libraries the image lacks
  // (an image's own library is never overwritten: running programs map it).
  void PushBinary() {
    fs::path host = s_.dir / s_.target.binary;
    auto libs = LddClosure(host);
    if (!libs)
      Infra(fmt::format("{}: target.binary: {}", s_.target.where, libs.error().ToString()));
    for (const std::string& lib : *libs) {
      RunResult r = RunIn({"test", "-e", lib}, kCommandTimeout, "looking for " + lib);
      if (r.exit.Success()) continue;
      std::error_code ec;
      fs::path real = fs::canonical(lib, ec);
      PutHostFile(ec ? fs::path(lib) : real, lib, 0755, "pushing " + lib);
    }
    PutHostFile(host, s_.target.program, 0755, "pushing target.binary");
  }

  // "nginx-light 1.22.1-9+deb12u12" or "/usr/local/bin/x build-id 3f2a...".
  void RecordApplication() {
    RunResult exists = RunIn({"test", "-x", s_.target.program}, kCommandTimeout, "test -x");
    if (!exists.exit.Success()) {
      Infra(fmt::format("{}: target.program: {} is not an executable file in image {}",
                        s_.target.where, s_.target.program, plan_.image));
    }
    // Processes are found by /proc/PID/exe, which names the file, not the link
    // a package may install (Debian's /usr/bin/redis-server -> redis-check-rdb).
    RunResult real = RunIn({"readlink", "-f", s_.target.program}, kCommandTimeout, "readlink");
    program_ = s_.target.program;
    if (real.exit.Success() && !real.stdout_data.empty()) {
      program_ = real.stdout_data.substr(0, real.stdout_data.find('\n'));
    }
    if (!s_.target.package.empty()) {
      RunResult v = RunIn({"dpkg-query", "-W", "-f=${Version}", s_.target.package}, kCommandTimeout,
                          "dpkg-query");
      if (!v.exit.Success() || v.stdout_data.empty()) {
        Infra(fmt::format("{}: target.package: {} is not installed in image {}: {}",
                          s_.target.where, s_.target.package, plan_.image, Quote(v.stderr_data)));
      }
      obs_.application = s_.target.package + " " + v.stdout_data;
      return;
    }
    auto bytes = guest_.Get(s_.target.program);
    std::string build_id;
    if (bytes) {
      if (auto elf = ElfFile::FromBytes(std::move(*bytes), s_.target.program)) {
        build_id = elf->build_id();
      }
    }
    obs_.application =
        s_.target.program + (build_id.empty() ? "" : " build-id " + build_id.substr(0, 16));
  }

  std::vector<std::string> Argv(const std::vector<std::string>& argv) const {
    return AppArgv(argv, w_, s_.measure.window, scratch_);
  }

  void StartService() {
    const ServiceSpec& svc = *w_.service;
    service_pid_ = Start(Argv(svc.command.argv), scratch_ + "/service.log", svc.command.where);
    Clock::time_point until = Clock::now() + svc.ready_timeout;
    RunResult probe;
    while (true) {
      // A probe that hangs must not outlast the readiness deadline.
      auto left = std::chrono::duration_cast<milliseconds>(until - Clock::now());
      probe =
          RunIn(Argv(svc.ready.argv), std::clamp(left, kPoll, kCommandTimeout), svc.ready.where);
      if (probe.exit.Success()) break;
      if (Clock::now() > until) {
        std::string log =
            GuestText(scratch_ + "/service.log") + GuestText(scratch_ + "/service.log.err");
        Infra(fmt::format(
            "{}: the service did not become ready within {}ms (last probe: {}: {}; service "
            "output: {})",
            svc.ready.where, svc.ready_timeout.count(), probe.exit.ToString(),
            Quote(probe.stderr_data.empty() ? probe.stdout_data : probe.stderr_data), Quote(log)));
      }
      std::this_thread::sleep_for(kPoll);
    }
    auto procs = Must(guest_.Processes(program_), "listing the target's processes");
    if (procs.empty()) {
      Infra(
          fmt::format("{}: target.program: no process runs {} ({}) once the service is ready "
                      "(is it the program the service starts?)",
                      s_.target.where, s_.target.program, program_));
    }
    for (const ProcessCpu& p : procs) known_[p.pid] = p;
    running_ = true;
  }

  // --- processes and crashes -------------------------------------------------

  // The target's processes now; one that was known and is gone is a crash (a
  // worker its master respawned included); new ones are known from now on.
  //
  // The target is the processes running the program when the service became
  // ready and their descendants (a respawned worker's parent is the master).
  // Others running the same program are not: a check or a generator may run
  // it too (python3 scripts checking a python3 service), and their short
  // lives are no crash.
  std::vector<ProcessCpu> Census(std::string_view when) {
    auto listed = Must(guest_.Processes(program_), "listing the target's processes");
    std::vector<ProcessCpu> now;
    for (const ProcessCpu& p : listed) {
      if (known_.contains(p.pid) || known_.contains(p.ppid)) now.push_back(p);
    }
    std::map<pid_t, const ProcessCpu*> by_pid;
    for (const ProcessCpu& p : now) by_pid[p.pid] = &p;
    for (auto it = known_.begin(); it != known_.end();) {
      auto found = by_pid.find(it->first);
      if (found == by_pid.end() || found->second->start_ticks != it->second.start_ticks) {
        obs_.crashes.push_back({metrics::CrashKind::kWorkloadSignal,
                                fmt::format("{} process {} ({}) ended {}", s_.target.program,
                                            it->first, it->second.comm, when)});
        it = known_.erase(it);
      } else {
        ++it;
      }
    }
    for (const ProcessCpu& p : now) known_[p.pid] = p;
    if (now.empty()) Problem(fmt::format("no process of {} is left ({})", s_.target.program, when));
    return now;
  }

  static uint64_t CpuGrowth(const std::vector<ProcessCpu>& before,
                            const std::vector<ProcessCpu>& after) {
    std::map<pid_t, uint64_t> start;
    for (const ProcessCpu& p : before) start[p.pid] = p.cpu_ns;
    uint64_t sum = 0;
    for (const ProcessCpu& p : after) {
      auto it = start.find(p.pid);
      uint64_t base = it == start.end() ? 0 : it->second;
      sum += p.cpu_ns >= base ? p.cpu_ns - base : p.cpu_ns;
    }
    return sum;
  }

  // --- windows -------------------------------------------------------------

  // One run of the check: a wrong result is counted and its output kept.
  bool RunCheck() {
    const CheckSpec& check = *w_.check;
    RunResult r = RunIn(Argv(check.command.argv), kCommandTimeout, check.command.where);
    bool ok = r.exit.Success();
    if (ok && !check.output.empty()) ok = FirstMatch(check.output, r.stdout_data);
    if (!ok) {
      ++totals_.wrong;
      if (obs_.artefacts.size() < 20) {
        obs_.artefacts[fmt::format("check-{}.out", totals_.wrong)] =
            fmt::format("# {}\n# {}\n--- stdout\n{}--- stderr\n{}", check.command.where,
                        r.exit.ToString(), r.stdout_data, r.stderr_data);
      }
      // Before any patch, a failing check is the service's or the check's
      // own fault (a module not installed, a wrong URL): not the patch's.
      if (!applied_once_) {
        Infra(fmt::format("{}: the check failed before any patch was applied ({}): {}",
                          check.command.where, r.exit.ToString(),
                          Quote(r.stdout_data + r.stderr_data)));
      }
      if (totals_.wrong == 1) {
        obs_.problems.push_back(fmt::format("{}: the check failed ({}): {}", check.command.where,
                                            r.exit.ToString(),
                                            Quote(r.stdout_data + r.stderr_data)));
      }
    }
    return ok;
  }

  static bool FirstMatch(const std::string& pattern, const std::string& text) {
    auto n = CountWork(pattern, text);
    return n && n->has_value();
  }

  // A window of checks alone: work is the checks that passed.
  void ChecksFor(milliseconds length) {
    Clock::time_point until = Clock::now() + length;
    do {
      if (RunCheck()) ++totals_.work;
    } while (Clock::now() < until);
  }

  // A window of the load generator, with the check run meanwhile.
  void LoadWindow(bool patched, int index) {
    const LoadSpec& load = *w_.load;
    std::string out_path = fmt::format("{}/load-{}.out", scratch_, index);
    pid_t pid = Start(Argv(load.command.argv), out_path, load.command.where);
    ExitStatus exit{.timed_out = true};
    Clock::time_point until = Clock::now() + s_.measure.window + kCommandTimeout;
    while (exit.StillRunning()) {
      if (w_.check) RunCheck();
      exit = Must(guest_.Wait(pid, w_.check ? milliseconds(1) : kPoll), "watching the generator");
      if (exit.StillRunning() && Clock::now() > until) {
        (void)guest_.Kill(pid, SIGKILL);
        Problem(fmt::format("{}: the load generator ran past its window by {}s", load.command.where,
                            kCommandTimeout.count() / 1000));
      }
      CheckTime();
    }
    std::string output = GuestText(out_path) + GuestText(out_path + ".err");
    auto work = CountWork(load.work, output);
    if (!work) Infra(fmt::format("{}: {}", load.work_where, work.error().ToString()));
    if (!work->has_value() || **work == 0) NoWork(patched, exit, output);
    totals_.work += **work;
    for (const auto& [name, pattern] : load.latency) {
      auto ms = FirstNumber(pattern, output);
      if (ms && ms->has_value()) {
        (patched ? obs_.latency_patched_ms : obs_.latency_unpatched_ms)[name].push_back(**ms);
      }
    }
  }

  // A generator that did no countable work: before any patch it is the
  // scenario's regex or the setup (infra); with the patch live it is the patch's.
  [[noreturn]] void NoWork(bool patched, const ExitStatus& exit, const std::string& output) {
    const LoadSpec& load = *w_.load;
    obs_.artefacts["load-nowork.out"] = output;
    if (!patched && !applied_once_) {
      Infra(fmt::format("{}: the load generator's output never matched '{}' ({}; output: {})",
                        load.work_where, load.work, exit.ToString(), Quote(output)));
    }
    obs_.crashes.push_back(
        {metrics::CrashKind::kLostHeartbeat,
         fmt::format("the load generator completed no work in a {} window "
                     "({}; output: {})",
                     patched ? "patched" : "unpatched", exit.ToString(), Quote(output))});
    throw EndSequence{};
  }

  void MeasureWindow(bool patched) {
    StatsSample begin{totals_.work, totals_.wrong, totals_.cpu_ns, 0};
    std::vector<ProcessCpu> before = Census("before a window");
    if (w_.load) {
      LoadWindow(patched, ++window_index_);
    } else {
      ChecksFor(s_.measure.window);
    }
    std::vector<ProcessCpu> after =
        Census(patched ? "during a patched window" : "during an unpatched window");
    totals_.cpu_ns += CpuGrowth(before, after);
    StatsSample end{totals_.work, totals_.wrong, totals_.cpu_ns, 0};
    obs_.windows.push_back({patched, begin, end});
    obs_.last_stats = end;
    if (patched && SystemWide()) NoteUnpatched();
  }

  // --- patching every process ----------------------------------------------

  bool SystemWide() const { return plan_.patch->spec->processes == PatchProcesses::kAll; }

  bool ApplyAll() {
    if (SystemWide()) return ApplySystem();
    std::vector<ProcessCpu> procs = Census("before the apply");
    applied_.clear();
    bool all_ok = true;
    for (const ProcessCpu& p : procs) {
      CheckTime();
      HotpatchResult r =
          Must(HotpatchApply(guest_, p.pid, package_, pubkey_, s_.apply.timeout), "applying");
      PatchCall call = ToPatchCall(PatchCall::Op::kApply, r);
      call.message = fmt::format("pid {} ({}): {}", p.pid, p.comm, call.message);
      if (call.exit_code == 0) {
        if (!applied_once_)
          AddPatchMemory(JsonNumber(r.json, "mapped_bytes"), JsonNumber(r.json, "island_bytes"));
        applied_.push_back(p.pid);
      } else {
        all_ok = false;
      }
      obs_.calls.push_back(std::move(call));
      if (!all_ok) break;  // the first refusal decides: the others would say the same
    }
    applied_once_ = applied_once_ || !applied_.empty();
    if (!all_ok && !applied_.empty()) (void)RevertAll();  // nothing half-applied stays
    return all_ok;
  }

  bool RevertAll() {
    if (SystemWide()) return RevertSystem();
    bool ok = true;
    for (pid_t pid : applied_) {
      CheckTime();
      PatchCall call =
          ToPatchCall(PatchCall::Op::kRevert,
                      Must(HotpatchRevert(guest_, pid, plan_.patch->spec->id), "reverting"));
      call.message = fmt::format("pid {}: {}", pid, call.message);
      ok = ok && call.exit_code == 0;
      obs_.calls.push_back(std::move(call));
    }
    applied_.clear();
    return ok;
  }

  // Every process of the target, patched or not: a reverted one must hold
  // exactly what its (empty) patch stack says.
  void VerifyAll() {
    if (SystemWide()) {
      CheckTime();
      (void)RecordSystemCalls(PatchCall::Op::kVerify,
                              Must(HotpatchVerifySystem(guest_), "verifying system-wide"), {});
      return;
    }
    for (const ProcessCpu& p : Census("before the verify")) {
      PatchCall call =
          ToPatchCall(PatchCall::Op::kVerify, Must(HotpatchVerify(guest_, p.pid), "verifying"));
      call.message = fmt::format("pid {}: {}", p.pid, call.message);
      obs_.calls.push_back(std::move(call));
    }
  }

  // --- patch.processes: all ------------------------------------------------

  // One system-wide call's answer for the figures: first one call for the
  // whole (hotpatch's exit code, and the processes that were not done), which
  // decides like a single process's apply would (refused: not hotpatchable);
  // then, for an apply, one per patched process with its pause. A process
  // outside the target that vanished meanwhile (a check or generator that
  // ended) is no failure; each of `required` (the target's processes) must
  // be done. Returns whether every process was; system_done_ holds those done.
  bool RecordSystemCalls(PatchCall::Op op, const HotpatchResult& r,
                         const std::vector<ProcessCpu>& required) {
    SystemAnswer a = ReadSystemAnswer(r);
    std::vector<const SystemProcess*> done;
    std::vector<std::string> not_done;
    for (const SystemProcess& p : a.processes) {
      int code = p.ExitCode();
      if (code == 0) {
        done.push_back(&p);
      } else if (code != 5 || known_.contains(p.pid)) {
        not_done.push_back(fmt::format("pid {} ({}): {}{}{}", p.pid, p.comm, p.result,
                                       p.reason.empty() ? "" : ": ", p.reason));
      }
    }
    int exit_code = a.exit_code;
    for (const ProcessCpu& t : required) {
      if (std::any_of(done.begin(), done.end(), [&](auto* p) { return p->pid == t.pid; })) continue;
      not_done.push_back(fmt::format(
          "pid {} ({}) of the target was not patched (does it map the module?)", t.pid, t.comm));
      if (exit_code == 0) exit_code = 3;
    }
    if (exit_code == 0 && !not_done.empty()) exit_code = 5;  // one of the target's vanished
    if (r.exited && exit_code == 0 && a.processes.empty() && op == PatchCall::Op::kApply) {
      exit_code = 3;  // done in no process is no success
    }
    std::string detail =
        not_done.empty()
            ? (a.processes.empty() ? Quote(a.message) : "")
            : fmt::format(
                  "{}{}", not_done.front(),
                  not_done.size() > 1 ? fmt::format(" (and {} more)", not_done.size() - 1) : "");
    obs_.calls.push_back({op, r.exited ? exit_code : -1, std::nullopt,
                          fmt::format("--system: {} of {} process(es) done{}{}", done.size(),
                                      a.processes.size(), detail.empty() ? "" : "; ", detail)});
    if (op == PatchCall::Op::kApply) {
      for (const SystemProcess* p : done) {
        if (!applied_once_ && known_.contains(p->pid))
          AddPatchMemory(p->mapped_bytes, p->island_bytes);
        obs_.calls.push_back(
            {op, 0, p->pause_us, fmt::format("pid {} ({}): {}", p->pid, p->comm, p->result)});
      }
      if (a.wall_us) obs_.system_wide->wall_us.push_back(*a.wall_us);
    }
    system_done_ = done.size();
    return exit_code == 0;
  }

  // `hotpatch apply --system`: every process that maps the module, the
  // target's own among them; a partial apply is reverted, as ApplyAll does.
  bool ApplySystem() {
    CheckTime();
    std::vector<ProcessCpu> procs = Census("before the apply");
    if (!obs_.system_wide) obs_.system_wide.emplace();
    bool all =
        RecordSystemCalls(PatchCall::Op::kApply,
                          Must(HotpatchApplySystem(guest_, package_, pubkey_, s_.apply.timeout),
                               "applying system-wide"),
                          procs);
    applied_once_ = applied_once_ || system_done_ > 0;
    obs_.system_wide->most_patched = std::max(obs_.system_wide->most_patched, system_done_);
    if (!all && system_done_ > 0) (void)RevertSystem();  // nothing half-applied stays
    return all;
  }

  bool RevertSystem() {
    CheckTime();
    return RecordSystemCalls(
        PatchCall::Op::kRevert,
        Must(HotpatchRevertSystem(guest_, plan_.patch->spec->id), "reverting system-wide"), {});
  }

  // While the patch is live: the processes that map the module without it
  // (started after the apply: they loaded the file from disk).
  void NoteUnpatched() {
    auto status = HotpatchStatusSystem(guest_);
    if (!status) return;  // a figure, not a step: the windows stand without it
    for (const SystemProcess& p : UnpatchedBy(*status, plan_.patch->spec->id)) {
      obs_.system_wide->unpatched.emplace(p.pid, p.comm);
    }
  }

  // The first apply's own memory, summed over the target's processes as their
  // PSS is: what the patch mapped into them, and of that the island pages, so
  // the report tells the patch's bytes from the PSS growth it causes.
  void AddPatchMemory(std::optional<double> mapped_bytes, std::optional<double> island_bytes) {
    if (mapped_bytes) obs_.mapped_kib = obs_.mapped_kib.value_or(0) + *mapped_bytes / 1024;
    if (island_bytes) obs_.island_kib = obs_.island_kib.value_or(0) + *island_bytes / 1024;
  }

  uint64_t TargetPss() {
    uint64_t sum = 0;
    for (const auto& [pid, p] : known_) sum += Must(guest_.Sample(pid), "sampling").pss_kib;
    return sum;
  }

  // Window pairs in randomized ABBA blocks until the CPU figure is resolved
  // against its limit or the budget is spent: the labstats path's loop and
  // rule (abba_measurement.h), on windows measured from outside.
  void Measure() {
    Watch(w_.warmup);
    measure_start_ = Clock::now();
    load_.Start();
    AbbaSteps steps{
        .set_patched = [this](bool patched) { return SetPatched(patched); },
        .measure_window = [this](bool patched) { MeasureWindow(patched); },
        .budget_left = [this] { return BudgetLeft(); },
        .after_block = [this] { load_.Sample(); },
    };
    bool measured = MeasureAbbaBlocks(plan_.rules.cpu, plan_.seed, /*first_unpatched=*/true,
                                      obs_.windows, steps);
    obs_.host_load = load_.Stop();
    if (!measured) throw EndSequence{};
    VerifyAll();
  }

  // Brings the patch to `patched` in every process: the first apply samples
  // the target's PSS around it and runs the `apply.repeat` extra cycles.
  bool SetPatched(bool patched) {
    if (patched == patched_) return true;
    if (!patched) {
      if (!RevertAll()) return false;
      patched_ = false;
      return true;
    }
    bool first = !applied_once_;
    if (first) obs_.pss_before_kib = TargetPss();
    if (!ApplyAll()) return false;
    patched_ = true;
    if (!first) return true;
    obs_.pss_after_kib = TargetPss();
    for (int r = 1; r < s_.apply.repeat; ++r) {
      if (!RevertAll() || !ApplyAll()) return false;
    }
    return true;
  }

  // Whether another look (`step` pairs, and a block's slack) fits in what is
  // left of workload.duration and of the cell's timeout, both on the host's
  // clock: a real application has no clock of its own to report.
  bool BudgetLeft() const {
    size_t windows = 2 * plan_.rules.cpu.step + 2;
    Clock::time_point now = Clock::now();
    auto per_window = (now - measure_start_) / std::max<size_t>(obs_.windows.size(), 1);
    auto need = per_window * windows;
    if (now + need > deadline_) return false;
    return w_.warmup + (now - measure_start_) + need <= w_.duration;
  }

  // Waits `d` while keeping an eye on the target's processes.
  void Watch(milliseconds d) {
    Clock::time_point until = Clock::now() + d;
    while (Clock::now() < until) {
      CheckTime();
      std::this_thread::sleep_for(std::min(kPoll * 5, d));
      (void)Census("during the warm-up");
    }
  }

  // --- the end -------------------------------------------------------------

  void StopService() {
    if (!running_) return;
    running_ = false;
    const ServiceSpec& svc = *w_.service;
    if (!svc.stop.argv.empty()) {
      RunResult r = RunIn(Argv(svc.stop.argv), kCommandTimeout, svc.stop.where);
      if (!r.exit.Success()) {
        obs_.problems.push_back(fmt::format("{}: the stop command failed ({}): {}", svc.stop.where,
                                            r.exit.ToString(),
                                            Quote(r.stdout_data + r.stderr_data)));
      }
    } else {
      for (const auto& [pid, p] : known_) (void)guest_.Kill(pid, SIGTERM);
    }
    Clock::time_point until = Clock::now() + kStopGrace;
    while (!Must(guest_.Processes(program_), "listing the target's processes").empty()) {
      if (Clock::now() > until) {
        auto left = guest_.Processes(program_);
        for (const ProcessCpu& p : left ? *left : std::vector<ProcessCpu>{}) {
          (void)guest_.Kill(p.pid, SIGKILL);
        }
        obs_.crashes.push_back({metrics::CrashKind::kLostHeartbeat,
                                fmt::format("{} did not stop within {}s (hung)", s_.target.program,
                                            kStopGrace.count() / 1000)});
        break;
      }
      std::this_thread::sleep_for(kPoll);
    }
    (void)guest_.Wait(service_pid_, milliseconds(1));
  }

  // After a failure: stop what runs, without judging how it stops.
  void StopQuietly() {
    if (!running_) return;
    running_ = false;
    auto procs = guest_.Processes(program_);
    if (!procs) return;
    for (const ProcessCpu& p : *procs) (void)guest_.Kill(p.pid, SIGKILL);
  }

  void GatherCrashes() {
    if (obs_.infra_error) return;
    if (auto klog = guest_.KernelLogSince()) {
      for (Crash& c : ClassifyKernelLog(*klog)) obs_.crashes.push_back(std::move(c));
    }
    for (Crash& c : guest_.MachineCrashes()) obs_.crashes.push_back(std::move(c));
  }

  CellGuest& guest_;
  const CellPlan& plan_;
  const Scenario& s_;
  const WorkloadSpec& w_;
  const std::atomic<bool>* cancel_;
  CellObservations& obs_;
  Clock::time_point deadline_;
  std::string scratch_, package_, pubkey_;
  std::string program_;  // target.program with its links resolved in the guest
  pid_t service_pid_ = -1;
  bool running_ = false;
  bool machine_gone_ = false;
  bool applied_once_ = false;
  bool patched_ = false;  // the patch is live in every process now
  int window_index_ = 0;
  Clock::time_point measure_start_{};
  HostLoadMeter load_;
  Totals totals_;
  std::map<pid_t, ProcessCpu> known_;
  std::vector<pid_t> applied_;
  size_t system_done_ = 0;  // processes the last system-wide call did
};

}  // namespace

std::vector<std::string> AppArgv(const std::vector<std::string>& argv, const WorkloadSpec& workload,
                                 milliseconds window, const std::string& cell_dir) {
  std::vector<std::string> out = argv;
  int64_t window_s = std::max<int64_t>(1, (window.count() + 500) / 1000);
  for (auto& a : out) {
    ReplaceAll(a, "{threads}", std::to_string(workload.threads));
    ReplaceAll(a, "{duration_ms}", std::to_string(workload.duration.count()));
    ReplaceAll(a, "{window_ms}", std::to_string(window.count()));
    ReplaceAll(a, "{window_s}", std::to_string(window_s));
    ReplaceAll(a, "{cell}", cell_dir);
  }
  return out;
}

CellObservations RunAppCellSequence(CellGuest& guest, const CellPlan& plan,
                                    const std::atomic<bool>* cancel) {
  CellObservations obs;
  obs.clock = guest.Clock();
  AppSequence(guest, plan, cancel, obs).Run();
  Log("harness")->debug("app cell {}/{}: {} windows, {} patch calls, {} crashes",
                        plan.scenario->name, plan.patch->spec->id, obs.windows.size(),
                        obs.calls.size(), obs.crashes.size());
  return obs;
}

}  // namespace patchlab::harness::internal
