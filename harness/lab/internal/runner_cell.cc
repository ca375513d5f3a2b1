#include "harness/lab/internal/runner_cell.h"

#include <signal.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/file_util.h"
#include "base/log.h"
#include "harness/lab/internal/abba_measurement.h"
#include "harness/lab/internal/host_load.h"
#include "harness/lab/internal/patch_calls.h"
#include "harness/lab/internal/runner_app_cell.h"

namespace patchlab::harness::internal {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// How long a target may take to write its first stats line, and to exit once
// asked to (SIGTERM) before it counts as hung. TCG runs guests 10-50x slower
// than the host, hence the generous bounds.
constexpr milliseconds kFirstReportGrace{15000};
constexpr milliseconds kExitGrace{10000};
constexpr milliseconds kPoll{100};
// No operation for this long (host time) in a measured window is a hang. Long
// enough for an instruction-counting guest on a busy host, whose target
// reports every 100 ms of guest time: seconds of the host's.
constexpr milliseconds kHangAfter{20000};

void ReplaceAll(std::string& s, std::string_view from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) {
    s.replace(at, from.size(), to);
  }
}

// Ends the sequence early: what happened has already been written into obs.
struct Stop {};

// Whose step failed when a guest call fails without the machine failing: the
// patch's (starting the target, applying, the workload) or the lab's own
// (copying files in, reading the kernel log), which says nothing of the patch.
enum class Step { kPatch, kLab };

class Sequence {
 public:
  Sequence(CellGuest& guest, const CellPlan& plan, const std::atomic<bool>* cancel,
           CellObservations& obs)
      : guest_(guest),
        plan_(plan),
        cancel_(cancel),
        obs_(obs),
        deadline_(Clock::now() + plan.scenario->timeout) {}

  void Run() {
    try {
      Prepare();
      StartWorkload();
      Measure();
      Finish();
    } catch (const Stop&) {
      // Something ended the sequence; gather what can still be gathered.
      if (!obs_.infra_error && !machine_gone_) Finish();
    }
  }

 private:
  // Unwraps a guest answer; a machine failure, or any failure of a lab step
  // (a full guest disk while copying the target in), ends the cell as infra.
  template <typename T>
  T Must(Result<T> r, std::string_view what, Step step = Step::kPatch) {
    if (r) return std::move(*r);
    if (step == Step::kLab || r.error().code() == ErrorCode::kInfra ||
        r.error().code() == ErrorCode::kTimeout) {
      // A guest that panicked or hung fails every call too, but that is the
      // patch's doing, not the lab's.
      std::vector<Crash> crashes = guest_.MachineCrashes();
      if (!crashes.empty()) {
        for (Crash& c : crashes) obs_.crashes.push_back(std::move(c));
        obs_.problems.push_back(fmt::format("{}: the machine stopped answering", what));
        machine_gone_ = true;
        throw Stop{};
      }
      obs_.infra_error = fmt::format("{}: {}", what, r.error().ToString());
      throw Stop{};
    }
    obs_.problems.push_back(fmt::format("{}: {}", what, r.error().ToString()));
    throw Stop{};
  }
  void Must(Status s, std::string_view what, Step step = Step::kPatch) {
    if (!s) Must(Result<int>(std::unexpected(s.error())), what, step);
  }

  void CheckTime() {
    if (cancel_ != nullptr && cancel_->load()) {
      obs_.infra_error = "cancelled";
      throw Stop{};
    }
    if (Clock::now() > deadline_) {
      obs_.problems.push_back(fmt::format(
          "the cell exceeded its {}s timeout",
          std::chrono::duration_cast<std::chrono::seconds>(plan_.scenario->timeout).count()));
      throw Stop{};
    }
  }

  void Prepare() {
    scratch_ = guest_.ScratchDir();
    const Scenario& s = *plan_.scenario;
    guest_program_ = scratch_ + "/" + s.target.program;
    guest_package_ = scratch_ + "/" + plan_.patch->spec->id + ".hpk";
    guest_pubkey_ = scratch_ + "/patch.pub";
    stats_path_ = scratch_ + "/stats";
    PutHostFile(plan_.built->program, guest_program_, 0755, "pushing the target");
    PutHostFile(plan_.patch->package, guest_package_, 0644, "pushing the package");
    PutHostFile(plan_.public_key, guest_pubkey_, 0644, "pushing the lab's public key");
    // Marks the kernel log: crashes before this point are not the cell's.
    (void)Must(guest_.KernelLogSince(), "reading the kernel log", Step::kLab);
  }

