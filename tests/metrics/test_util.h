// Helpers for the metrics tests: a scratch folder and cells with plausible figures.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "metrics/cell_result.h"
#include "metrics/compat_db.h"
#include "tests/support/status_matchers.h"

namespace patchlab::metrics::testing {

// A fresh folder under the test's temp dir, removed at the end of the test.
class ScratchDir {
 public:
  ScratchDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ =
        std::filesystem::temp_directory_path() /
        fmt::format("patchlab-metrics-{}-{}-{}", info->test_suite_name(), info->name(), getpid());
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// A passing cell: applied, no crash, small figures, semantic pass.
inline CellResult GoodCell(int64_t run, const std::string& image, const std::string& cpu = "qemu64",
                           const std::string& workload = "default",
                           const std::string& patch = "fix-1", const std::string& scenario = "kv") {
  CellResult c;
  c.run_id = run;
  c.key = CellKey{scenario, patch, image, cpu, workload};
  c.patch_seq = 1;
  c.host = "testhost";
  c.verdict = Verdict::kPass;
  c.met_expectation = true;
  c.apply = ApplyResult::kApplied;
  c.pause_us = {900, 1200, 1100};
  c.cpu_overhead_pct = Estimate{0.4, -0.3, 1.1, 12};
  c.mem_overhead_kib = 2048;
  c.semantic = SemanticVerdict::kPass;
  c.duration_ms = 4200;
  c.artefacts = "out/run/" + image;
  c.reasons = {"applied; workload kept running"};
  return c;
}

// Opens `path`, records the patch and the images the helpers use.
inline CompatDb OpenSeeded(const std::filesystem::path& path) {
  auto db = CompatDb::Open(path);
  EXPECT_OK(db);
  for (const char* patch : {"fix-1", "fix-2"}) {
    auto s = db->RecordPatch(PatchInfo{patch, 1, "abcd", "ff00", "lab-key"});
    EXPECT_OK(s);
  }
  for (const char* image : {"deb12", "deb12-old", "alpine"}) {
    auto s = db->RecordImage(ImageInfo{image, "6.1.0", {"libc6=2.36"}, "hash"});
    EXPECT_OK(s);
  }
  return std::move(*db);
}

}  // namespace patchlab::metrics::testing

namespace patchlab::metrics::testing {

// `media`: a read-only bind mount of the folder `source`, unmounted when done.
// Root ignores file modes, so only a read-only mount makes a file read-only.
class ReadOnlyMedia {
 public:
  ReadOnlyMedia(const std::filesystem::path& source, const std::filesystem::path& media)
      : media_(media) {
    std::filesystem::create_directories(media);
    mounted_ =
        ::system(("mount --bind " + source.string() + " " + media.string() +
                  " 2>/dev/null && mount -o remount,ro,bind " + media.string() + " 2>/dev/null")
                     .c_str()) == 0;
    if (!mounted_) Unmount(" 2>/dev/null");
  }
  ~ReadOnlyMedia() {
    if (mounted_) Unmount("");
  }
  bool mounted() const { return mounted_; }

 private:
  void Unmount(const std::string& redirect) {
    [[maybe_unused]] int rc = ::system(("umount " + media_.string() + redirect).c_str());
  }

