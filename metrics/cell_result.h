// The records of the compatibility database: what one lab run is, which patch
// and image it used, and the figures of one matrix cell (scenario x patch x
// image x CPU model x workload). harness::Runner fills a CellResult per cell and
// hands it to CompatDb::RecordCell; the gate and the reports read them back.
//
// Plain value types. Thread-safety: as any value; distinct objects anywhere.
// Every enum has a stable lowercase name (the one stored in the database and
// shown to users) and a parser that fails on an unknown name, naming it.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "metrics/overhead_rule.h"
#include "metrics/stats.h"
#include "metrics/window_sample.h"

namespace patchlab::metrics {

// The outcome of one cell.
enum class Verdict {
  kPass,             // applied, nothing crashed, figures within the scenario's limits
  kFail,             // the patch or the patched program misbehaved
  kNotHotpatchable,  // the patch core refused it safely (nothing changed)
  kInfraError,       // the lab failed (VM did not boot, agent lost): says nothing of the patch
};
std::string_view VerdictName(Verdict v);  // "pass" "fail" "not-hotpatchable" "infra-error"
Result<Verdict> ParseVerdict(std::string_view name);

// What happened when the patch was applied live.
enum class ApplyResult {
  kApplied,     // every function redirected
  kRefused,     // a safety check said no before any write
  kRolledBack,  // failed part-way; every write undone
  kNotRun,      // never attempted (infra error, earlier failure)
};
std::string_view ApplyResultName(ApplyResult a);  // "applied" "refused" "rolled-back" "not-run"
Result<ApplyResult> ParseApplyResult(std::string_view name);

// Kinds of crash the lab tells apart (workload exits and kernel log lines).
enum class CrashKind {
  kWorkloadSignal,  // a workload process died by a signal
  kWorkloadExit,    // a workload exited non-zero
  kSegfault,        // kernel log: "segfault at"
  kTrap,            // kernel log: "traps: ... trap"
  kGpf,             // kernel log: "general protection fault"
  kOops,            // kernel log: "Oops"
  kBug,             // kernel log: "BUG:"
  kPanic,           // kernel log: "Kernel panic"
  kOom,             // kernel log: "Out of memory: Killed process"
  kVmPanic,         // QEMU reported GUEST_PANICKED / the VM died
  kLostHeartbeat,   // the workload or agent stopped reporting (a hang)
};
inline constexpr CrashKind kAllCrashKinds[] = {CrashKind::kWorkloadSignal,
                                               CrashKind::kWorkloadExit,
                                               CrashKind::kSegfault,
                                               CrashKind::kTrap,
                                               CrashKind::kGpf,
                                               CrashKind::kOops,
                                               CrashKind::kBug,
                                               CrashKind::kPanic,
                                               CrashKind::kOom,
                                               CrashKind::kVmPanic,
                                               CrashKind::kLostHeartbeat};
// "workload-signal" "workload-exit" "segfault" "trap" "gpf" "oops" "bug" "panic"
// "oom" "vm-panic" "lost-heartbeat"
std::string_view CrashKindName(CrashKind k);
Result<CrashKind> ParseCrashKind(std::string_view name);

// The semantic checker's (emulator::Checker) conclusion for the patch.
enum class SemanticVerdict {
  kNotRun,        // no check was made (or none recorded)
  kPass,          // old and new agree except where the fix declares otherwise
  kFail,          // an undeclared divergence was found (see the findings)
  kInconclusive,  // the checker could not decide (unsupported code, budget)
};
std::string_view SemanticVerdictName(SemanticVerdict s);  // "not-run" "pass" "fail" "inconclusive"
Result<SemanticVerdict> ParseSemanticVerdict(std::string_view name);

enum class RunStatus {
  kRunning,     // a lab process is (or was, if it died) recording into it
  kComplete,    // every planned cell recorded
  kIncomplete,  // interrupted; `patchlab run --resume ID` finishes it
  kFailed,      // the run itself could not proceed (bad scenario, no image)
};
std::string_view RunStatusName(RunStatus s);  // "running" "complete" "incomplete" "failed"
Result<RunStatus> ParseRunStatus(std::string_view name);

// How a CPU figure was measured: the clock its per-window costs were read on.
enum class CpuClock {
  kUnknown,            // rows recorded before schema 4
  kGuestInstructions,  // a TCG guest under QEMU's -icount: guest time counts instructions
  kGuestCpuTime,       // the target's CPU time in a guest (plain TCG or KVM): host load leaks in
  kNativeCpuTime,      // the target's CPU time on this host's own processes (no emulation)
};
std::string_view CpuClockName(
    CpuClock c);  // "" "guest-instructions" "guest-cpu-time" "native-cpu-time"
Result<CpuClock> ParseCpuClock(std::string_view name);

// The lab host's own load while a cell measured (the guest cannot see it).
struct HostLoad {
  double load1 = 0;      // mean of /proc/loadavg's 1-minute figure over the windows
  double busy_pct = 0;   // CPU busy (user + system + steal...) of the whole host, percent
  double steal_pct = 0;  // CPU time the hypervisor under this host took, percent
};

// One cell of the matrix. Ordered and comparable so it can key maps.
struct CellKey {
  std::string scenario;
  std::string patch_id;
  std::string image;
  std::string cpu;       // QEMU CPU model, e.g. "qemu64", "Skylake-Client"
  std::string workload;  // "default" when the scenario has one
  auto operator<=>(const CellKey&) const = default;
  bool operator==(const CellKey&) const = default;
  // "scenario/patch on image x cpu x workload"
  std::string ToString() const;
};

// The figures of one cell as measured in one run.
struct CellResult {
  int64_t run_id = 0;
  CellKey key;
  int patch_seq = 0;
  std::string host;  // the machine the VM ran on
  // What ran, for a target the lab did not build: "PACKAGE VERSION" (a Debian
  // package's program) or "PROGRAM build-id ID"; empty for the lab's own targets.
  std::string application;

