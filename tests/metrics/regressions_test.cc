// Nightly regression detection on a prepared history of two runs.
#include "metrics/regressions.h"

#include <gtest/gtest.h>

#include "tests/metrics/test_util.h"
#include "tests/support/status_matchers.h"

using ::testing::HasSubstr;

namespace patchlab::metrics {
namespace {

using testing::GoodCell;
using testing::OpenSeeded;
using testing::ScratchDir;

TEST(Regressions, EachKindIsFoundAndNoiseIsNot) {
  ScratchDir dir;
  CompatDb db = OpenSeeded(dir / "history.db");
  auto before = *db.BeginRun(RunInfo{.label = "nightly"});
  auto after = *db.BeginRun(RunInfo{.label = "nightly"});
  auto both = [&](const std::string& cpu, auto change) {
    CellResult old_cell = GoodCell(before, "deb12", cpu);
    CellResult new_cell = GoodCell(after, "deb12", cpu);
    change(new_cell);
    ASSERT_TRUE(db.RecordCell(old_cell).has_value());
    ASSERT_TRUE(db.RecordCell(new_cell).has_value());
  };
  both("unchanged", [](CellResult&) {});
  both("noisy", [](CellResult& c) {
    c.cpu_overhead_pct = Estimate{0.9, 0.2, 1.6, 12};
  });  // overlaps 1.1
  both("crash", [](CellResult& c) { c.crashes[CrashKind::kOops] = 1; });
  both("refused", [](CellResult& c) {
    c.apply = ApplyResult::kRefused;
    c.apply_reason = "function too short";
  });
  both("slower", [](CellResult& c) { c.cpu_overhead_pct = Estimate{3.0, 2.2, 3.9, 12}; });
  both("diverged", [](CellResult& c) { c.semantic = SemanticVerdict::kFail; });
  both("worse", [](CellResult& c) {
    c.verdict = Verdict::kFail;
    c.reasons = {"output differs"};
  });
  both("infra", [](CellResult& c) { c.verdict = Verdict::kInfraError; });
  ASSERT_TRUE(db.RecordCell(GoodCell(after, "alpine", "brand-new")).has_value());
  ASSERT_TRUE(db.RecordFindings(after, {SemanticFinding{after, "kv", "fix-2", "f", "memory", "x=1",
                                                        "a", "b", false, ""},
                                        SemanticFinding{after, "kv", "fix-2", "f", "return-value",
                                                        "x=2", "1", "2", true, "the fix"}})
                  .has_value());

  auto report = FindRegressions(db, before, after);
  ASSERT_OK(report);
  std::map<std::string, std::string> kind_by_cpu;
  for (const Regression& r : report->regressions) kind_by_cpu[r.cell.cpu] += r.kind;
  EXPECT_EQ(kind_by_cpu["crash"], "new-crash");
  EXPECT_EQ(kind_by_cpu["refused"], "stopped-applying");
  EXPECT_EQ(kind_by_cpu["slower"], "overhead-grew");
  EXPECT_EQ(kind_by_cpu["diverged"], "new-semantic-divergence");
  EXPECT_EQ(kind_by_cpu["worse"], "verdict-worse");
  EXPECT_EQ(kind_by_cpu["*"], "new-semantic-divergence");  // the undeclared finding of fix-2
  EXPECT_FALSE(kind_by_cpu.contains("unchanged"));
  EXPECT_FALSE(kind_by_cpu.contains("noisy")) << report->Explain();
  EXPECT_FALSE(kind_by_cpu.contains("infra"));
  EXPECT_EQ(report->regressions.size(), 6u) << report->Explain();
  std::string text = report->Explain();
  EXPECT_THAT(text, HasSubstr("oops 0 -> 1")) << text;
  EXPECT_THAT(text, HasSubstr("not comparable (infra error")) << text;
  EXPECT_THAT(text, HasSubstr("new cell kv/fix-1 on alpine x brand-new")) << text;

  // The same run against itself has nothing new.
  auto same = FindRegressions(db, after, after);
  ASSERT_TRUE(same.has_value());
  EXPECT_TRUE(same->regressions.empty()) << same->Explain();
  EXPECT_FALSE(FindRegressions(db, before, 999).has_value());
}

}  // namespace
}  // namespace patchlab::metrics
