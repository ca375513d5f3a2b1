// The compatibility database on real SQLite files: round trips, migration from
// a hand-made version 1 file, concurrent writers in separate processes, a run
// killed mid-way and resumed, and the errors a bad file or a full disk give.
#include "metrics/compat_db.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/file_util.h"
#include "metrics/internal/schema.h"
#include "tests/metrics/test_util.h"
#include "tests/support/status_matchers.h"

using ::testing::HasSubstr;

namespace patchlab::metrics {
namespace {

using testing::GoodCell;
using testing::OpenSeeded;
using testing::ScratchDir;

void Sql(const std::filesystem::path& file, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(file.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

TEST(CompatDb, CellRoundTripKeepsEveryFigure) {
  ScratchDir dir;
  CompatDb db = OpenSeeded(dir / "lab.db");
  EXPECT_EQ(db.schema_version(), kSchemaVersion);
  auto run = db.BeginRun(RunInfo{.label = "nightly", .args = "scenarios"});
  ASSERT_OK(run);
  CellResult cell = GoodCell(*run, "deb12");
  cell.crashes = {{CrashKind::kSegfault, 2}, {CrashKind::kLostHeartbeat, 1}};
  cell.verdict = Verdict::kFail;
  cell.apply = ApplyResult::kRolledBack;
  cell.apply_reason = "thread 12 inside parse_kv";
  cell.met_expectation = false;
  cell.application = "nginx-light 1.22.1-9+deb12u12";
  ASSERT_TRUE(db.RecordCell(cell).has_value());

  auto cells = db.CellsOfRun(*run);
  ASSERT_OK(cells);
  ASSERT_EQ(cells->size(), 1u);
  const CellResult& back = cells->front();
  EXPECT_EQ(back.key, cell.key);
  EXPECT_EQ(back.verdict, Verdict::kFail);
  EXPECT_EQ(back.apply, ApplyResult::kRolledBack);
  EXPECT_EQ(back.apply_reason, cell.apply_reason);
  EXPECT_EQ(back.met_expectation, std::optional<bool>(false));
  EXPECT_EQ(back.application, "nginx-light 1.22.1-9+deb12u12");
  EXPECT_EQ(back.crashes, cell.crashes);
  EXPECT_EQ(back.TotalCrashes(), 3);
  EXPECT_EQ(back.pause_us, cell.pause_us);
  ASSERT_TRUE(back.pause_median_us.has_value());
  EXPECT_DOUBLE_EQ(*back.pause_median_us, 1100);  // computed from the samples
  ASSERT_TRUE(back.cpu_overhead_pct.has_value());
  EXPECT_DOUBLE_EQ(back.cpu_overhead_pct->high, 1.1);
  EXPECT_EQ(back.cpu_overhead_pct->samples, 12u);
  EXPECT_EQ(back.reasons, cell.reasons);
  EXPECT_GT(back.recorded_at, 0);

  // Recording the same cell again in the same run replaces it, crash rows included.
  cell.crashes = {};
  cell.verdict = Verdict::kPass;
  ASSERT_TRUE(db.RecordCell(cell).has_value());
  cells = db.CellsOfRun(*run);
  ASSERT_EQ(cells->size(), 1u);
  EXPECT_EQ(cells->front().TotalCrashes(), 0);
  EXPECT_EQ(cells->front().verdict, Verdict::kPass);

  auto info = db.GetRun(*run);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->status, RunStatus::kRunning);
  EXPECT_EQ(info->label, "nightly");
  EXPECT_EQ(info->pid, getpid());
  EXPECT_FALSE(info->host.empty());
  ASSERT_TRUE(db.FinishRun(*run, RunStatus::kComplete).has_value());
  EXPECT_EQ(db.GetRun(*run)->status, RunStatus::kComplete);
  EXPECT_EQ(*db.IntegrityCheck(), "ok");
}

TEST(CompatDb, RefusesACellOfAnUnknownPatchNamingIt) {
  ScratchDir dir;
  CompatDb db = OpenSeeded(dir / "lab.db");
  auto run = db.BeginRun({});
  ASSERT_TRUE(run.has_value());
  auto s = db.RecordCell(GoodCell(*run, "deb12", "qemu64", "default", "no-such-patch"));
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::kNotFound);
  EXPECT_THAT(s.error().ToString(), HasSubstr("no-such-patch")) << s.error().ToString();
  EXPECT_THAT(s.error().ToString(), HasSubstr("lab.db")) << s.error().ToString();
  EXPECT_TRUE(db.CellsOfRun(*run)->empty());
}

// Version 1 as it shipped, written out here independently of the migration code
// so that an edit to the shipped migration is caught.
constexpr const char* kVersion1Schema = R"sql(
CREATE TABLE runs(id INTEGER PRIMARY KEY AUTOINCREMENT, started_at INTEGER NOT NULL,
  finished_at INTEGER NOT NULL DEFAULT 0, host TEXT NOT NULL, version TEXT NOT NULL,
  git_revision TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('running', 'complete', 'incomplete', 'failed')));
CREATE TABLE patches(id TEXT PRIMARY KEY, seq INTEGER NOT NULL, target_build_id TEXT NOT NULL,
  package_hash TEXT NOT NULL, signer TEXT NOT NULL);
CREATE TABLE images(name TEXT PRIMARY KEY, kernel_version TEXT NOT NULL, packages TEXT NOT NULL,
  content_hash TEXT NOT NULL);
CREATE TABLE cells(id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  scenario TEXT NOT NULL, patch_id TEXT NOT NULL REFERENCES patches(id), patch_seq INTEGER NOT NULL,
  image TEXT NOT NULL REFERENCES images(name), cpu TEXT NOT NULL, workload TEXT NOT NULL, host TEXT NOT NULL,
  verdict TEXT NOT NULL CHECK (verdict IN ('pass', 'fail', 'not-hotpatchable', 'infra-error')),
  apply_result TEXT NOT NULL CHECK (apply_result IN ('applied', 'refused', 'rolled-back', 'not-run')),
  apply_reason TEXT NOT NULL, pause_us TEXT NOT NULL, pause_median_us REAL, cpu_overhead_pct REAL,
  cpu_ci_low REAL, cpu_ci_high REAL, cpu_samples INTEGER, mem_overhead_kib REAL, semantic TEXT NOT NULL,
  duration_ms INTEGER NOT NULL, artefacts TEXT NOT NULL, reasons TEXT NOT NULL, recorded_at INTEGER NOT NULL,
  UNIQUE (run_id, scenario, patch_id, image, cpu, workload));
CREATE INDEX cells_by_patch ON cells(patch_id, scenario, image, cpu, workload);
CREATE INDEX cells_by_image ON cells(image);
CREATE TABLE cell_crashes(cell_id INTEGER NOT NULL REFERENCES cells(id) ON DELETE CASCADE,
  kind TEXT NOT NULL, count INTEGER NOT NULL CHECK (count > 0), PRIMARY KEY (cell_id, kind));
CREATE TABLE findings(id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  scenario TEXT NOT NULL, patch_id TEXT NOT NULL REFERENCES patches(id), function TEXT NOT NULL,
  kind TEXT NOT NULL, input TEXT NOT NULL, old_result TEXT NOT NULL, new_result TEXT NOT NULL,
  expected INTEGER NOT NULL, detail TEXT NOT NULL);
CREATE INDEX findings_by_run ON findings(run_id, patch_id);
INSERT INTO runs VALUES (1, 1700000000, 1700000600, 'oldhost', '0.0.9', 'v0.0.9-3-gabc', 'complete');
INSERT INTO patches VALUES ('fix-1', 1, 'beef', 'cafe', 'old-key');
INSERT INTO images VALUES ('deb12', '6.1.0-9', '["busybox=1.35"]', 'h1');
INSERT INTO cells VALUES (7, 1, 'kv', 'fix-1', 1, 'deb12', 'qemu64', 'default', 'oldhost', 'fail', 'applied', '',
  '[1500.0, 2500.0]', 2000.0, 1.5, 0.5, 2.5, 8, 4096.0, 'pass', 9000, 'out/1', '["crashed twice"]', 1700000500);
INSERT INTO cell_crashes VALUES (7, 'segfault', 2);
INSERT INTO findings VALUES (1, 1, 'kv', 'fix-1', 'parse_kv', 'return-value', 'len=0', '0', '-1', 0, '');
PRAGMA user_version = 1;
)sql";

