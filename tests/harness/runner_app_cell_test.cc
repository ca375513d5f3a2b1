// The real-application cell sequence against a scripted fake machine (the VM
// boundary): a target of several processes, a load generator whose output the
// scenario's regex reads, a check. Each test scripts one thing going wrong and
// checks whose failure it becomes: the lab's (infra-error naming the scenario
// field) or the patch's (a crash, wrong results).
#include "harness/lab/internal/runner_app_cell.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "base/file_util.h"
#include "harness/lab/internal/abba_measurement.h"
#include "harness/lab/internal/runner_figures.h"
#include "metrics/cell_result.h"
#include "tests/support/status_matchers.h"

namespace patchlab::harness::internal {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

constexpr const char* kProgram = "/usr/sbin/server";

class AppGuest : public CellGuest {
 public:
  // The target's processes: pid -> CPU ns; every listing adds `cpu_step` to each.
  std::map<pid_t, uint64_t> procs = {{100, 0}, {101, 0}, {102, 0}};
  uint64_t cpu_step = 1'000'000;
  bool ready = true;
  std::string generator_output = "Complete requests:      50\n  50%      4\n";
  // When set, the generator's runs complete these counts in turn instead.
  std::vector<int> work_cycle;
  int generator_runs = 0;
  bool check_ok = true;
  bool check_fails_once_patched = false;  // fails from the first apply on
  int kill_worker_at_listing = 0;         // 1-based; that listing lacks pid 102 and has 103
  int listings = 0;
  std::vector<pid_t> applied;
  std::map<std::string, std::string> files;

  Status Put(const std::string&, mode_t, std::string_view) override { return {}; }
  Result<std::string> Get(const std::string& path) override {
    auto it = files.find(path);
    if (it == files.end()) return Fail(ErrorCode::kNotFound, "{}", path);
    return it->second;
  }
  Result<pid_t> Exec(const ExecRequest& request) override {
    if (request.argv[0] == "gen") {
      files[request.stdout_path] =
          work_cycle.empty() ? generator_output
                             : fmt::format("Complete requests: {}\n",
                                           work_cycle[generator_runs % work_cycle.size()]);
      ++generator_runs;
    }
    return 900;
  }
  Result<ExitStatus> Wait(pid_t, milliseconds) override { return ExitStatus{.exited = true}; }
  Status Kill(pid_t pid, int) override {
    procs.erase(pid);
    return {};
  }
  Result<ProcessSample> Sample(pid_t pid) override {
    return ProcessSample{.pid = pid, .rss_kib = 2000, .pss_kib = 1000};
  }
  Result<RunResult> Run(const ExecRequest& request, milliseconds) override {
    const std::string& argv0 = request.argv[0];
    RunResult r;
    r.exit.exited = true;
    if (argv0 == "readlink") r.stdout_data = std::string(kProgram) + "\n";
    if (argv0 == "dpkg-query") r.stdout_data = "1.2-3";
    if (argv0 == "probe" && !ready) r.exit.code = 1;
    if (argv0 == "stop") procs.clear();  // the service's own stop command
    if (argv0 == "check") {
      bool ok = check_ok && !(check_fails_once_patched && !applied.empty());
      r.stdout_data = ok ? "ok\n" : "mismatch\n";
      r.exit.code = ok ? 0 : 1;
    }
    return r;
  }
  Result<std::vector<ProcessCpu>> Processes(const std::string& program) override {
    EXPECT_EQ(program, kProgram);
    if (++listings == kill_worker_at_listing) {
      procs.erase(102);
      procs[103] = 0;  // the master respawned it
    }
    std::vector<ProcessCpu> out;
    for (auto& [pid, cpu] : procs) {
      cpu += cpu_step;
      out.push_back({pid, pid == 100 ? 1 : 100, "server", 5000 + static_cast<uint64_t>(pid), cpu});
    }
    // A check running the same program: not the target, never a crash when it ends.
    if (listings % 2 == 0) out.push_back({700 + listings, 1, "server", 1, 5});
    return out;
  }
  // hotpatch --system: the target's processes and a python3 (pid 650) map
  // the module; pid 777 started while the patch was live.
  std::vector<std::string> system_calls;
  bool system_refuses_101 = false;
  bool system_misses_102 = false;
  Result<HotpatchResult> System(const std::string& subcommand) {
    system_calls.push_back(subcommand);
    HotpatchResult r;
    if (subcommand == "status") {
      r.json = nlohmann::json::parse(
          R"({"processes": [], "system_patches": [{"id": "fix-1", "unpatched":
              [{"pid": 777, "comm": "python3"}]}]})");
      return r;
    }
    const char* done = subcommand == "apply"    ? "applied"
                       : subcommand == "revert" ? "reverted"
                                                : "ok";
    nlohmann::json procs = nlohmann::json::array();
    for (int pid : {100, 101, 102, 650}) {
      if (pid == 102 && system_misses_102) continue;
      bool refused = subcommand == "apply" && pid == 101 && system_refuses_101;
      procs.push_back({{"pid", pid},
                       {"comm", pid == 650 ? "python3" : "server"},
                       {"result", refused ? "refused" : done},
                       {"reason", refused ? "crc32_z is on a thread's stack" : ""},
                       {"pause_us", 900},
                       {"mapped_bytes", 12288},
                       {"island_bytes", 4096}});
    }
    r.exit_code = subcommand == "apply" && system_refuses_101 ? 3 : 0;
    r.json = {{"patch_id", "fix-1"}, {"processes", procs}, {"wall_us", 5000}};
    return r;
  }

  // hotpatch in the machine: every call succeeds; an apply's pid is noted.
  Result<HotpatchResult> Hotpatch(const std::string& subcommand, std::vector<std::string> args,
                                  milliseconds) override {
    if (args.at(0) == "--system") return System(subcommand);
    HotpatchResult r;
    if (subcommand == "apply") {
      applied.push_back(std::stoi(args.at(1)));  // --pid PID
      r.json = nlohmann::json::parse(
          R"({"pause_us": 1500, "mapped_bytes": 8192, "island_bytes": 4096})");
    }
    return r;
  }
  Result<std::string> KernelLogSince() override { return std::string(); }
  std::vector<Crash> MachineCrashes() override { return {}; }
  std::string ScratchDir() const override { return "/tmp/cell"; }
  metrics::CpuClock Clock() const override { return metrics::CpuClock::kGuestCpuTime; }
  Status Shutdown() override { return {}; }
};