  // Copying into the machine is the lab's step: its failure is never the patch's.
  void PutHostFile(const std::filesystem::path& host_path, const std::string& guest_path,
                   mode_t mode, std::string_view what) {
    std::string bytes = Must(ReadFile(host_path), what, Step::kLab);
    Must(guest_.Put(guest_path, mode, bytes), what, Step::kLab);
  }

  void StartWorkload() {
    ExecRequest request;
    request.argv = WorkloadArgv(*plan_.workload, plan_.scenario->target.program, guest_program_);
    request.env = {{"PATCHLAB_STATS", stats_path_}};
    request.cwd = scratch_;
    request.stdout_path = scratch_ + "/workload.log";
    request.stderr_path = request.stdout_path + ".err";
    pid_ = Must(guest_.Exec(request), "starting the workload");
    running_ = true;
    // Wait for the first report: the target is up and doing work.
    Clock::time_point until = Clock::now() + kFirstReportGrace;
    while (true) {
      CheckTime();
      if (auto s = TryStats(); s && s->ops > 0) {
        start_wall_ns_ = s->wall_ns;  // the workload's duration runs on this clock
        break;
      }
      if (Clock::now() > until) {
        obs_.problems.push_back(fmt::format("the workload reported no work within {}s of its start",
                                            kFirstReportGrace.count() / 1000));
        throw Stop{};
      }
      Sleep(kPoll);
    }
  }

  // Window pairs in ABBA blocks until the CPU figure is resolved against its
  // limit, or the pair budget, the workload's time or the cell's is spent.
  void Measure() {
    const Scenario& s = *plan_.scenario;
    bool after_warmup = s.apply.when == ApplyWhen::kAfterWarmup;
    if (after_warmup) Sleep(plan_.workload->warmup);
    load_.Start();
    AbbaSteps steps{
        .set_patched = [this](bool patched) { return SetPatched(patched); },
        .measure_window = [this](bool patched) { MeasureWindow(patched); },
        .budget_left = [this] { return BudgetLeft(); },
        .after_block = [this] { load_.Sample(); },
    };
    if (!MeasureAbbaBlocks(plan_.rules.cpu, plan_.seed, after_warmup, obs_.windows, steps)) {
      throw Stop{};
    }
    obs_.host_load = load_.Stop();
    obs_.calls.push_back(
        ToPatchCall(PatchCall::Op::kVerify, Must(HotpatchVerify(guest_, pid_), "verifying")));
  }

  // Brings the patch to `patched`: the first apply samples the target's PSS
  // around it and runs the `apply.repeat` extra revert/apply cycles.
  bool SetPatched(bool patched) {
    if (patched == patched_) return true;
    if (!patched) {
      if (!Revert()) return false;
      patched_ = false;
      return true;
    }
    bool first = !applied_once_;
    if (first) obs_.pss_before_kib = Must(guest_.Sample(pid_), "sampling the target").pss_kib;
    if (!Apply()) return false;
    patched_ = applied_once_ = true;
    if (!first) return true;
    obs_.pss_after_kib = Must(guest_.Sample(pid_), "sampling the target").pss_kib;
    for (int r = 1; r < plan_.scenario->apply.repeat; ++r) {
      if (!Revert() || !Apply()) return false;
    }
    return true;
  }

  // Whether another `step` pairs fit in what is left of the workload's
  // duration (guest clock) and of the cell's timeout (host clock).
  bool BudgetLeft() {
    size_t windows = 2 * plan_.rules.cpu.step;
    auto per_window = (Clock::now() - measure_start_) / std::max<size_t>(obs_.windows.size(), 1);
    if (Clock::now() + per_window * (windows + 2) > deadline_) return false;
    if (obs_.windows.empty() || start_wall_ns_ == 0) return true;
    uint64_t used_ns = obs_.windows.back().end.wall_ns - start_wall_ns_;
    uint64_t need_ns =
        static_cast<uint64_t>(plan_.scenario->measure.window.count()) * 1000000 * (windows + 2);
    uint64_t duration_ns = static_cast<uint64_t>(plan_.workload->duration.count()) * 1000000;
    return used_ns + need_ns < duration_ns;
  }