TEST(CompatDb, MigratesAVersion1FileKeepingItsData) {
  ScratchDir dir;
  auto file = dir / "v1.db";
  Sql(file, kVersion1Schema);
  auto db = CompatDb::Open(file);
  ASSERT_OK(db);
  EXPECT_EQ(db->schema_version(), kSchemaVersion);

  auto run = db->GetRun(1);
  ASSERT_OK(run);
  EXPECT_EQ(run->status, RunStatus::kComplete);
  EXPECT_EQ(run->git_revision, "v0.0.9-3-gabc");
  EXPECT_EQ(run->label, "");  // a column version 2 added
  auto cells = db->CellsOfRun(1);
  ASSERT_OK(cells);
  ASSERT_EQ(cells->size(), 1u);
  EXPECT_EQ(cells->front().crashes.at(CrashKind::kSegfault), 2);
  EXPECT_EQ(cells->front().pause_us, (std::vector<double>{1500, 2500}));
  EXPECT_FALSE(cells->front().met_expectation.has_value());
  // The CPU figure survives every migration; what schema 4 added is empty.
  const CellResult& old = cells->front();
  ASSERT_TRUE(old.cpu_overhead_pct.has_value());
  EXPECT_EQ(old.cpu_overhead_pct->value, 1.5);
  EXPECT_EQ(old.cpu_overhead_pct->low, 0.5);
  EXPECT_EQ(old.cpu_overhead_pct->high, 2.5);
  EXPECT_EQ(old.cpu_overhead_pct->samples, 8u);
  EXPECT_EQ(old.cpu_overhead_pct->coverage, 0);
  EXPECT_EQ(old.cpu_clock, CpuClock::kUnknown);
  EXPECT_FALSE(old.cpu_outcome.has_value());
  EXPECT_FALSE(old.cpu_scenario_limit_pct.has_value());
  EXPECT_TRUE(old.cpu_windows.empty());
  EXPECT_FALSE(old.host_load.has_value());
  EXPECT_EQ(old.mem_overhead_kib, 4096.0);
  EXPECT_EQ(old.application, "");  // a column version 4 added
  EXPECT_EQ(db->Findings(1)->size(), 1u);
  EXPECT_EQ(db->GetImage("deb12")->value().packages, std::vector<std::string>{"busybox=1.35"});

  // The migrated file takes version 2 writes, and later runs get new ids.
  auto next = db->BeginRun(RunInfo{.label = "nightly"});
  ASSERT_OK(next);
  EXPECT_EQ(*next, 2);
  ASSERT_TRUE(
      db->PlanCells(*next, {CellKey{"kv", "fix-1", "deb12", "qemu64", "default"}}).has_value());
  ASSERT_TRUE(db->RecordCell(GoodCell(*next, "deb12")).has_value());
  EXPECT_EQ(*db->IntegrityCheck(), "ok");

  // Opening again does not migrate twice.
  auto again = CompatDb::Open(file);
  ASSERT_OK(again);
  EXPECT_EQ(again->CellsOfRun(1)->size(), 1u);
}

