// The release gate and its policy file: each rule rejects on its own, missing
// cells and figures give "not enough data" naming them, rings restrict the
// images judged, and a bad policy file is refused naming file:line:col.
#include "metrics/gate.h"

#include <gtest/gtest.h>

#include "base/file_util.h"
#include "metrics/policy.h"
#include "tests/metrics/test_util.h"
#include "tests/support/status_matchers.h"

namespace patchlab::metrics {
namespace {

using testing::GoodCell;
using ::testing::HasSubstr;
using testing::OpenSeeded;
using testing::ScratchDir;

class Gate : public ::testing::Test {
 protected:
  void SetUp() override {
    db_.emplace(OpenSeeded(dir_ / "gate.db"));
    run_ = *db_->BeginRun({});
  }
  void Record(const CellResult& c) {
    auto s = db_->RecordCell(c);
    ASSERT_OK(s);
  }
  GateDecision Decide(const Policy& policy = DefaultPolicy()) {
    auto d = EvaluateGate(*db_, "fix-1", policy);
    EXPECT_OK(d);
    return d.value_or(GateDecision{});
  }
  // Records one passing cell on deb12 after `change` was applied to it, and
  // expects a rejection by exactly `rule`.
  template <typename F>
  void ExpectOnlyRule(const std::string& rule, F change, const Policy& policy = DefaultPolicy()) {
    CellResult c = GoodCell(run_, "deb12");
    change(c);
    Record(c);
    GateDecision d = Decide(policy);
    EXPECT_EQ(d.outcome, GateOutcome::kReject) << d.Explain();
    ASSERT_EQ(d.failures.size(), 1u) << d.Explain();
    EXPECT_EQ(d.failures[0].rule, rule);
    EXPECT_EQ(d.failures[0].cell, c.key);
    EXPECT_THAT(d.Explain(), HasSubstr(c.key.ToString())) << d.Explain();
  }