  // Stops the workload (it must exit cleanly), then reads the kernel log and
  // the machine's own crash reports.
  void Finish() {
    if (running_) {
      if (auto s = TryStats()) obs_.last_stats = *s;
      (void)guest_.Kill(pid_, SIGTERM);
      auto exit = guest_.Wait(pid_, kExitGrace);
      if (!exit && exit.error().code() == ErrorCode::kInfra) {
        obs_.infra_error = "waiting for the workload: " + exit.error().ToString();
        return;
      }
      if (exit && exit->StillRunning()) {
        (void)guest_.Kill(pid_, SIGKILL);
        obs_.crashes.push_back(WorkloadHang(
            plan_.scenario->target.program,
            fmt::format("did not exit within {}s of SIGTERM", kExitGrace.count() / 1000)));
        (void)guest_.Wait(pid_, kExitGrace);
      } else if (exit) {
        NoteExit(*exit);
      }
      running_ = false;
      if (auto s = TryStats()) obs_.last_stats = *s;
    }
    auto klog = guest_.KernelLogSince();
    if (klog) {
      for (Crash& c : ClassifyKernelLog(*klog)) obs_.crashes.push_back(std::move(c));
    }
    for (Crash& c : guest_.MachineCrashes()) obs_.crashes.push_back(std::move(c));
  }

  void NoteExit(const ExitStatus& e) {
    if (auto crash = ClassifyWorkloadExit(plan_.scenario->target.program, pid_, e))
      obs_.crashes.push_back(std::move(*crash));
  }

  // Sleeps `d` while watching the workload: an early end stops the sequence.
  void Sleep(milliseconds d) {
    Clock::time_point until = Clock::now() + d;
    while (true) {
      CheckTime();
      milliseconds left = std::chrono::duration_cast<milliseconds>(until - Clock::now());
      if (left <= milliseconds(0)) return;
      if (!running_) {
        std::this_thread::sleep_for(std::min(left, kPoll));
        continue;
      }
      ExitStatus exit =
          Must(guest_.Wait(pid_, std::min(left, milliseconds(500))), "watching the workload");
      if (!exit.StillRunning()) {
        running_ = false;
        NoteExit(exit);
        if (exit.exited && exit.code == 0) {
          obs_.problems.push_back(
              "the workload ended before the measurement finished "
              "(make workload.duration longer)");
        }
        if (auto s = TryStats()) obs_.last_stats = *s;
        throw Stop{};
      }
    }
  }

  std::optional<StatsSample> TryStats() {
    auto text = guest_.Get(stats_path_);
    if (!text) {
      if (text.error().code() == ErrorCode::kInfra)
        Must(std::move(text), "reading the workload's stats");
      return std::nullopt;
    }
    auto s = ParseStatsLine(*text);
    if (!s) return std::nullopt;  // a torn read cannot happen (rename), but a target may lie
    obs_.last_stats = *s;
    return *s;
  }

  StatsSample Stats() {
    auto s = TryStats();
    if (!s) {
      obs_.problems.push_back("the workload's stats file " + stats_path_ +
                              " is missing or malformed");
      throw Stop{};
    }
    return *s;
  }

  // One window on the guest's clock: from one stats report to the first one at
  // least `measure.window` of the target's wall_ns later (a target without
  // wall_ns is timed on the host's clock). No operation for kHangAfter of the
  // host's time is a hang.
  void MeasureWindow(bool patched) {
    if (obs_.windows.empty()) measure_start_ = Clock::now();
    StatsSample begin = Stats();
    uint64_t window_ns = static_cast<uint64_t>(plan_.scenario->measure.window.count()) * 1000000;
    Clock::time_point host_start = Clock::now(), progress_at = host_start;
    uint64_t last_ops = begin.ops;
    StatsSample end = begin;
    while (true) {
      Sleep(kPoll);
      end = Stats();
      if (end.ops > last_ops) {
        last_ops = end.ops;
        progress_at = Clock::now();
      } else if (Clock::now() - progress_at > kHangAfter) {
        NoteHang(patched);
      }
      bool long_enough = begin.wall_ns != 0
                             ? end.wall_ns >= begin.wall_ns + window_ns
                             : Clock::now() - host_start >= plan_.scenario->measure.window;
      if (long_enough && end.ops > begin.ops) break;
    }
    obs_.windows.push_back({patched, begin, end});
  }

