#include "metrics/internal/schema.h"

#include "base/log.h"
#include "metrics/compat_db.h"

namespace patchlab::metrics::internal {
namespace {

// Version 1: what the first lab runs recorded. Kept verbatim: a migration that
// has shipped is never edited, only followed by another.
constexpr const char* kV1 = R"sql(
CREATE TABLE runs(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  started_at INTEGER NOT NULL,
  finished_at INTEGER NOT NULL DEFAULT 0,
  host TEXT NOT NULL,
  version TEXT NOT NULL,
  git_revision TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('running', 'complete', 'incomplete', 'failed')));
CREATE TABLE patches(
  id TEXT PRIMARY KEY,
  seq INTEGER NOT NULL,
  target_build_id TEXT NOT NULL,
  package_hash TEXT NOT NULL,
  signer TEXT NOT NULL);
CREATE TABLE images(
  name TEXT PRIMARY KEY,
  kernel_version TEXT NOT NULL,
  packages TEXT NOT NULL,
  content_hash TEXT NOT NULL);
CREATE TABLE cells(
  id INTEGER PRIMARY KEY,
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  scenario TEXT NOT NULL,
  patch_id TEXT NOT NULL REFERENCES patches(id),
  patch_seq INTEGER NOT NULL,
  image TEXT NOT NULL REFERENCES images(name),
  cpu TEXT NOT NULL,
  workload TEXT NOT NULL,
  host TEXT NOT NULL,
  verdict TEXT NOT NULL CHECK (verdict IN ('pass', 'fail', 'not-hotpatchable', 'infra-error')),
  apply_result TEXT NOT NULL CHECK (apply_result IN ('applied', 'refused', 'rolled-back', 'not-run')),
  apply_reason TEXT NOT NULL,
  pause_us TEXT NOT NULL,
  pause_median_us REAL,
  cpu_overhead_pct REAL,
  cpu_ci_low REAL,
  cpu_ci_high REAL,
  cpu_samples INTEGER,
  mem_overhead_kib REAL,
  semantic TEXT NOT NULL,
  duration_ms INTEGER NOT NULL,
  artefacts TEXT NOT NULL,
  reasons TEXT NOT NULL,
  recorded_at INTEGER NOT NULL,
  UNIQUE (run_id, scenario, patch_id, image, cpu, workload));
CREATE INDEX cells_by_patch ON cells(patch_id, scenario, image, cpu, workload);
CREATE INDEX cells_by_image ON cells(image);
CREATE TABLE cell_crashes(
  cell_id INTEGER NOT NULL REFERENCES cells(id) ON DELETE CASCADE,
  kind TEXT NOT NULL,
  count INTEGER NOT NULL CHECK (count > 0),
  PRIMARY KEY (cell_id, kind));
CREATE TABLE findings(
  id INTEGER PRIMARY KEY,
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  scenario TEXT NOT NULL,
  patch_id TEXT NOT NULL REFERENCES patches(id),
  function TEXT NOT NULL,
  kind TEXT NOT NULL,
  input TEXT NOT NULL,
  old_result TEXT NOT NULL,
  new_result TEXT NOT NULL,
  expected INTEGER NOT NULL,
  detail TEXT NOT NULL);
CREATE INDEX findings_by_run ON findings(run_id, patch_id);
)sql";

// Version 2: resumable runs (plan, recording pid, note), run labels for the
// nightly comparison, and whether a cell met the scenario's expectation.
constexpr const char* kV2 = R"sql(
ALTER TABLE runs ADD COLUMN label TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN args TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN note TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN pid INTEGER NOT NULL DEFAULT 0;
CREATE INDEX runs_by_label ON runs(label, id);
ALTER TABLE cells ADD COLUMN met_expectation INTEGER;
CREATE TABLE planned_cells(
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  scenario TEXT NOT NULL,
  patch_id TEXT NOT NULL,
  image TEXT NOT NULL,
  cpu TEXT NOT NULL,
  workload TEXT NOT NULL,
  PRIMARY KEY (run_id, scenario, patch_id, image, cpu, workload));
CREATE INDEX planned_by_patch ON planned_cells(patch_id);
)sql";

