// The real `patchlab run --backend host` against the compatibility database:
// a run SIGKILLed after its first recorded cell, then finished with --resume;
// and rollout rings (--rings) stopping a patch the pilot ring rejects.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "base/file_util.h"
#include "base/subprocess.h"
#include "tests/metrics/lab_scenario.h"
#include "tests/metrics/test_util.h"
#include "tests/support/status_matchers.h"

using ::testing::HasSubstr;
using ::testing::Not;

namespace patchlab::metrics {
namespace {

namespace fs = std::filesystem;
using testing::PricerPatch;
using testing::ScratchDir;
using testing::WritePricerScenario;

class LabRun : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "patching host processes needs root (ptrace of a sibling)";
  }

  std::vector<std::string> RunArgv(const fs::path& scenario,
                                   const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {PATCHLAB_BIN,
                                     "run",
                                     scenario.string(),
                                     "--backend",
                                     "host",
                                     "--json",
                                     "--db",
                                     db_.string(),
                                     "--out",
                                     (dir_ / "out").string(),
                                     "--key-dir",
                                     (dir_ / "keys").string()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  }

  struct Outcome {
    int exit_code = -1;
    nlohmann::json json;
    std::string stderr_data;
  };
  Outcome Run(const fs::path& scenario, const std::vector<std::string>& extra = {}) {
    SubprocessOptions o;
    o.argv = RunArgv(scenario, extra);
    o.timeout = std::chrono::minutes(5);
    auto r = RunSubprocess(std::move(o));
    EXPECT_OK(r);
    Outcome out;
    if (!r) return out;
    out.exit_code = r->status.exited ? r->status.code : -1;
    out.stderr_data = r->stderr_data;
    out.json = nlohmann::json::parse(r->stdout_data, nullptr, false);
    return out;
  }

  ScratchDir dir_;
  fs::path db_ = dir_ / "lab.db";
};

TEST_F(LabRun, KilledAfterItsFirstCellThenResumedLosesNothing) {
  fs::path scenario =
      WritePricerScenario(dir_ / "scenarios", PricerPatch::kGood, {"w1", "w2", "w3", "w4"});
  SubprocessOptions o;
  o.argv = RunArgv(scenario, {});
  o.stdout_mode = OutputMode::kFile;
  o.stdout_path = (dir_ / "first.out").string();
  o.stderr_to_stdout = true;
  auto lab = Subprocess::Start(std::move(o));
  ASSERT_OK(lab);
  const pid_t lab_pid = lab->pid();

  // Waits for the first recorded cell, watching the database as a reader would.
  int64_t run = 0;
  size_t recorded = 0;
  for (int polls = 0; recorded == 0; ++polls) {
    ASSERT_LT(polls, 6000) << "no cell recorded; lab output:\n"
                           << ReadFile(dir_ / "first.out").value_or("");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (!fs::exists(db_)) continue;
    auto db = CompatDb::OpenExisting(db_);
    ASSERT_OK(db);
    auto latest = db->LatestRun();
    ASSERT_OK(latest);
    if (!*latest) continue;
    run = (*latest)->id;
    auto cells = db->CellsOfRun(run);
    ASSERT_OK(cells);
    recorded = cells->size();
  }
  ASSERT_TRUE(lab->Signal(SIGKILL).has_value());
  auto killed = lab->Wait();
  ASSERT_TRUE(killed.has_value());
  ASSERT_FALSE(killed->status.exited) << "the lab ended before it was killed:\n"
                                      << ReadFile(dir_ / "first.out").value_or("");
  EXPECT_EQ(killed->status.signal, SIGKILL);

  // The run is seen as incomplete, with every recorded cell intact.
  std::vector<CellResult> before;
  {
    auto db = CompatDb::OpenExisting(db_);
    ASSERT_OK(db);
    auto info = db->GetRun(run);
    ASSERT_OK(info);
    EXPECT_EQ(info->status, RunStatus::kIncomplete) << RunStatusName(info->status);
    EXPECT_THAT(info->note, HasSubstr(std::to_string(lab_pid))) << info->note;
    auto cells = db->CellsOfRun(run);
    ASSERT_TRUE(cells.has_value());
    before = *cells;
    ASSERT_GE(before.size(), 1u);
    ASSERT_LT(before.size(), 4u) << "every cell was recorded before the kill landed";
    auto missing = db->MissingCells(run);
    ASSERT_TRUE(missing.has_value());
    EXPECT_EQ(missing->size(), 4u - before.size());
    EXPECT_EQ(db->IntegrityCheck().value_or("?"), "ok");
  }
  // As `patchlab runs` shows it.
  auto runs = RunSubprocess({.argv = {PATCHLAB_BIN, "runs", "--json", "--db", db_.string()}});
  ASSERT_TRUE(runs.has_value());
  auto runs_json = nlohmann::json::parse(runs->stdout_data, nullptr, false);
  ASSERT_TRUE(runs_json.is_array() && runs_json.size() == 1)
      << runs->stdout_data << runs->stderr_data;
  EXPECT_EQ(runs_json[0]["status"], "incomplete") << runs_json.dump(2);
  EXPECT_EQ(runs_json[0]["cells_missing"], static_cast<int64_t>(4 - before.size()));

  Outcome resumed = Run(scenario, {"--resume", std::to_string(run)});
  ASSERT_TRUE(resumed.json.is_object()) << resumed.stderr_data;
  EXPECT_EQ(resumed.exit_code, 0) << resumed.json.dump(2) << resumed.stderr_data;
  EXPECT_EQ(resumed.json["run_id"], run);
  EXPECT_EQ(resumed.json["cells"].size(), 4u - before.size()) << resumed.json.dump(2);

  auto db = CompatDb::OpenExisting(db_);
  ASSERT_OK(db);
  auto info = db->GetRun(run);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->status, RunStatus::kComplete);
  auto after = db->CellsOfRun(run);
  ASSERT_TRUE(after.has_value());
  ASSERT_EQ(after->size(), 4u);
  for (const CellResult& c : *after) {
    EXPECT_EQ(c.verdict, Verdict::kPass)
        << c.key.ToString() << ": " << fmt::format("{}", fmt::join(c.reasons, "; "));
    EXPECT_EQ(c.met_expectation, std::optional<bool>(true)) << c.key.ToString();
  }
  // The cells recorded before the kill are the same rows, not re-measured.
  for (const CellResult& old : before) {
    auto same = std::find_if(after->begin(), after->end(),
                             [&](const CellResult& c) { return c.key == old.key; });
    ASSERT_NE(same, after->end()) << old.key.ToString();
    EXPECT_EQ(same->recorded_at, old.recorded_at) << old.key.ToString();
    EXPECT_EQ(same->duration_ms, old.duration_ms) << old.key.ToString();
    EXPECT_EQ(same->pause_us, old.pause_us) << old.key.ToString();
  }
  auto missing = db->MissingCells(run);
  ASSERT_TRUE(missing.has_value());
  EXPECT_TRUE(missing->empty());
  EXPECT_EQ(db->IntegrityCheck().value_or("?"), "ok");
}