  [[noreturn]] void NoteHang(bool patched) {
    obs_.crashes.push_back({metrics::CrashKind::kLostHeartbeat,
                            fmt::format("{} completed no operation for {}s in a {} window (hung)",
                                        plan_.scenario->target.program, kHangAfter.count() / 1000,
                                        patched ? "patched" : "unpatched")});
    throw Stop{};
  }

  bool Apply() {
    CheckTime();
    HotpatchResult r = Must(
        HotpatchApply(guest_, pid_, guest_package_, guest_pubkey_, plan_.scenario->apply.timeout),
        "applying");
    PatchCall call = ToPatchCall(PatchCall::Op::kApply, r);
    // What the first apply mapped into the process: the patch's own memory,
    // reported beside the PSS growth it causes.
    if (call.exit_code == 0 && !applied_once_) {
      if (auto bytes = JsonNumber(r.json, "mapped_bytes")) obs_.mapped_kib = *bytes / 1024;
      if (auto bytes = JsonNumber(r.json, "island_bytes")) obs_.island_kib = *bytes / 1024;
    }
    obs_.calls.push_back(call);
    if (call.exit_code == 5) NoteVanished();
    return call.exit_code == 0;
  }

  // hotpatch found the target gone: tell a crash from a workload whose
  // duration ran out before the measurement did.
  void NoteVanished() {
    auto exit = guest_.Wait(pid_, milliseconds(1000));
    if (!exit || exit->StillRunning()) return;
    running_ = false;
    NoteExit(*exit);
    if (exit->exited && exit->code == 0) {
      obs_.problems.push_back(
          "the workload ended before the measurement finished (make workload.duration longer)");
    }
  }

  bool Revert() {
    CheckTime();
    PatchCall call =
        ToPatchCall(PatchCall::Op::kRevert,
                    Must(HotpatchRevert(guest_, pid_, plan_.patch->spec->id), "reverting"));
    obs_.calls.push_back(call);
    if (call.exit_code == 5) NoteVanished();
    return call.exit_code == 0;
  }

  CellGuest& guest_;
  const CellPlan& plan_;
  const std::atomic<bool>* cancel_;
  CellObservations& obs_;
  Clock::time_point deadline_;
  std::string scratch_, guest_program_, guest_package_, guest_pubkey_, stats_path_;
  pid_t pid_ = -1;
  bool running_ = false;
  bool machine_gone_ = false;
  bool patched_ = false;        // the patch is live now
  bool applied_once_ = false;   // the first apply has been made
  uint64_t start_wall_ns_ = 0;  // the target's clock at its first report
  Clock::time_point measure_start_{};
  HostLoadMeter load_;
};

}  // namespace

std::vector<std::string> WorkloadArgv(const WorkloadSpec& workload, const std::string& program,
                                      const std::string& guest_program) {
  std::vector<std::string> argv = workload.command;
  if (!argv.empty() && argv[0] == program) argv[0] = guest_program;
  for (auto& a : argv) {
    ReplaceAll(a, "{threads}", std::to_string(workload.threads));
    ReplaceAll(a, "{duration_ms}", std::to_string(workload.duration.count()));
  }
  return argv;
}

CellObservations RunCellSequence(CellGuest& guest, const CellPlan& plan,
                                 const std::atomic<bool>* cancel) {
  if (!plan.scenario->target.Built()) return RunAppCellSequence(guest, plan, cancel);
  CellObservations obs;
  obs.clock = guest.Clock();
  Sequence(guest, plan, cancel, obs).Run();
  Log("harness")->debug("cell {}/{}: {} windows, {} patch calls, {} crashes", plan.scenario->name,
                        plan.patch->spec->id, obs.windows.size(), obs.calls.size(),
                        obs.crashes.size());
  return obs;
}

}  // namespace patchlab::harness::internal