// The lab's side: the package and public key are real host files, read before
// they are copied into the machine.
struct AppPlan {
  AppPlan() {
    char tmpl[] = "/tmp/patchlab-app-cell-test-XXXXXX";
    dir = ::mkdtemp(tmpl);
    for (const char* name : {"fix-1.hpk", "key.pub"}) {
      EXPECT_OK(WriteFileAtomic(dir / name, std::string("bytes of ") + name));
    }
    scenario.name = "app";
    scenario.timeout = std::chrono::seconds(60);
    scenario.measure.window = milliseconds(100);
    scenario.measure.alternations = 2;
    scenario.target.program = kProgram;
    scenario.target.package = "server-pkg";
    scenario.target.where = "app/scenario.yaml:5:12";
    spec.id = "fix-1";
    patch.spec = &spec;
    patch.package = dir / "fix-1.hpk";
    workload.warmup = milliseconds(0);
    workload.service = ServiceSpec{{{"start"}, "app/scenario.yaml:14:14: workload.service.command"},
                                   {{"probe"}, "app/scenario.yaml:15:12: workload.service.ready"},
                                   {{"stop"}, "app/scenario.yaml:16:11: workload.service.stop"},
                                   milliseconds(300)};
    workload.load = LoadSpec{{{"gen"}, "app/scenario.yaml:18:14: workload.load.command"},
                             R"(Complete requests:\s+(\d+))",
                             {{"p50", R"(\n\s+50%\s+(\d+))"}},
                             "app/scenario.yaml:19:11: workload.load.work"};
    workload.check =
        CheckSpec{{{"check"}, "app/scenario.yaml:23:14: workload.check.command"}, "^ok"};
    plan.scenario = &scenario;
    plan.built = &built;
    plan.patch = &patch;
    plan.workload = &workload;
    plan.public_key = dir / "key.pub";
    plan.image = "debian12-apps";
    // One ABBA block (two pairs) unless a test asks for more.
    plan.rules.cpu.limit_pct = 1000;
    plan.rules.cpu.min_pairs = 2;
    plan.rules.cpu.max_pairs = 2;
    plan.seed = 42;
    workload.duration = std::chrono::seconds(50);
  }
  ~AppPlan() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::filesystem::path dir;
  Scenario scenario;
  PatchSpec spec;
  BuiltScenario built;
  BuiltPatch patch;
  WorkloadSpec workload;
  CellPlan plan;
};

