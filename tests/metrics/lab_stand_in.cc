// A stand-in for `patchlab run` in the ci/nightly test: records one nightly run
// of four cells straight into the database, as the lab runner would, without VMs.
// PATCHLAB_STAND_IN_MODE: "good" (every cell passes), "crash" (one cell gains a
// segfault), "none" (records nothing, exits 3 like a lab whose VMs never booted).
// Usage: lab_stand_in [SCENARIOS...] --db FILE [--label L] [other run options]
#include <cstdio>
#include <cstdlib>
#include <string>

#include "metrics/compat_db.h"

int main(int argc, char** argv) {
  using namespace patchlab::metrics;
  std::string db_path = kDefaultDbFile;
  std::string label;
  for (int i = 1; i + 1 < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--db") db_path = argv[i + 1];
    if (arg == "--label") label = argv[i + 1];
  }
  const char* env = std::getenv("PATCHLAB_STAND_IN_MODE");
  std::string mode = env != nullptr ? env : "good";
  if (mode == "none") return 3;
  auto db = CompatDb::Open(db_path);
  if (!db) {
    std::fprintf(stderr, "%s\n", db.error().ToString().c_str());
    return 2;
  }
  if (!db->RecordPatch(PatchInfo{"kv-fix", 1, "beef", "cafe", "lab"}) ||
      !db->RecordImage(ImageInfo{"deb12", "6.1.0", {}, "h"})) {
    return 2;
  }
  auto run = db->BeginRun(RunInfo{.label = label, .args = "scenarios"});
  if (!run) return 2;
  int i = 0;
  for (const char* cpu : {"qemu64", "EPYC"}) {
    for (const char* workload : {"steady", "burst"}) {
      CellResult c;
      c.run_id = *run;
      c.key = CellKey{"kv-parse-fix", "kv-fix", "deb12", cpu, workload};
      c.verdict = Verdict::kPass;
      c.apply = ApplyResult::kApplied;
      c.pause_us = {1500, 1700};
      c.cpu_overhead_pct = Estimate{0.3, -0.2, 0.8, 10};
      c.mem_overhead_kib = 512;
      c.semantic = SemanticVerdict::kPass;
      if (mode == "crash" && i == 3) {
        c.verdict = Verdict::kFail;
        c.crashes[CrashKind::kSegfault] = 1;
        c.reasons = {"kvd died by SIGSEGV"};
      }
      if (!db->RecordCell(c)) return 2;
      ++i;
    }
  }
  if (!db->FinishRun(*run, RunStatus::kComplete)) return 2;
  return mode == "crash" ? 1 : 0;
}