  std::filesystem::path media_;
  bool mounted_ = false;
};

#define REQUIRE_MOUNT(m)                                                         \
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for a read-only bind mount"; \
  if (!(m).mounted()) GTEST_SKIP() << "cannot make a read-only bind mount here"

// A run with every kind of cell a report must show: passes, a crash, a refusal,
// an infra error, a semantic divergence with findings, and names that are
// hostile to every output format. Returns the run id.
inline int64_t RecordShowcaseRun(CompatDb& db) {
  const std::string hostile = "kv <script>alert(\"x\")</script> & 'q' | `b` \\ end";
  auto patch = db.RecordPatch(PatchInfo{"fix-1", 1, "abcd", "ff00", "lab-key"});
  EXPECT_TRUE(patch.has_value());
  EXPECT_TRUE(db.RecordImage(ImageInfo{"deb12",
                                       "6.1.0-13-cloud-amd64",
                                       {"busybox-static=1:1.35.0-4", "libc6=2.36-9"},
                                       "c0ffee"})
                  .has_value());
  EXPECT_TRUE(
      db.RecordImage(ImageInfo{"deb12-old", "6.1.0-9-cloud-amd64", {}, "beef"}).has_value());
  auto run = db.BeginRun(RunInfo{.label = "nightly", .args = "scenarios"});
  EXPECT_TRUE(run.has_value());
  std::vector<CellKey> plan;
  int i = 0;
  for (const char* image : {"deb12", "deb12-old"}) {
    for (const char* cpu : {"qemu64", "Skylake-Client", "EPYC"}) {
      CellResult c = GoodCell(*run, image, cpu, "default", "fix-1", hostile);
      c.pause_us = {800.0 + 50 * i, 950.0 + 70 * i, 1300.0 + 20 * i, 700.0 + 10 * i};
      c.cpu_overhead_pct = Estimate{0.2 + 0.3 * i, -0.4 + 0.3 * i, 0.9 + 0.35 * i, 16};
      c.mem_overhead_kib = 1024.0 * (1 + i);
      plan.push_back(c.key);
      ++i;
      EXPECT_TRUE(db.RecordCell(c).has_value());
    }
  }
  CellResult crash = GoodCell(*run, "deb12", "qemu64", "burst", "fix-1", hostile);
  crash.verdict = Verdict::kFail;
  crash.met_expectation = false;
  crash.crashes = {{CrashKind::kSegfault, 2}, {CrashKind::kWorkloadSignal, 1}};
  crash.reasons = {"workload died by SIGSEGV <after> 3 s"};
  crash.artefacts = "out/run 1/deb12 & burst";
  EXPECT_TRUE(db.RecordCell(crash).has_value());
  CellResult refused = GoodCell(*run, "deb12-old", "qemu64", "burst", "fix-1", hostile);
  refused.verdict = Verdict::kNotHotpatchable;
  refused.met_expectation.reset();  // no expectation stated: the policy decides
  refused.apply = ApplyResult::kRefused;
  refused.apply_reason = "jump into the first 5 bytes of parse_kv at 0x401a2b";
  refused.cpu_overhead_pct.reset();
  refused.mem_overhead_kib.reset();
  refused.pause_us.clear();
  EXPECT_TRUE(db.RecordCell(refused).has_value());
  CellResult infra = GoodCell(*run, "deb12-old", "EPYC", "burst", "fix-1", hostile);
  infra.verdict = Verdict::kInfraError;
  infra.apply = ApplyResult::kNotRun;
  infra.reasons = {"VM did not boot within 60 s"};
  EXPECT_TRUE(db.RecordCell(infra).has_value());
  CellResult diverged = GoodCell(*run, "deb12", "EPYC", "burst", "fix-1", hostile);
  diverged.semantic = SemanticVerdict::kFail;
  diverged.met_expectation.reset();
  diverged.cpu_overhead_pct = Estimate{3.4, 2.9, 4.1, 16};
  diverged.mem_overhead_kib = 17 * 1024;
  diverged.pause_us = {600000};
  EXPECT_TRUE(db.RecordCell(diverged).has_value());
  EXPECT_TRUE(db.PlanCells(*run, plan).has_value());
  EXPECT_TRUE(db.PlanCells(*run, {CellKey{hostile, "fix-1", "deb12", "Skylake-Client", "burst"}})
                  .has_value());
  EXPECT_TRUE(db.RecordFindings(
                    *run, {SemanticFinding{*run, hostile, "fix-1", "parse_kv", "return-value",
                                           "buf=\"a=<1>\" len=5", "0", "-22", false, "errno & 'x'"},
                           SemanticFinding{*run, hostile, "fix-1", "parse_kv", "return-value",
                                           "buf=\"\" len=0", "17", "-1", true, "the fix"}})
                  .has_value());
  EXPECT_TRUE(db.FinishRun(*run, RunStatus::kComplete).has_value());
  return *run;
}

}  // namespace patchlab::metrics::testing