// Rings on the host backend: it has one image ("host"), so the pilot ring is
// that image and the broad ring has no cell of its own; what shows is the gate
// judging the pilot's real cells and stopping (or not) the patch there.
class Rings : public LabRun {
 protected:
  fs::path Policy() {
    // Lenient where a shared host is noisy; strict on crashes and applying.
    fs::path policy = dir_ / "policy.yaml";
    EXPECT_TRUE(WriteFileAtomic(policy,
                                "max_cpu_overhead_pct: 1000\n"
                                "require_semantic_pass: false\n"
                                "rings:\n"
                                "  - name: pilot\n"
                                "    images: [host]\n"
                                "  - name: broad\n"
                                "    images: all\n")
                    .has_value());
    return policy;
  }
};

TEST_F(Rings, APilotThatFailsTheGateStopsThePatch) {
  fs::path scenario = WritePricerScenario(dir_ / "scenarios", PricerPatch::kCrash);
  Outcome out = Run(scenario, {"--rings", "--policy", Policy().string()});
  ASSERT_TRUE(out.json.is_object()) << out.stderr_data;
  EXPECT_EQ(out.exit_code, 1) << out.json.dump(2);  // the scenario expected a pass
  ASSERT_EQ(out.json["cells"].size(), 1u) << out.json.dump(2);
  EXPECT_EQ(out.json["cells"][0]["verdict"], "fail");
  ASSERT_EQ(out.json["ring_stops"].size(), 1u) << out.json.dump(2);
  const std::string stop = out.json["ring_stops"][0];
  EXPECT_THAT(stop, HasSubstr("pricer-table: stopped after ring pilot")) << stop;
  EXPECT_THAT(stop, HasSubstr("crash")) << stop;
  EXPECT_THAT(out.stderr_data, HasSubstr("stopped after ring pilot")) << out.stderr_data;
  // The gate by hand agrees, on the pilot ring.
  auto gate =
      RunSubprocess({.argv = {PATCHLAB_BIN, "gate", "pricer-table", "--ring", "pilot", "--policy",
                              (dir_ / "policy.yaml").string(), "--db", db_.string()}});
  ASSERT_TRUE(gate.has_value());
  EXPECT_EQ(gate->status.code, 1) << gate->stdout_data << gate->stderr_data;
}

TEST_F(Rings, APilotThatPassesGoesOn) {
  fs::path scenario = WritePricerScenario(dir_ / "scenarios", PricerPatch::kGood);
  Outcome out = Run(scenario, {"--rings", "--policy", Policy().string()});
  ASSERT_TRUE(out.json.is_object()) << out.stderr_data;
  EXPECT_EQ(out.exit_code, 0) << out.json.dump(2) << out.stderr_data;
  ASSERT_EQ(out.json["cells"].size(), 1u) << out.json.dump(2);
  EXPECT_EQ(out.json["cells"][0]["verdict"], "pass") << out.json.dump(2);
  EXPECT_TRUE(out.json["ring_stops"].empty()) << out.json.dump(2);
  EXPECT_THAT(out.stderr_data, Not(HasSubstr("stopped after ring"))) << out.stderr_data;
  auto db = CompatDb::OpenExisting(db_);
  ASSERT_TRUE(db.has_value());
  auto run = db->GetRun(out.json["run_id"].get<int64_t>());
  ASSERT_TRUE(run.has_value());
  EXPECT_EQ(run->status, RunStatus::kComplete);
}

}  // namespace
}  // namespace patchlab::metrics
