// The cell sequence against a fake machine (the VM boundary): a lab step that
// fails without the machine failing (the guest disk fills while the target,
// the package or the key is copied in) is the lab's failure, recorded as
// infra-error, never a failure of the patch; a machine that crashed meanwhile
// is the patch's doing and stays a crash.
#include "harness/lab/internal/runner_cell.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include "base/file_util.h"
#include "harness/lab/internal/runner_figures.h"
#include "metrics/cell_result.h"
#include "tests/support/status_matchers.h"

namespace patchlab::harness::internal {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

// Copies succeed until `fail_put` (1-based), which fails with `error`; every
// later step would be the patch's and is not reached in these tests.
class FakeGuest : public CellGuest {
 public:
  int fail_put = 0;
  Error error{ErrorCode::kIo, "write /tmp/cell/p.hpk: No space left on device"};
  std::vector<Crash> crashes;
  std::vector<std::string> put;

  Status Put(const std::string& guest_path, mode_t, std::string_view) override {
    put.push_back(guest_path);
    if (static_cast<int>(put.size()) == fail_put) return std::unexpected(error);
    return {};
  }
  Result<std::string> Get(const std::string&) override { return Unreached(); }
  Result<pid_t> Exec(const ExecRequest&) override { return Unreached(); }
  Result<ExitStatus> Wait(pid_t, milliseconds) override { return Unreached(); }
  Status Kill(pid_t, int) override { return Unreached(); }
  Result<ProcessSample> Sample(pid_t) override { return Unreached(); }
  Result<RunResult> Run(const ExecRequest&, milliseconds) override { return Unreached(); }
  Result<std::vector<ProcessCpu>> Processes(const std::string&) override { return Unreached(); }
  Result<HotpatchResult> Hotpatch(const std::string&, std::vector<std::string>,
                                  milliseconds) override {
    return Unreached();
  }
  Result<std::string> KernelLogSince() override { return std::string(); }
  std::vector<Crash> MachineCrashes() override { return crashes; }
  std::string ScratchDir() const override { return "/tmp/cell"; }
  metrics::CpuClock Clock() const override { return metrics::CpuClock::kGuestCpuTime; }
  Status Shutdown() override { return {}; }

 private:
  // The sequence must stop at the failed copy: any step after it fails the test.
  std::unexpected<Error> Unreached() {
    ADD_FAILURE() << "the sequence went on past a failed copy";
    return std::unexpected(Error(ErrorCode::kInternal, "not reached"));
  }
};

// The lab's side of a cell: a built target, a package and a public key, as
// real files the sequence reads before it copies them into the machine.
struct Plan {
  Plan() {
    char tmpl[] = "/tmp/patchlab-cell-test-XXXXXX";
    dir = ::mkdtemp(tmpl);
    for (const char* name : {"server", "fix-1.hpk", "key.pub"}) {
      EXPECT_OK(WriteFileAtomic(dir / name, std::string("bytes of ") + name));
    }
    scenario.name = "disk-full";
    scenario.target.program = "server";
    scenario.timeout = milliseconds(60000);
    spec.id = "fix-1";
    built.scenario = &scenario;
    built.program = dir / "server";
    scenario.target.sources = {"t.c"};  // a target the lab builds: the labstats sequence
    patch.spec = &spec;
    patch.package = dir / "fix-1.hpk";
    plan.scenario = &scenario;
    plan.built = &built;
    plan.patch = &patch;
    plan.workload = &workload;
    plan.public_key = dir / "key.pub";
  }
  ~Plan() {
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

TEST(CellSequence, AFailedCopyIntoTheMachineIsAnInfraError) {
  const char* steps[] = {"pushing the target", "pushing the package",
                         "pushing the lab's public key"};
  for (int failing = 1; failing <= 3; ++failing) {
    SCOPED_TRACE(steps[failing - 1]);
    Plan p;
    FakeGuest guest;
    guest.fail_put = failing;
    CellObservations obs = RunCellSequence(guest, p.plan, nullptr);
    ASSERT_TRUE(obs.infra_error.has_value());
    EXPECT_THAT(*obs.infra_error, HasSubstr(steps[failing - 1])) << *obs.infra_error;
    EXPECT_THAT(*obs.infra_error, HasSubstr("No space left on device")) << *obs.infra_error;
    EXPECT_TRUE(obs.problems.empty());
    metrics::CellResult cell;
    ComputeFigures(obs, CellRules{}, cell);
    EXPECT_EQ(cell.verdict, metrics::Verdict::kInfraError);
    EXPECT_EQ(cell.apply, metrics::ApplyResult::kNotRun);
  }
}

// The lab reads what it copies in: a build output gone missing is the lab's
// failure too, and nothing reaches the machine.
TEST(CellSequence, AHostFileTheLabCannotReadIsAnInfraError) {
  Plan p;
  std::filesystem::remove(p.dir / "server");
  FakeGuest guest;
  CellObservations obs = RunCellSequence(guest, p.plan, nullptr);
  ASSERT_TRUE(obs.infra_error.has_value());
  EXPECT_THAT(*obs.infra_error, HasSubstr("pushing the target"));
  EXPECT_THAT(*obs.infra_error, HasSubstr("server"));
  EXPECT_TRUE(guest.put.empty());
}

TEST(CellSequence, ACopyFailingBecauseTheMachineCrashedIsTheCrash) {
  Plan p;
  FakeGuest guest;
  guest.fail_put = 2;
  guest.crashes.push_back({metrics::CrashKind::kVmPanic, "Kernel panic - not syncing"});
  CellObservations obs = RunCellSequence(guest, p.plan, nullptr);
  EXPECT_FALSE(obs.infra_error.has_value()) << *obs.infra_error;
  ASSERT_EQ(obs.crashes.size(), 1u);
  EXPECT_EQ(obs.crashes[0].kind, metrics::CrashKind::kVmPanic);
}

}  // namespace
}  // namespace patchlab::harness::internal