// A file as version 2 or 3 left it (the shipped migrations applied in order):
// a labelled complete run with its plan, one cell with a CPU figure, its
// crashes and a finding; version 3 also knows the recorder's boot id.
std::string OlderFile(int version) {
  std::string sql;
  for (int v = 1; v <= version; ++v) sql += internal::MigrationTo(v);
  sql += fmt::format("PRAGMA user_version = {};", version);
  sql += R"sql(
INSERT INTO runs(id, started_at, finished_at, host, version, git_revision, status, label, args,
  note, pid) VALUES (1, 1700000000, 1700000600, 'oldhost', '0.1.0', 'v0.1.0', 'complete',
  'nightly', 'run scenarios', 'a note', 4242);
INSERT INTO patches VALUES ('fix-1', 1, 'beef', 'cafe', 'old-key');
INSERT INTO images VALUES ('deb12', '6.1.0-9', '["busybox=1.35"]', 'h1');
INSERT INTO planned_cells VALUES (1, 'kv', 'fix-1', 'deb12', 'qemu64', 'default');
INSERT INTO cells(id, run_id, scenario, patch_id, patch_seq, image, cpu, workload, host, verdict,
  apply_result, apply_reason, pause_us, pause_median_us, cpu_overhead_pct, cpu_ci_low,
  cpu_ci_high, cpu_samples, mem_overhead_kib, semantic, duration_ms, artefacts, reasons,
  recorded_at, met_expectation) VALUES (7, 1, 'kv', 'fix-1', 1, 'deb12', 'qemu64', 'default',
  'oldhost', 'fail', 'applied', '', '[1500.0]', 1500.0, 9.5, 4.0, 12.5, 3, 2048.0, 'pass', 9000,
  'out/1', '["crashed twice"]', 1700000500, 0);
INSERT INTO cell_crashes VALUES (7, 'segfault', 2);
INSERT INTO findings VALUES (1, 1, 'kv', 'fix-1', 'parse_kv', 'return-value', 'len=0', '0', '-1',
  0, '');
)sql";
  if (version >= 3) sql += "UPDATE runs SET boot_id = 'boot-1', pid_start = 777 WHERE id = 1;";
  return sql;
}

