// Reading the compatibility database from read-only media: a read-only bind
// mount of a folder holding real SQLite files, in the states a writer can leave
// them in (cleanly closed; -wal and -shm beside it; a -wal without its -shm),
// and files of older and newer schemas.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdlib>

#include "metrics/compat_db.h"
#include "metrics/internal/schema.h"
#include "tests/metrics/test_util.h"
#include "tests/support/status_matchers.h"

using ::testing::HasSubstr;

namespace patchlab::metrics {
namespace {

namespace fs = std::filesystem;
using testing::GoodCell;
using testing::OpenSeeded;
using testing::ReadOnlyMedia;
using testing::RecordShowcaseRun;
using testing::ScratchDir;

void Sql(const fs::path& file, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(file.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

TEST(ReadOnly, ACleanlyClosedFileIsReadFromReadOnlyMedia) {
  ScratchDir dir;
  int64_t run = 0;
  size_t cells = 0;
  {
    CompatDb db = OpenSeeded(dir / "rw/lab.db");
    run = RecordShowcaseRun(db);
    cells = db.CellsOfRun(run)->size();
  }
  ASSERT_FALSE(fs::exists(dir / "rw/lab.db-shm"));  // closed: nothing beside the file
  ReadOnlyMedia media(dir / "rw", dir / "ro");
  REQUIRE_MOUNT(media);
  const fs::path file = dir / "ro/lab.db";

  auto db = CompatDb::OpenReadOnly(file);
  ASSERT_OK(db);
  EXPECT_EQ(db->schema_version(), kSchemaVersion);
  EXPECT_EQ(db->CellsOfRun(run).value_or(std::vector<CellResult>{}).size(), cells);
  EXPECT_FALSE(db->LatestCellsOfPatch("fix-1").value_or(std::vector<CellResult>{}).empty());
  EXPECT_EQ(db->ListRuns().value_or(std::vector<RunInfo>{}).size(), 1u);
  EXPECT_EQ(db->IntegrityCheck().value_or("?"), "ok");
  // Nothing can be written through it, and the error names the file.
  auto write = db->SetRunLabel(run, "x");
  ASSERT_FALSE(write.has_value());
  EXPECT_EQ(write.error().code(), ErrorCode::kUnsupported);
  EXPECT_THAT(write.error().ToString(), HasSubstr(file.string())) << write.error().ToString();
  // A writer's open fails there, naming the file.
  auto writer = CompatDb::Open(file);
  if (writer) {
    auto s = writer->BeginRun({});
    ASSERT_FALSE(s.has_value());
    EXPECT_THAT(s.error().ToString(), HasSubstr(file.string())) << s.error().ToString();
  } else {
    EXPECT_THAT(writer.error().ToString(), HasSubstr(file.string())) << writer.error().ToString();
  }
}

// A copy of a database taken while its writer still had it open: the newest
// cell is only in the -wal.
void CopyWhileOpen(const fs::path& dir, bool with_shm, int64_t& run_out) {
  CompatDb db = OpenSeeded(dir / "live/lab.db");
  auto run = db.BeginRun({});
  ASSERT_TRUE(run.has_value());
  ASSERT_TRUE(db.RecordCell(GoodCell(*run, "deb12")).has_value());
  ASSERT_TRUE(db.FinishRun(*run, RunStatus::kComplete).has_value());
  ASSERT_GT(fs::file_size(dir / "live/lab.db-wal"), 0u);
  fs::create_directories(dir / "copy");
  for (const char* suffix : {"", "-wal", "-shm"}) {
    if (!with_shm && std::string(suffix) == "-shm") continue;
    fs::copy_file(dir / ("live/lab.db" + std::string(suffix)),
                  dir / ("copy/lab.db" + std::string(suffix)));
  }
  run_out = *run;
}

TEST(ReadOnly, AFileWithItsWalAndShmIsReadWholeFromReadOnlyMedia) {
  ScratchDir dir;
  int64_t run = 0;
  CopyWhileOpen(dir.path(), /*with_shm=*/true, run);
  ReadOnlyMedia media(dir / "copy", dir / "ro");
  REQUIRE_MOUNT(media);
  auto db = CompatDb::OpenReadOnly(dir / "ro/lab.db");
  ASSERT_OK(db);
  auto cells = db->CellsOfRun(run);
  ASSERT_OK(cells);
  EXPECT_EQ(cells->size(), 1u);  // the cell that is only in the -wal
  EXPECT_EQ(db->GetRun(run)->status, RunStatus::kComplete);
}

TEST(ReadOnly, AWalThatCannotBeReadIsAnErrorNotAStaleDatabase) {
  ScratchDir dir;
  int64_t run = 0;
  CopyWhileOpen(dir.path(), /*with_shm=*/false, run);
  ReadOnlyMedia media(dir / "copy", dir / "ro");
  REQUIRE_MOUNT(media);
  auto db = CompatDb::OpenReadOnly(dir / "ro/lab.db");
  ASSERT_FALSE(db.has_value()) << "opened without the cells in its -wal";
  EXPECT_EQ(db.error().code(), ErrorCode::kUnsupported);
  EXPECT_THAT(db.error().ToString(), HasSubstr((dir / "ro/lab.db-wal").string()))
      << db.error().ToString();
}

TEST(ReadOnly, SchemasTooOldOrTooNewAreRefusedNamingTheVersions) {
  ScratchDir dir;
  Sql(dir / "v1.db", std::string(internal::MigrationTo(1)) + "PRAGMA user_version = 1;");
  auto v1 = CompatDb::OpenReadOnly(dir / "v1.db");
  ASSERT_FALSE(v1.has_value());
  EXPECT_EQ(v1.error().code(), ErrorCode::kRefused);
  EXPECT_THAT(v1.error().ToString(), HasSubstr("version 1")) << v1.error().ToString();
  Sql(dir / "v99.db", "CREATE TABLE x(a); PRAGMA user_version = 99;");
  auto v99 = CompatDb::OpenReadOnly(dir / "v99.db");
  ASSERT_FALSE(v99.has_value());
  EXPECT_EQ(v99.error().code(), ErrorCode::kUnsupported);
  EXPECT_THAT(v99.error().ToString(), HasSubstr("99")) << v99.error().ToString();
  auto absent = CompatDb::OpenReadOnly(dir / "absent.db");
  ASSERT_FALSE(absent.has_value());
  EXPECT_EQ(absent.error().code(), ErrorCode::kNotFound);
  EXPECT_FALSE(fs::exists(dir / "absent.db"));
}

TEST(ReadOnly, AVersion3FileShowsItsCellsWithoutTheNewFigures) {
  ScratchDir dir;
  Sql(dir / "v3.db",
      std::string(internal::MigrationTo(1)) + internal::MigrationTo(2) + internal::MigrationTo(3) +
          "PRAGMA user_version = 3;"
          "INSERT INTO runs(started_at, host, version, git_revision, status) "
          "VALUES (1700000000, 'h', 'v', 'g', 'complete');"
          "INSERT INTO patches VALUES ('fix-1', 1, 'beef', 'cafe', 'k');"
          "INSERT INTO images VALUES ('deb12', '6.1', '[]', 'h1');"
          "INSERT INTO cells(run_id, scenario, patch_id, patch_seq, image, cpu, workload, host, "
          "verdict, apply_result, apply_reason, pause_us, cpu_overhead_pct, cpu_ci_low, "
          "cpu_ci_high, cpu_samples, semantic, duration_ms, artefacts, reasons, recorded_at) "
          "VALUES (1, 'kv', 'fix-1', 1, 'deb12', 'qemu64', 'default', '', 'pass', 'applied', '', "
          "'[]', 0.5, 0.1, 0.9, 3, 'pass', 1, '', '[]', 1700000001);");
  auto db = CompatDb::OpenReadOnly(dir / "v3.db");
  ASSERT_OK(db);
  EXPECT_EQ(db->schema_version(), 3);
  auto cells = db->CellsOfRun(1);
  ASSERT_OK(cells);
  ASSERT_EQ(cells->size(), 1u);
  ASSERT_TRUE((*cells)[0].cpu_overhead_pct.has_value());
  EXPECT_EQ((*cells)[0].cpu_overhead_pct->high, 0.9);
  EXPECT_EQ((*cells)[0].cpu_clock, CpuClock::kUnknown);
  EXPECT_FALSE((*cells)[0].cpu_outcome.has_value());
}

TEST(ReadOnly, AVersion2FileIsReadWithoutMigrating) {
  ScratchDir dir;
  Sql(dir / "v2.db", std::string(internal::MigrationTo(1)) + internal::MigrationTo(2) +
                         "PRAGMA user_version = 2;"
                         "INSERT INTO runs(started_at, host, version, git_revision, status, pid) "
                         "VALUES (1700000000, 'h', 'v', 'g', 'complete', 42);");
  auto db = CompatDb::OpenReadOnly(dir / "v2.db");
  ASSERT_OK(db);
  EXPECT_EQ(db->schema_version(), 2);
  auto runs = db->ListRuns();
  ASSERT_OK(runs);
  ASSERT_EQ(runs->size(), 1u);
  EXPECT_EQ((*runs)[0].pid, 42);
  EXPECT_TRUE((*runs)[0].boot_id.empty());
  db = CompatDb::OpenExisting(dir / "v2.db");  // a writer migrates it
  ASSERT_OK(db);
  EXPECT_EQ(db->schema_version(), kSchemaVersion);
}

}  // namespace
}  // namespace patchlab::metrics