metrics::CellResult Figures(const CellObservations& obs) {
  metrics::CellResult cell;
  CellRules rules;
  rules.cpu.limit_pct = 1000;
  ComputeFigures(obs, rules, cell);
  return cell;
}

TEST(AppCellSequence, EveryProcessIsPatchedAndEachWindowHasWorkAndCpu) {
  AppPlan p;
  AppGuest guest;
  CellObservations obs = RunAppCellSequence(guest, p.plan, nullptr);
  ASSERT_FALSE(obs.infra_error) << *obs.infra_error;
  EXPECT_EQ(obs.application, "server-pkg 1.2-3");
  // One ABBA block (unpatched, patched, patched, unpatched): one apply, to
  // each of the three processes.
  EXPECT_THAT(guest.applied, ::testing::ElementsAre(100, 101, 102));
  ASSERT_EQ(obs.windows.size(), 4u);
  for (const Window& w : obs.windows) {
    EXPECT_EQ(w.end.ops - w.begin.ops, 50u) << "the generator's count";
    // Three processes, each listed at the start and the end of the window.
    EXPECT_EQ(w.end.cpu_ns - w.begin.cpu_ns, 3 * guest.cpu_step);
  }
  EXPECT_EQ(obs.latency_unpatched_ms.at("p50"), (std::vector<double>{4, 4}));
  metrics::CellResult cell = Figures(obs);
  EXPECT_EQ(cell.verdict, metrics::Verdict::kPass) << ::testing::PrintToString(cell.reasons);
  EXPECT_EQ(cell.pause_us.size(), 3u);
}

std::vector<bool> PatchedFlags(const CellObservations& obs) {
  std::vector<bool> out;
  for (const Window& w : obs.windows) out.push_back(w.patched);
  return out;
}

TEST(AppCellSequence, WindowsFollowTheLabstatsPathsAbbaSchedule) {
  AppPlan p;
  p.plan.rules.cpu.min_pairs = p.plan.rules.cpu.max_pairs = 8;
  AppGuest guest;
  CellObservations obs = RunAppCellSequence(guest, p.plan, nullptr);
  ASSERT_FALSE(obs.infra_error) << *obs.infra_error;
  std::vector<bool> schedule = AbbaSchedule(p.plan.seed, 4, /*first_unpatched=*/true);
  EXPECT_EQ(PatchedFlags(obs), schedule);
  // Each switch to patched applies to the three processes, no more.
  size_t switches = 0;
  for (size_t i = 0; i < schedule.size(); ++i)
    switches += schedule[i] && (i == 0 || !schedule[i - 1]);
  EXPECT_EQ(guest.applied.size(), 3 * switches);
  // Another seed, another order (the first block always starts unpatched).
  EXPECT_NE(schedule, AbbaSchedule(p.plan.seed + 1, 4, true));
}

TEST(AppCellSequence, AFigureResolvedAtTheFirstLookStopsThere) {
  AppPlan p;
  p.plan.rules.cpu.min_pairs = 12;
  p.plan.rules.cpu.max_pairs = 28;
  AppGuest guest;  // the same cost per request patched or not: 0%, within 1000%
  CellObservations obs = RunAppCellSequence(guest, p.plan, nullptr);
  ASSERT_FALSE(obs.infra_error) << *obs.infra_error;
  EXPECT_EQ(PairedWindowCosts(obs.windows).unpatched.size(), 12u);
  metrics::CellResult cell = Figures(obs);
  ASSERT_TRUE(cell.cpu_overhead_pct);
  EXPECT_EQ(cell.cpu_outcome, metrics::OverheadOutcome::kWithin);
}