class CompatDbMigration : public ::testing::TestWithParam<int> {};

// One schema 4 adds both second-round sets of columns (the CPU figures' and
// the application) in one migration: every row of the older file is kept, and
// the new columns read empty until a cell fills them.
TEST_P(CompatDbMigration, AnOlderFileKeepsEveryRowAndTakesBothSetsOfColumns) {
  const int version = GetParam();
  ScratchDir dir;
  auto file = dir / fmt::format("v{}.db", version);
  Sql(file, OlderFile(version));
  auto db = CompatDb::Open(file);
  ASSERT_OK(db);
  EXPECT_EQ(db->schema_version(), kSchemaVersion);

  auto run = db->GetRun(1);
  ASSERT_OK(run);
  EXPECT_EQ(run->status, RunStatus::kComplete);
  EXPECT_EQ(run->label, "nightly");
  EXPECT_EQ(run->note, "a note");
  auto cells = db->CellsOfRun(1);
  ASSERT_OK(cells);
  ASSERT_EQ(cells->size(), 1u);
  const CellResult& old = cells->front();
  EXPECT_EQ(old.verdict, Verdict::kFail);
  EXPECT_EQ(old.met_expectation, std::optional<bool>(false));
  EXPECT_EQ(old.crashes.at(CrashKind::kSegfault), 2);
  EXPECT_EQ(old.pause_us, std::vector<double>{1500});
  ASSERT_TRUE(old.cpu_overhead_pct.has_value());
  EXPECT_EQ(old.cpu_overhead_pct->value, 9.5);
  EXPECT_EQ(old.cpu_overhead_pct->low, 4.0);
  EXPECT_EQ(old.cpu_overhead_pct->high, 12.5);
  EXPECT_EQ(old.cpu_overhead_pct->samples, 3u);
  EXPECT_EQ(old.mem_overhead_kib, 2048.0);
  EXPECT_EQ(old.reasons, std::vector<std::string>{"crashed twice"});
  // What schema 4 added: the figures' columns and the application, empty.
  EXPECT_EQ(old.cpu_clock, CpuClock::kUnknown);
  EXPECT_FALSE(old.cpu_outcome.has_value());
  EXPECT_FALSE(old.cpu_limit_pct.has_value());
  EXPECT_TRUE(old.cpu_windows.empty());
  EXPECT_FALSE(old.host_load.has_value());
  EXPECT_FALSE(old.patch_mapped_kib.has_value());
  EXPECT_EQ(old.application, "");
  EXPECT_EQ(db->Findings(1)->size(), 1u);
  auto missing = db->MissingCells(1);
  ASSERT_OK(missing);
  EXPECT_TRUE(missing->empty()) << "the planned cell is the recorded one";

  // The migrated file records a cell with both sets filled, and reads it back.
  auto next = db->BeginRun(RunInfo{});
  ASSERT_OK(next);
  CellResult c = GoodCell(*next, "deb12");
  c.cpu_clock = CpuClock::kGuestInstructions;
  c.cpu_outcome = OverheadOutcome::kWithin;
  c.island_kib = 4;
  c.application = "nginx-light 1.22.1-9";
  ASSERT_OK(db->RecordCell(c));
  auto back = db->CellsOfRun(*next);
  ASSERT_OK(back);
  ASSERT_EQ(back->size(), 1u);
  EXPECT_EQ(back->front().cpu_clock, CpuClock::kGuestInstructions);
  EXPECT_EQ(back->front().island_kib, 4);
  EXPECT_EQ(back->front().application, "nginx-light 1.22.1-9");
  EXPECT_EQ(*db->IntegrityCheck(), "ok");
}

INSTANTIATE_TEST_SUITE_P(FromVersion, CompatDbMigration, ::testing::Values(2, 3));

