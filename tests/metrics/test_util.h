// Helpers for the metrics tests: a scratch folder and cells with plausible figures.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "metrics/cell_result.h"
#include "metrics/compat_db.h"

namespace patchlab::metrics::testing {

// A fresh folder under the test's temp dir, removed at the end of the test.
class ScratchDir {
 public:
  ScratchDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::temp_directory_path() /
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
                           const std::string& workload = "default", const std::string& patch = "fix-1",
                           const std::string& scenario = "kv") {
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
  EXPECT_TRUE(db.has_value()) << db.error().ToString();
  for (const char* patch : {"fix-1", "fix-2"}) {
    auto s = db->RecordPatch(PatchInfo{patch, 1, "abcd", "ff00", "lab-key"});
    EXPECT_TRUE(s.has_value()) << s.error().ToString();
  }
  for (const char* image : {"deb12", "deb12-old", "alpine"}) {
    auto s = db->RecordImage(ImageInfo{image, "6.1.0", {"libc6=2.36"}, "hash"});
    EXPECT_TRUE(s.has_value()) << s.error().ToString();
  }
  return std::move(*db);
}

}  // namespace patchlab::metrics::testing