TEST(AppCellSequence, AFigureStraddlingItsLimitMeasuresMorePairsUpToTheBudget) {
  AppPlan p;
  p.plan.rules.cpu.limit_pct = 0;  // costs that scatter around 0%: the interval straddles it
  p.plan.rules.cpu.min_pairs = 2;
  p.plan.rules.cpu.max_pairs = 10;
  AppGuest guest;
  guest.work_cycle = {40, 50, 60};
  CellObservations obs = RunAppCellSequence(guest, p.plan, nullptr);
  ASSERT_FALSE(obs.infra_error) << *obs.infra_error;
  // Looks at 2, 6 and 10 pairs: never resolved, so the whole budget.
  EXPECT_EQ(PairedWindowCosts(obs.windows).unpatched.size(), 10u);
  metrics::CellResult cell;
  ComputeFigures(obs, p.plan.rules, cell);
  EXPECT_EQ(cell.cpu_outcome, metrics::OverheadOutcome::kNoisy);
  EXPECT_NE(cell.verdict, metrics::Verdict::kFail) << "a noisy figure fails nothing";
}

TEST(AppCellSequence, TwoPairsAreNoisyBecauseTheyCoverTooLittleAndTheReasonSaysSo) {
  AppPlan p;  // one ABBA block: two pairs, however far from the limit
  AppGuest guest;
  CellObservations obs = RunAppCellSequence(guest, p.plan, nullptr);
  ASSERT_FALSE(obs.infra_error) << *obs.infra_error;
  metrics::CellResult cell;
  CellRules rules;  // the policy's 2%
  ComputeFigures(obs, rules, cell);
  EXPECT_EQ(cell.cpu_outcome, metrics::OverheadOutcome::kNoisy);
  EXPECT_THAT(::testing::PrintToString(cell.reasons),
              HasSubstr("with 2 pairs (a 99.9% interval needs at least 11): noisy"));
  EXPECT_EQ(cell.verdict, metrics::Verdict::kPass);
}

TEST(AppCellSequence, AWorkloadDurationSpentEndsTheMeasurementAtTheNextLook) {
  AppPlan p;
  p.plan.rules.cpu.limit_pct = 0;
  p.plan.rules.cpu.min_pairs = 2;
  p.plan.rules.cpu.max_pairs = 10;
  p.workload.duration = milliseconds(0);  // nothing left after the first look
  AppGuest guest;
  guest.work_cycle = {40, 50, 60};
  CellObservations obs = RunAppCellSequence(guest, p.plan, nullptr);
  ASSERT_FALSE(obs.infra_error) << *obs.infra_error;
  EXPECT_EQ(PairedWindowCosts(obs.windows).unpatched.size(), 2u);
}

// The patch's own memory beside the PSS growth, as for a labstats target:
// what the first apply mapped into each of the target's processes, summed as
// their PSS is (later applies map the same again and are not added).
TEST(AppCellSequence, ThePatchesMappedAndIslandBytesAreSummedOverTheTargetsProcesses) {
  AppPlan p;
  p.scenario.apply.repeat = 3;
  AppGuest guest;
  CellObservations obs = RunAppCellSequence(guest, p.plan, nullptr);
  ASSERT_FALSE(obs.infra_error) << *obs.infra_error;
  EXPECT_EQ(guest.applied.size(), 9u) << "the first apply and two repeats, three processes each";
  metrics::CellResult cell = Figures(obs);
  EXPECT_EQ(cell.patch_mapped_kib, 24.0) << "8 KiB in each of three processes";
  EXPECT_EQ(cell.island_kib, 12.0);
  EXPECT_EQ(cell.mem_overhead_kib, 0.0) << "the fake's PSS does not grow";
}

TEST(AppCellSequence, ASystemWideApplyCountsTheMemoryOfTheTargetsProcessesOnly) {
  AppPlan p;
  p.spec.processes = PatchProcesses::kAll;
  AppGuest guest;
  CellObservations obs = RunAppCellSequence(guest, p.plan, nullptr);
  ASSERT_FALSE(obs.infra_error) << *obs.infra_error;
  metrics::CellResult cell = Figures(obs);
  EXPECT_EQ(cell.patch_mapped_kib, 36.0) << "12 KiB in each of the three servers, not python3's";
  EXPECT_EQ(cell.island_kib, 12.0);
}