// Version 3: who records a run, beyond its pid (a pid is recycled, and means
// nothing on another host or after a reboot): the boot id, the pid namespace
// and the process's start time in clock ticks since boot.
constexpr const char* kV3 = R"sql(
ALTER TABLE runs ADD COLUMN boot_id TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN pid_ns TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN pid_start INTEGER NOT NULL DEFAULT 0;
)sql";

// Version 4, the second round: CPU figures you can gate on, and real
// applications. How each CPU figure was measured (the clock), its interval's
// coverage, the run's judgement and the limit behind it (the scenario's own
// limit apart, so a gate under another policy can recompute it), every window
// measured, the figure of the other kind beside it (native or VM), the lab
// host's load, and the patch's own mapped and island bytes; and the
// application a cell ran ("nginx-light 1.22.1-9", or a program and its
// build-id) for targets the lab did not build, '' for the lab's own. Rows
// recorded before keep every value; their new columns are NULL or ''.
constexpr const char* kV4 = R"sql(
ALTER TABLE cells ADD COLUMN cpu_clock TEXT NOT NULL DEFAULT '';
ALTER TABLE cells ADD COLUMN cpu_coverage REAL;
ALTER TABLE cells ADD COLUMN cpu_outcome TEXT;
ALTER TABLE cells ADD COLUMN cpu_limit_pct REAL;
ALTER TABLE cells ADD COLUMN cpu_scenario_limit_pct REAL;
ALTER TABLE cells ADD COLUMN cpu_windows TEXT NOT NULL DEFAULT '[]';
ALTER TABLE cells ADD COLUMN cpu_ref_pct REAL;
ALTER TABLE cells ADD COLUMN cpu_ref_low REAL;
ALTER TABLE cells ADD COLUMN cpu_ref_high REAL;
ALTER TABLE cells ADD COLUMN cpu_ref_samples INTEGER;
ALTER TABLE cells ADD COLUMN cpu_ref_clock TEXT NOT NULL DEFAULT '';
ALTER TABLE cells ADD COLUMN host_load1 REAL;
ALTER TABLE cells ADD COLUMN host_busy_pct REAL;
ALTER TABLE cells ADD COLUMN host_steal_pct REAL;
ALTER TABLE cells ADD COLUMN patch_mapped_kib REAL;
ALTER TABLE cells ADD COLUMN island_kib REAL;
ALTER TABLE cells ADD COLUMN application TEXT NOT NULL DEFAULT '';
)sql";

}  // namespace

const char* MigrationTo(int version) {
  switch (version) {
    case 1:
      return kV1;
    case 2:
      return kV2;
    case 3:
      return kV3;
    case 4:
      return kV4;
    default:
      return nullptr;
  }
}

Result<int> ReadSchemaVersion(Connection& conn) {
  auto stmt = conn.Prepare("PRAGMA user_version");
  if (!stmt) return std::unexpected(stmt.error());
  auto row = stmt->Step();
  if (!row) return std::unexpected(row.error());
  return static_cast<int>(stmt->Int(0));
}

Result<int> MigrateToCurrent(Connection& conn) {
  auto version = ReadSchemaVersion(conn);
  if (!version) return version;
  if (*version > kSchemaVersion) {
    return Fail(ErrorCode::kUnsupported,
                "{}: database schema version {} is newer than this patchlab understands ({}); "
                "use a newer patchlab",
                conn.path().string(), *version, kSchemaVersion);
  }
  int at = *version;
  while (at < kSchemaVersion) {
    int target = at + 1;
    bool applied = false;
    Status s = conn.Transaction([&]() -> Status {
      // Another process may have migrated between our read and our lock.
      auto now = ReadSchemaVersion(conn);
      if (!now) return std::unexpected(now.error());
      if (*now >= target) return {};
      if (*now != at) {
        return Fail(ErrorCode::kInternal, "{}: schema version moved from {} to {} during migration",
                    conn.path().string(), at, *now);
      }
      if (auto e = conn.Exec(MigrationTo(target)); !e) return e;
      applied = true;
      return conn.Exec(fmt::format("PRAGMA user_version = {}", target));
    });
    if (!s) {
      return std::unexpected(std::move(s.error()).AddContext(
          fmt::format("migrating {} to schema version {}", conn.path().string(), target)));
    }
    if (applied && at > 0) {
      Log("metrics")->info("{}: migrated schema from version {} to {}", conn.path().string(), at,
                           target);
    }
    at = target;
  }
  return at;
}

}  // namespace patchlab::metrics::internal