  ScratchDir dir_;
  std::optional<CompatDb> db_;
  int64_t run_ = 0;
};

TEST_F(Gate, ShipsWhenEveryCellMeetsEveryRule) {
  Record(GoodCell(run_, "deb12"));
  Record(GoodCell(run_, "alpine"));
  GateDecision d = Decide();
  EXPECT_EQ(d.outcome, GateOutcome::kShip) << d.Explain();
  EXPECT_EQ(d.ExitCode(), 0);
  EXPECT_EQ(d.cells.size(), 2u);
}

TEST_F(Gate, EachRuleRejectsOnItsOwn) {
  ExpectOnlyRule("max_crashes", [](CellResult& c) { c.crashes[CrashKind::kSegfault] = 1; });
}
TEST_F(Gate, CpuOverheadWhoseIntervalStartsAtTheBoundRejects) {
  ExpectOnlyRule("max_cpu_overhead_pct", [](CellResult& c) {
    c.cpu_overhead_pct = Estimate{2.2, 2.0, 2.5, 9};
  });
}
TEST_F(Gate, CpuOverheadStraddlingTheBoundIsNoisyNeitherShipNorReject) {
  CellResult c = GoodCell(run_, "deb12");
  c.cpu_overhead_pct = Estimate{2.0, 1.5, 2.5, 12, 0.995};
  Record(c);
  GateDecision d = Decide();
  EXPECT_EQ(d.outcome, GateOutcome::kNotEnoughData) << d.Explain();
  EXPECT_TRUE(d.failures.empty()) << d.Explain();
  ASSERT_EQ(d.missing.size(), 1u) << d.Explain();
  EXPECT_TRUE(d.missing[0].noisy);
  EXPECT_THAT(d.Explain(), HasSubstr("noisy: " + c.key.ToString()));
  EXPECT_THAT(d.Explain(), HasSubstr("straddles the 2.00% limit"));
}
TEST_F(Gate, ScenarioLimitTightensThePolicyNeverLoosensIt) {
  CellResult tight = GoodCell(run_, "deb12");
  tight.cpu_overhead_pct = Estimate{1.5, 1.2, 1.8, 12, 0.995};
  tight.cpu_scenario_limit_pct = 1.0;  // the scenario holds itself to 1%
  Record(tight);
  GateDecision d = Decide();
  EXPECT_EQ(d.outcome, GateOutcome::kReject) << d.Explain();

  CellResult loose = GoodCell(run_, "deb12");
  loose.cpu_overhead_pct = Estimate{5.0, 4.0, 6.0, 12, 0.995};
  loose.cpu_scenario_limit_pct = 10.0;  // a scenario cannot loosen the policy's 2%
  Record(loose);
  d = Decide();
  EXPECT_EQ(d.outcome, GateOutcome::kReject) << d.Explain();
  EXPECT_THAT(d.Explain(), HasSubstr("below 2.00%"));
}
TEST_F(Gate, CpuUpperBoundIsJudgedWhenThePolicySaysSo) {
  Policy strict = DefaultPolicy();
  strict.cpu_overhead_judged_on = OverheadJudgedOn::kUpperBound;
  ExpectOnlyRule(
      "max_cpu_overhead_pct",
      [](CellResult& c) {
        c.cpu_overhead_pct = Estimate{1.0, 0.1, 2.4, 9};
      },
      strict);
}
TEST_F(Gate, MemoryOverheadRejects) {
  ExpectOnlyRule("max_memory_overhead_mib", [](CellResult& c) { c.mem_overhead_kib = 16 * 1024; });
}
TEST_F(Gate, LongestPauseRejects) {
  ExpectOnlyRule("max_pause_ms", [](CellResult& c) { c.pause_us = {1000, 600000, 1000}; });
}
TEST_F(Gate, SemanticDivergenceRejects) {
  ExpectOnlyRule("require_semantic_pass",
                 [](CellResult& c) { c.semantic = SemanticVerdict::kFail; });
}
TEST_F(Gate, AFailedVerdictRejects) {
  ExpectOnlyRule("require_pass_verdict", [](CellResult& c) {
    c.verdict = Verdict::kFail;
    c.reasons = {"workload output changed"};
  });
}

TEST_F(Gate, ARefusalRejectsWithItsReason) {
  CellResult c = GoodCell(run_, "deb12");
  c.verdict = Verdict::kNotHotpatchable;
  c.apply = ApplyResult::kRefused;
  c.apply_reason = "a branch targets the overwritten bytes of parse_kv";
  c.cpu_overhead_pct.reset();
  c.mem_overhead_kib.reset();
  c.pause_us.clear();
  Record(c);
  GateDecision d = Decide();
  EXPECT_EQ(d.outcome, GateOutcome::kReject);
  EXPECT_THAT(d.Explain(), HasSubstr("require_applied")) << d.Explain();
  EXPECT_THAT(d.Explain(), HasSubstr("a branch targets")) << d.Explain();
  // No figure can be asked of a patch that was never applied.
  EXPECT_TRUE(d.missing.empty()) << d.Explain();
}

TEST_F(Gate, EveryBrokenRuleIsListedAndMissingCellsToo) {
  ASSERT_TRUE(db_->PlanCells(run_, {CellKey{"kv", "fix-1", "deb12", "qemu64", "default"},
                                    CellKey{"kv", "fix-1", "alpine", "EPYC", "burst"}})
                  .has_value());
  CellResult c = GoodCell(run_, "deb12");
  c.crashes[CrashKind::kOops] = 1;
  c.mem_overhead_kib = 20 * 1024;
  Record(c);
  GateDecision d = Decide();
  EXPECT_EQ(d.outcome, GateOutcome::kReject) << d.Explain();
  EXPECT_EQ(d.failures.size(), 2u) << d.Explain();
  ASSERT_EQ(d.missing.size(), 1u) << d.Explain();
  EXPECT_THAT(d.missing[0].what, HasSubstr("alpine x EPYC x burst")) << d.Explain();
}

TEST_F(Gate, MissingCellsAndFiguresAreNotEnoughData) {
  ASSERT_TRUE(db_->PlanCells(run_, {CellKey{"kv", "fix-1", "deb12", "qemu64", "default"},
                                    CellKey{"kv", "fix-1", "alpine", "qemu64", "default"}})
                  .has_value());
  CellResult c = GoodCell(run_, "deb12");
  c.mem_overhead_kib.reset();
  Record(c);
  GateDecision d = Decide();
  EXPECT_EQ(d.outcome, GateOutcome::kNotEnoughData) << d.Explain();
  EXPECT_EQ(d.ExitCode(), 3);
  std::string text = d.Explain();
  EXPECT_THAT(text, HasSubstr("no result for kv/fix-1 on alpine x qemu64 x default")) << text;
  EXPECT_THAT(text, HasSubstr("no memory overhead figure")) << text;
}

TEST_F(Gate, InfraErrorsAndMissingSemanticChecksAreNotEnoughData) {
  CellResult infra = GoodCell(run_, "deb12");
  infra.verdict = Verdict::kInfraError;
  infra.apply = ApplyResult::kNotRun;
  infra.reasons = {"VM did not boot"};
  Record(infra);
  CellResult no_semantic = GoodCell(run_, "alpine");
  no_semantic.semantic = SemanticVerdict::kNotRun;
  Record(no_semantic);
  GateDecision d = Decide();
  EXPECT_EQ(d.outcome, GateOutcome::kNotEnoughData) << d.Explain();
  EXPECT_THAT(d.Explain(), HasSubstr("VM did not boot")) << d.Explain();
  EXPECT_THAT(d.Explain(), HasSubstr("no semantic check")) << d.Explain();
}

TEST_F(Gate, UnknownPatchIsNotEnoughData) {
  auto d = EvaluateGate(*db_, "never-seen", DefaultPolicy());
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->outcome, GateOutcome::kNotEnoughData);
  EXPECT_THAT(d->Explain(), HasSubstr("no results recorded for patch never-seen"));
}

TEST_F(Gate, NewestRealMeasurementWins) {
  CellResult old = GoodCell(run_, "deb12");
  old.crashes[CrashKind::kPanic] = 1;
  Record(old);
  auto second = db_->BeginRun({});
  Record(GoodCell(*second, "deb12"));
  auto third = db_->BeginRun({});
  CellResult infra = GoodCell(*third, "deb12");
  infra.verdict = Verdict::kInfraError;
  Record(infra);  // says nothing about the patch: run 2's pass stands
  GateDecision d = Decide();
  EXPECT_EQ(d.outcome, GateOutcome::kShip) << d.Explain();
  EXPECT_EQ(d.cells.at(0).run_id, *second);
}

TEST_F(Gate, RingsRestrictTheImagesJudged) {
  auto policy = ParsePolicy(
      "rings:\n  - name: pilot\n    images: [deb12]\n  - name: broad\n    images: all\n",
      "rings.yaml");
  ASSERT_OK(policy);
  Record(GoodCell(run_, "deb12"));
  CellResult bad = GoodCell(run_, "alpine");
  bad.crashes[CrashKind::kGpf] = 3;
  Record(bad);

  auto pilot = EvaluateRing(*db_, "fix-1", "pilot", *policy);
  ASSERT_TRUE(pilot.has_value());
  EXPECT_EQ(pilot->outcome, GateOutcome::kShip) << pilot->Explain();
  auto broad = EvaluateRing(*db_, "fix-1", "broad", *policy);
  EXPECT_EQ(broad->outcome, GateOutcome::kReject) << broad->Explain();
  auto unknown = EvaluateRing(*db_, "fix-1", "canary", *policy);
  ASSERT_FALSE(unknown.has_value());
  EXPECT_THAT(unknown.error().message(), HasSubstr("pilot, broad")) << unknown.error().ToString();
}

TEST_F(Gate, ARingImageWithoutResultsIsNamed) {
  auto policy = ParsePolicy("rings:\n  - name: pilot\n    images: [deb12, deb12-old]\n", "p.yaml");
  ASSERT_OK(policy);
  Record(GoodCell(run_, "deb12"));
  GateDecision d = Decide(*policy);
  EXPECT_EQ(d.outcome, GateOutcome::kNotEnoughData) << d.Explain();
  EXPECT_THAT(d.Explain(), HasSubstr("ring 'pilot': no result on image deb12-old")) << d.Explain();
}

TEST(Policy, DefaultFileIsTheBuiltInDefault) {
  auto file = LoadPolicy(PATCHLAB_SOURCE_DIR "/metrics/policy-default.yaml");
  ASSERT_OK(file);
  const Policy& d = DefaultPolicy();
  EXPECT_EQ(file->max_crashes, 0);
  EXPECT_EQ(file->max_crashes, d.max_crashes);
  EXPECT_EQ(file->max_cpu_overhead_pct, 2.0);
  EXPECT_EQ(file->max_memory_overhead_mib, 15);
  EXPECT_EQ(file->max_pause_ms, d.max_pause_ms);
  EXPECT_TRUE(d.require_semantic_pass && d.require_applied && d.require_figures);
  ASSERT_EQ(d.rings.size(), 1u);
  EXPECT_TRUE(d.rings[0].all_images);
}

TEST(Policy, OverridesOnlyWhatItSets) {
  auto p =
      ParsePolicy("max_cpu_overhead_pct: 5\ncpu_overhead_judged_on: upper-bound\n", "mine.yaml");
  ASSERT_OK(p);
  EXPECT_EQ(p->max_cpu_overhead_pct, 5);
  EXPECT_EQ(p->cpu_overhead_judged_on, OverheadJudgedOn::kUpperBound);
  EXPECT_EQ(p->max_memory_overhead_mib, 15);
  EXPECT_EQ(p->source, "mine.yaml");
}

TEST(Policy, ErrorsNameFileLineAndColumn) {
  struct Case {
    const char* text;
    const char* expect;
  } cases[] = {
      {"max_crashes: 0\nmax_cpu_overhead: 2\n", "bad.yaml:2:1"},
      {"max_crashes: 0\nmax_crashes_typo: 1\n", "unknown key 'max_crashes_typo'"},
      {"max_crashes: lots\n", "bad.yaml:1:14"},
      {"max_pause_ms: -1\n", "must not be negative"},
      {"cpu_overhead_judged_on: mean\n", "bad.yaml:1:25"},
      {"rings:\n  - name: pilot\n    images: [a]\n  - name: pilot\n    images: all\n",
       "bad.yaml:4:11"},
      {"rings:\n  - name: pilot\n    images: []\n", "bad.yaml:3:13"},
      {"rings:\n  - name: pilot\n    hosts: [a]\n", "bad.yaml:3:5"},
      {"rings: pilot\n", "bad.yaml:1:8"},
      {"max_crashes: [0\n", "bad.yaml:2:1"},
  };
  for (const Case& c : cases) {
    auto p = ParsePolicy(c.text, "bad.yaml");
    ASSERT_FALSE(p.has_value()) << c.text;
    EXPECT_THAT(p.error().ToString(), HasSubstr(c.expect))
        << "policy:\n"
        << c.text << "error: " << p.error().ToString();
  }
  auto absent = LoadPolicy("/nonexistent/policy.yaml");
  ASSERT_FALSE(absent.has_value());
  EXPECT_THAT(absent.error().ToString(), HasSubstr("/nonexistent/policy.yaml"));
}

}  // namespace
}  // namespace patchlab::metrics