TEST(AppCellSequence, PatchProcessesAllAppliesSystemWideAndCountsThoseStartedUnpatched) {
  AppPlan p;
  p.spec.processes = PatchProcesses::kAll;
  AppGuest guest;
  CellObservations obs = RunAppCellSequence(guest, p.plan, nullptr);
  ASSERT_FALSE(obs.infra_error) << *obs.infra_error;
  EXPECT_TRUE(guest.applied.empty()) << "no apply --pid";
  // One ABBA block: apply, status after each of the two patched windows, revert, verify.
  EXPECT_THAT(guest.system_calls,
              ::testing::ElementsAre("apply", "status", "status", "revert", "verify"));
  ASSERT_TRUE(obs.system_wide);
  EXPECT_EQ(obs.system_wide->most_patched, 4u) << "the python3 that maps the module too";
  EXPECT_EQ(obs.system_wide->unpatched.size(), 1u);
  metrics::CellResult cell = Figures(obs);
  EXPECT_EQ(cell.verdict, metrics::Verdict::kPass) << ::testing::PrintToString(cell.reasons);
  EXPECT_EQ(cell.pause_us.size(), 4u);
  EXPECT_THAT(::testing::PrintToString(cell.reasons),
              HasSubstr("1 process(es) started while the patch was live and ran unpatched: "
                        "python3 (pid 777)"));
}

TEST(AppCellSequence, ASystemWideApplyRefusedInOneProcessIsNotHotpatchableAndReverted) {
  AppPlan p;
  p.spec.processes = PatchProcesses::kAll;
  AppGuest guest;
  guest.system_refuses_101 = true;
  CellObservations obs = RunAppCellSequence(guest, p.plan, nullptr);
  ASSERT_FALSE(obs.infra_error) << *obs.infra_error;
  EXPECT_THAT(guest.system_calls, ::testing::ElementsAre("apply", "revert"))
      << "the processes it did patch are reverted";
  metrics::CellResult cell = Figures(obs);
  EXPECT_EQ(cell.verdict, metrics::Verdict::kNotHotpatchable)
      << ::testing::PrintToString(cell.reasons);
  EXPECT_THAT(cell.apply_reason, HasSubstr("pid 101 (server): refused: crc32_z is on a thread's"));
}

TEST(AppCellSequence, ATargetProcessASystemWideApplyMissedIsARefusal) {
  AppPlan p;
  p.spec.processes = PatchProcesses::kAll;
  AppGuest guest;
  guest.system_misses_102 = true;
  CellObservations obs = RunAppCellSequence(guest, p.plan, nullptr);
  ASSERT_FALSE(obs.infra_error) << *obs.infra_error;
  metrics::CellResult cell = Figures(obs);
  EXPECT_EQ(cell.verdict, metrics::Verdict::kNotHotpatchable);
  EXPECT_THAT(cell.apply_reason, HasSubstr("pid 102 (server) of the target was not patched"));
}

TEST(AppCellSequence, AWorkerThatDiesAndIsRespawnedIsACrash) {
  AppPlan p;
  AppGuest guest;
  guest.kill_worker_at_listing = 4;  // inside the first measured windows
  CellObservations obs = RunAppCellSequence(guest, p.plan, nullptr);
  ASSERT_FALSE(obs.infra_error) << *obs.infra_error;
  metrics::CellResult cell = Figures(obs);
  EXPECT_EQ(cell.verdict, metrics::Verdict::kFail);
  EXPECT_EQ(cell.TotalCrashes(), 1);
  EXPECT_THAT(::testing::PrintToString(cell.reasons), HasSubstr("process 102 (server) ended"));
}