TEST(CompatDb, RecordsEveryPartOfACpuFigure) {
  ScratchDir dir;
  CompatDb db = OpenSeeded(dir / "lab.db");
  auto run = db.BeginRun(RunInfo{});
  ASSERT_OK(run);
  CellResult c = GoodCell(*run, "deb12");
  c.cpu_overhead_pct = Estimate{0.42, 0.31, 0.55, 12, 0.9995};
  c.cpu_clock = CpuClock::kGuestInstructions;
  c.cpu_outcome = OverheadOutcome::kWithin;
  c.cpu_limit_pct = 2.0;
  c.cpu_scenario_limit_pct = 5.0;
  c.cpu_windows = {{false, 1000, 10}, {true, 1004.2, 10}};
  c.cpu_reference_pct = Estimate{0.6, -0.4, 1.5, 12, 0.9995};
  c.cpu_reference_clock = CpuClock::kNativeCpuTime;
  c.host_load = HostLoad{3.5, 97.0, 1.25};
  c.patch_mapped_kib = 12;
  c.island_kib = 4;
  ASSERT_OK(db.RecordCell(c));
  auto cells = db.CellsOfRun(*run);
  ASSERT_OK(cells);
  ASSERT_EQ(cells->size(), 1u);
  const CellResult& r = cells->front();
  ASSERT_TRUE(r.cpu_overhead_pct.has_value());
  EXPECT_EQ(r.cpu_overhead_pct->coverage, 0.9995);
  EXPECT_EQ(r.cpu_clock, CpuClock::kGuestInstructions);
  EXPECT_EQ(r.cpu_outcome, OverheadOutcome::kWithin);
  EXPECT_EQ(r.cpu_limit_pct, 2.0);
  EXPECT_EQ(r.cpu_scenario_limit_pct, 5.0);
  ASSERT_EQ(r.cpu_windows.size(), 2u);
  EXPECT_TRUE(r.cpu_windows[1].patched);
  EXPECT_EQ(r.cpu_windows[1].cost, 1004.2);
  EXPECT_EQ(r.cpu_windows[1].work, 10);
  ASSERT_TRUE(r.cpu_reference_pct.has_value());
  EXPECT_EQ(r.cpu_reference_pct->high, 1.5);
  EXPECT_EQ(r.cpu_reference_clock, CpuClock::kNativeCpuTime);
  ASSERT_TRUE(r.host_load.has_value());
  EXPECT_EQ(r.host_load->steal_pct, 1.25);
  EXPECT_EQ(r.patch_mapped_kib, 12);
  EXPECT_EQ(r.island_kib, 4);
}

TEST(CompatDb, RefusesANewerSchemaAndAFileThatIsNotADatabase) {
  ScratchDir dir;
  auto newer = dir / "newer.db";
  Sql(newer, "CREATE TABLE x(a); PRAGMA user_version = 99;");
  auto db = CompatDb::Open(newer);
  ASSERT_FALSE(db.has_value());
  EXPECT_EQ(db.error().code(), ErrorCode::kUnsupported);
  EXPECT_THAT(db.error().ToString(), HasSubstr("newer.db")) << db.error().ToString();
  EXPECT_THAT(db.error().ToString(), HasSubstr("99"));

  auto junk = dir / "junk.db";
  ASSERT_TRUE(WriteFileAtomic(junk, std::string(8192, 'x')).has_value());
  db = CompatDb::Open(junk);
  ASSERT_FALSE(db.has_value());
  EXPECT_THAT(db.error().ToString(), HasSubstr("junk.db")) << db.error().ToString();

  auto absent = CompatDb::OpenExisting(dir / "absent.db");
  ASSERT_FALSE(absent.has_value());
  EXPECT_EQ(absent.error().code(), ErrorCode::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(dir / "absent.db"));
}

// Runs `body` in a child process; returns its pid. The child exits 0 on success.
template <typename F>
pid_t Child(F body) {
  pid_t pid = fork();
  if (pid == 0) _exit(body() ? 0 : 1);
  return pid;
}