  Verdict verdict = Verdict::kInfraError;
  // Whether the verdict is what the scenario's `expect` asked for (a scenario may
  // expect a refusal); nullopt when the scenario states no expectation.
  std::optional<bool> met_expectation;

  ApplyResult apply = ApplyResult::kNotRun;
  std::string apply_reason;  // why refused / rolled back; empty when applied

  std::map<CrashKind, int> crashes;  // absent kinds are 0

  std::vector<double> pause_us;           // every stop-the-world pause measured
  std::optional<double> pause_median_us;  // Median(pause_us) unless set otherwise

  // The CPU overhead the cell is judged on (overhead_rule.h), with the clock it
  // was read on, its 99% interval's coverage (Estimate::coverage), how the
  // run judged it and against which limit (the policy's, tightened by the
  // scenario's own when `cpu_scenario_limit_pct` is set).
  std::optional<Estimate> cpu_overhead_pct;
  CpuClock cpu_clock = CpuClock::kUnknown;
  std::optional<OverheadOutcome> cpu_outcome;
  std::optional<double> cpu_limit_pct;
  std::optional<double> cpu_scenario_limit_pct;
  std::vector<WindowSample> cpu_windows;  // every measured window, in order
  // The other figure of the same patch, reported beside the judged one (the
  // native figure beside a VM's, or the VM's when the native one is judged).
  std::optional<Estimate> cpu_reference_pct;
  CpuClock cpu_reference_clock = CpuClock::kUnknown;
  std::optional<HostLoad> host_load;  // the lab host while the windows ran

  std::optional<double> mem_overhead_kib;  // per patched process (PSS growth after the first apply)
  std::optional<double> patch_mapped_kib;  // what the patch mapped into the process (hotpatch)
  std::optional<double> island_kib;        // of which the trampoline island pages

  SemanticVerdict semantic = SemanticVerdict::kNotRun;
  int64_t duration_ms = 0;
  std::string artefacts;             // folder with console log, agent log, dmesg
  std::vector<std::string> reasons;  // why the verdict is what it is, one line each

  int64_t recorded_at = 0;  // unix seconds; set by the database

  int TotalCrashes() const;
};

struct RunInfo {
  int64_t id = 0;            // set by CompatDb::BeginRun
  int64_t started_at = 0;    // unix seconds; BeginRun fills it when 0
  int64_t finished_at = 0;   // 0 while running
  std::string host;          // BeginRun fills it when empty
  std::string version;       // patchlab version; BeginRun fills it when empty
  std::string git_revision;  // git describe of the build; BeginRun fills it when empty
  RunStatus status = RunStatus::kRunning;
  std::string label;  // free tag, e.g. "nightly", "pre-release"
  std::string args;   // what the run was asked to do (scenario paths, options), for --resume
  std::string note;   // why it is incomplete / failed
  int pid = 0;        // the recording process; BeginRun fills it
  // Who `pid` is, so that a recycled pid, another host's or another boot's
  // process is not taken for the recorder (schema 3; empty/0 in older rows).
  // BeginRun fills them for `pid` when empty.
  std::string boot_id;    // /proc/sys/kernel/random/boot_id of the recording host
  std::string pid_ns;     // the recorder's pid namespace, e.g. "pid:[4026531836]"
  int64_t pid_start = 0;  // its start time, clock ticks after boot (/proc/PID/stat field 22)
};

struct PatchInfo {
  std::string id;
  int seq = 0;
  std::string target_build_id;  // hex
  std::string package_hash;     // sha256 hex of the package file
  std::string signer;           // public key fingerprint or name
};

struct ImageInfo {
  std::string name;
  std::string kernel_version;
  std::vector<std::string> packages;  // "name=version"
  std::string content_hash;           // the image cache key
};

// A divergence the semantic checker found, shrunk to a minimal input.
struct SemanticFinding {
  int64_t run_id = 0;
  std::string scenario;
  std::string patch_id;
  std::string function;
  std::string kind;        // "return-value", "memory", "fault", "call", ...
  std::string input;       // the minimized input, as the checker prints it
  std::string old_result;  // what the old function did
  std::string new_result;  // what the new one did
  bool expected = false;   // declared by the patch as the fix itself
  std::string detail;
};

}  // namespace patchlab::metrics