TEST(AppCellSequence, AFailingCheckIsAWrongResultWithItsOutputKept) {
  AppPlan p;
  AppGuest guest;
  guest.check_fails_once_patched = true;
  CellObservations obs = RunAppCellSequence(guest, p.plan, nullptr);
  ASSERT_FALSE(obs.infra_error) << *obs.infra_error;
  metrics::CellResult cell = Figures(obs);
  EXPECT_EQ(cell.verdict, metrics::Verdict::kFail);
  EXPECT_THAT(::testing::PrintToString(cell.reasons), HasSubstr("workload.check.command"));
  EXPECT_THAT(::testing::PrintToString(cell.reasons), HasSubstr("wrong results"));
  ASSERT_TRUE(obs.artefacts.contains("check-1.out"));
  EXPECT_THAT(obs.artefacts.at("check-1.out"), HasSubstr("mismatch"));
}

// A check that fails before any patch was applied says the service or the
// check is broken (a module not installed, a wrong URL), not the patch.
TEST(AppCellSequence, ACheckFailingBeforeAnyPatchIsTheLabsErrorNamingTheField) {
  AppPlan p;
  AppGuest guest;
  guest.check_ok = false;
  CellObservations obs = RunAppCellSequence(guest, p.plan, nullptr);
  ASSERT_TRUE(obs.infra_error);
  EXPECT_THAT(*obs.infra_error, HasSubstr("app/scenario.yaml:23:14: workload.check.command"));
  EXPECT_THAT(*obs.infra_error, HasSubstr("before any patch was applied"));
  EXPECT_THAT(*obs.infra_error, HasSubstr("mismatch"));
  EXPECT_TRUE(guest.applied.empty());
  ASSERT_TRUE(obs.artefacts.contains("check-1.out"));
}

TEST(AppCellSequence, AGeneratorOutputThatNeverMatchesIsTheLabsErrorNamingTheField) {
  AppPlan p;
  AppGuest guest;
  guest.generator_output = "apr_socket_connect(): Connection refused (111)\n";
  CellObservations obs = RunAppCellSequence(guest, p.plan, nullptr);
  ASSERT_TRUE(obs.infra_error);
  EXPECT_THAT(*obs.infra_error, HasSubstr("app/scenario.yaml:19:11: workload.load.work"));
  EXPECT_THAT(*obs.infra_error, HasSubstr("Connection refused"));
  EXPECT_TRUE(guest.applied.empty()) << "no patch before the measurement works";
  EXPECT_EQ(Figures(obs).verdict, metrics::Verdict::kInfraError);
}

TEST(AppCellSequence, AServiceNeverReadyIsTheLabsErrorNamingTheProbe) {
  AppPlan p;
  AppGuest guest;
  guest.ready = false;
  CellObservations obs = RunAppCellSequence(guest, p.plan, nullptr);
  ASSERT_TRUE(obs.infra_error);
  EXPECT_THAT(*obs.infra_error, HasSubstr("app/scenario.yaml:15:12: workload.service.ready"));
  EXPECT_THAT(*obs.infra_error, HasSubstr("did not become ready within 300ms"));
  EXPECT_EQ(Figures(obs).verdict, metrics::Verdict::kInfraError);
}

TEST(AppCellSequence, AProgramThatRunsNoProcessIsTheLabsErrorNamingTheField) {
  AppPlan p;
  AppGuest guest;
  guest.procs.clear();
  CellObservations obs = RunAppCellSequence(guest, p.plan, nullptr);
  ASSERT_TRUE(obs.infra_error);
  EXPECT_THAT(*obs.infra_error, HasSubstr("app/scenario.yaml:5:12: target.program"));
}

TEST(AppArgv, ReplacesThePlaceholders) {
  WorkloadSpec w;
  w.threads = 4;
  w.duration = std::chrono::seconds(30);
  EXPECT_THAT(AppArgv({"ab", "-t", "{window_s}", "-c", "{threads}", "{cell}/x", "{window_ms}"}, w,
                      milliseconds(2600), "/tmp/cell"),
              ::testing::ElementsAre("ab", "-t", "3", "-c", "4", "/tmp/cell/x", "2600"));
  EXPECT_THAT(AppArgv({"{window_s}"}, w, milliseconds(100), "/c"), ::testing::ElementsAre("1"));
}

}  // namespace
}  // namespace patchlab::harness::internal