int WaitExit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(CompatDb, TwoProcessesWritingAtOnceBothLand) {
  ScratchDir dir;
  auto file = dir / "shared.db";
  constexpr int kCells = 40;
  auto writer = [&](const char* image) {
    return Child([&, image] {
      // Both create the file, migrate and seed at the same moment too.
      CompatDb db = OpenSeeded(file);
      auto run = db.BeginRun(RunInfo{.label = image});
      if (!run) return false;
      for (int i = 0; i < kCells; ++i) {
        if (!db.RecordCell(GoodCell(*run, image, "cpu" + std::to_string(i)))) return false;
      }
      return db.FinishRun(*run, RunStatus::kComplete).has_value();
    });
  };
  pid_t a = writer("deb12");
  pid_t b = writer("alpine");
  EXPECT_EQ(WaitExit(a), 0);
  EXPECT_EQ(WaitExit(b), 0);

  auto db = CompatDb::OpenExisting(file);
  ASSERT_OK(db);
  auto runs = db->ListRuns();
  ASSERT_EQ(runs->size(), 2u);
  for (const RunInfo& run : *runs) {
    EXPECT_EQ(run.status, RunStatus::kComplete);
    EXPECT_EQ(db->CellsOfRun(run.id)->size(), static_cast<size_t>(kCells)) << "run " << run.id;
  }
  EXPECT_EQ(*db->IntegrityCheck(), "ok");
}

TEST(CompatDb, RunKilledMidwayIsResumedWithNothingLost) {
  ScratchDir dir;
  auto file = dir / "killed.db";
  std::vector<CellKey> plan;
  for (const char* image : {"deb12", "alpine"}) {
    for (const char* cpu : {"qemu64", "Skylake-Client", "EPYC"}) {
      plan.push_back(CellKey{"kv", "fix-1", image, cpu, "default"});
    }
  }
  int64_t run_id = 0;
  {
    CompatDb db = OpenSeeded(file);
    auto run = db.BeginRun(RunInfo{.args = "scenarios/kv"});
    ASSERT_TRUE(run.has_value());
    run_id = *run;
    ASSERT_TRUE(db.PlanCells(run_id, plan).has_value());
    // Handed over to the recording child, which takes it with ResumeRun.
    ASSERT_TRUE(db.MarkIncomplete(run_id, "handed to the recorder").has_value());
  }
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t lab = Child([&] {
    auto db = CompatDb::Open(file);
    if (!db || !db->ResumeRun(run_id)) return false;  // the child becomes the recorder
    for (size_t i = 0; i < 3; ++i) {
      if (!db->RecordCell(GoodCell(run_id, plan[i].image, plan[i].cpu))) return false;
    }
    char one = 1;
    if (write(ready[1], &one, 1) != 1) return false;
    // Keep writing (re-recording the next cells) until killed, so the kill can
    // land inside a transaction.
    for (;;) {
      for (size_t i = 3; i < plan.size(); ++i) {
        CellResult c = GoodCell(run_id, plan[i].image, plan[i].cpu);
        c.crashes = {{CrashKind::kTrap, 1}};
        (void)db->RecordCell(c);
        (void)db->RecordCell(GoodCell(run_id, plan[i].image, plan[i].cpu));
      }
    }
  });
  char byte = 0;
  close(ready[1]);
  ASSERT_EQ(read(ready[0], &byte, 1), 1) << "the recording child died early";
  close(ready[0]);
  kill(lab, SIGKILL);
  EXPECT_EQ(WaitExit(lab), 128 + SIGKILL);

  auto db = CompatDb::Open(file);
  ASSERT_OK(db);
  EXPECT_EQ(*db->IntegrityCheck(), "ok");
  EXPECT_EQ(*db->MarkAbandonedRuns(), 1);
  auto run = db->GetRun(run_id);
  EXPECT_EQ(run->status, RunStatus::kIncomplete);
  EXPECT_THAT(run->note, HasSubstr("vanished")) << run->note;

  auto recorded = db->CellsOfRun(run_id);
  ASSERT_GE(recorded->size(), 3u);
  for (const CellResult& c : *recorded) {
    // A cell is there whole or not at all: its crash rows match what was written.
    EXPECT_TRUE(c.TotalCrashes() == 0 || c.crashes.at(CrashKind::kTrap) == 1) << c.key.ToString();
  }
  auto missing = db->MissingCells(run_id);
  ASSERT_TRUE(missing.has_value());
  EXPECT_EQ(missing->size() + recorded->size(), plan.size());

  // --resume: take the run over, fill what is missing, finish.
  ASSERT_TRUE(db->ResumeRun(run_id).has_value());
  for (const CellKey& k : *missing)
    ASSERT_TRUE(db->RecordCell(GoodCell(run_id, k.image, k.cpu)).has_value());
  ASSERT_TRUE(db->FinishRun(run_id, RunStatus::kComplete).has_value());
  EXPECT_TRUE(db->MissingCells(run_id)->empty());
  EXPECT_EQ(db->CellsOfRun(run_id)->size(), plan.size());
  EXPECT_EQ(*db->IntegrityCheck(), "ok");
  auto complete = db->ResumeRun(run_id);
  ASSERT_FALSE(complete.has_value());
  EXPECT_THAT(complete.error().message(), HasSubstr("complete"));
}

TEST(CompatDb, FullDiskFailsNamingTheFileAndKeepsWhatWasRecorded) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a tiny tmpfs";
  ScratchDir dir;
  auto mount_point = dir / "tiny";
  std::filesystem::create_directories(mount_point);
  if (::system(
          ("mount -t tmpfs -o size=256k tmpfs " + mount_point.string() + " 2>/dev/null").c_str()) !=
      0) {
    GTEST_SKIP() << "cannot mount tmpfs here";
  }
  struct Unmount {
    std::filesystem::path dir;
    ~Unmount() { [[maybe_unused]] int rc = ::system(("umount " + dir.string()).c_str()); }
  } unmount{mount_point};

  auto file = mount_point / "lab.db";
  std::vector<CellKey> recorded;
  std::optional<Error> failure;
  {
    CompatDb db = OpenSeeded(file);
    auto run = db.BeginRun({});
    ASSERT_OK(run);
    for (int i = 0; i < 2000 && !failure; ++i) {
      CellResult c = GoodCell(*run, "deb12", "cpu" + std::to_string(i));
      c.reasons = {std::string(2000, 'r')};  // fill the disk quickly
      if (auto s = db.RecordCell(c); s) {
        recorded.push_back(c.key);
      } else {
        failure = s.error();
      }
    }
  }
  ASSERT_TRUE(failure.has_value()) << "the tmpfs never filled up";
  EXPECT_THAT(failure->ToString(), HasSubstr(file.string())) << failure->ToString();
  ASSERT_FALSE(recorded.empty());
  // Make room (as an operator would) and check that nothing recorded was lost.
  auto db = CompatDb::OpenExisting(file);
  ASSERT_OK(db);
  auto cells = db->CellsOfRun(1);
  ASSERT_OK(cells);
  EXPECT_EQ(cells->size(), recorded.size());
  EXPECT_EQ(*db->IntegrityCheck(), "ok");
}

TEST(CompatDb, ReadOnlyFileFailsNamingItAndLosesNothing) {
  // Root ignores file modes, so a read-only bind mount stands for a read-only file.
  if (::geteuid() != 0) GTEST_SKIP() << "needs root for a read-only bind mount";
  ScratchDir dir;
  auto rw = dir / "rw";
  auto ro = dir / "ro";
  std::filesystem::create_directories(rw);
  std::filesystem::create_directories(ro);
  {
    CompatDb db = OpenSeeded(rw / "lab.db");
    auto run = db.BeginRun({});
    ASSERT_TRUE(db.RecordCell(GoodCell(*run, "deb12")).has_value());
  }
  if (::system(("mount --bind " + rw.string() + " " + ro.string() +
                " 2>/dev/null && mount -o remount,ro,bind " + ro.string() + " 2>/dev/null")
                   .c_str()) != 0) {
    [[maybe_unused]] int rc = ::system(("umount " + ro.string() + " 2>/dev/null").c_str());
    GTEST_SKIP() << "cannot make a read-only bind mount here";
  }
  struct Unmount {
    std::filesystem::path dir;
    ~Unmount() { [[maybe_unused]] int rc = ::system(("umount " + dir.string()).c_str()); }
  } unmount{ro};

  auto file = ro / "lab.db";
  auto db = CompatDb::Open(file);
  std::optional<Error> failure;
  if (!db) {
    failure = db.error();
  } else if (auto s = db->RecordCell(GoodCell(1, "alpine")); !s) {
    failure = s.error();
  }
  ASSERT_TRUE(failure.has_value()) << "writing to a read-only file succeeded";
  EXPECT_THAT(failure->ToString(), HasSubstr(file.string())) << failure->ToString();

  auto original = CompatDb::OpenExisting(rw / "lab.db");
  ASSERT_OK(original);
  EXPECT_EQ(original->CellsOfRun(1)->size(), 1u);
  EXPECT_EQ(*original->IntegrityCheck(), "ok");
}

}  // namespace
}  // namespace patchlab::metrics
