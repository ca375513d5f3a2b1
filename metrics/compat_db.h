// CompatDb: the compatibility database, one SQLite file (default ./patchlab.db).
//
// Every figure the lab gathers lands here: runs, patches, images, the results of
// each matrix cell and the semantic findings. The gate, the reports and the
// nightly regression check read it back.
//
// Durability: WAL journal, synchronous=FULL (a committed cell survives a power
// cut), foreign keys on. Every write is one IMMEDIATE transaction; a busy database (another
// lab process writing) is waited for (busy timeout) and retried, so two lab runs
// writing at once both land. A process killed between two RecordCell calls leaves
// every recorded cell intact; its run stays "running" until MarkAbandonedRuns()
// (or the next BeginRun/ResumeRun on that host) finds its pid gone and marks it
// "incomplete". A failed write (full disk, read-only file) returns an error naming
// the file and leaves the database as it was before that call.
//
// Schema: PRAGMA user_version holds the schema version. Open() applies forward
// migrations in one transaction each; a file newer than this build is refused.
//
// Thread-safety: a CompatDb may be shared between threads (calls are serialized
// by an internal mutex). Any number of CompatDb objects, in any number of
// processes, may open the same file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "metrics/cell_result.h"

namespace patchlab::metrics {

namespace internal {
class Connection;
}

inline constexpr int kSchemaVersion = 4;
// The oldest schema OpenReadOnly() can read (it cannot migrate).
inline constexpr int kMinReadableSchemaVersion = 2;
inline constexpr const char* kDefaultDbFile = "patchlab.db";

struct RunFilter {
  std::string label;  // empty: any
  int limit = 0;      // 0: all, newest first
};

class CompatDb {
 public:
  // Opens `path`, creating it (and the schema) when absent, migrating an older
  // schema forward. Fails naming the file on: a directory that cannot be created,
  // a file that is not SQLite, a schema newer than kSchemaVersion, an I/O error.
  static Result<CompatDb> Open(const std::filesystem::path& path);
  // As Open(), but fails (kNotFound, naming the file) when the file does not exist,
  // so that a query on a mistyped --db does not create an empty database.
  static Result<CompatDb> OpenExisting(const std::filesystem::path& path);
  // Opens an existing file for the queries only (gate, reports, compat, runs,
  // history, regressions): nothing is written, not even the schema, so a file
  // on read-only media or in a read-only folder can be read. Fails naming the
  // file when it is absent (kNotFound), newer than kSchemaVersion (kUnsupported)
  // or older than kMinReadableSchemaVersion (kRefused: migrate it first), or when a WAL file's -shm
  // cannot be created beside it while its -wal holds writes the main file lacks (kUnsupported:
  // reading it would show a stale database). Every write on the object fails (kUnsupported).
  static Result<CompatDb> OpenReadOnly(const std::filesystem::path& path);

  CompatDb(CompatDb&&) noexcept;
  CompatDb& operator=(CompatDb&&) noexcept;
  ~CompatDb();

  const std::filesystem::path& path() const { return path_; }
  // The schema version of the file as opened (kSchemaVersion after Open()).
  int schema_version() const { return schema_version_; }

  // ---- Writing (the lab runner) ----

  // Starts a run; returns its id. Fills in started_at, host, version,
  // git_revision and pid when they are empty; status becomes running.
  Result<int64_t> BeginRun(RunInfo info);
  // Adds or updates a patch (by id) / an image (by name).
  Status RecordPatch(const PatchInfo& patch);
  Status RecordImage(const ImageInfo& image);
  // Declares the cells `run` means to fill (idempotent; adds to earlier plans).
  // MissingCells() and the gate's "not enough data" read this plan.
  Status PlanCells(int64_t run, const std::vector<CellKey>& cells);
  // Records one cell's figures in one transaction. A cell already recorded in the
  // same run under the same key is replaced (a resumed run re-measuring it).
  // REQUIRES: the run exists; the patch and image were recorded (else kNotFound).
  // pause_median_us is computed from pause_us when unset.
  Status RecordCell(const CellResult& cell);
  // Records the semantic findings of a patch in a run (one transaction).
  Status RecordFindings(int64_t run, const std::vector<SemanticFinding>& findings);
  // Ends a run: status complete, incomplete or failed, with an optional note.
  Status FinishRun(int64_t run, RunStatus status, std::string_view note = "");
  // Same as FinishRun(run, kIncomplete, why), for a run interrupted on purpose.
  Status MarkIncomplete(int64_t run, std::string_view why);
  // Marks "running" runs whose recorder is gone as incomplete, with the reason
  // as the note ("recording process N on HOST vanished: ..."). The recorder is
  // gone when this host has rebooted since, or when no process with its pid and
  // start time runs here any more; a run recorded on another host or in another
  // pid namespace is left alone (cannot tell). Returns how many were marked.
  // Readers (ListRuns, GetRun, LatestRun) already show such runs as incomplete.
  Result<int> MarkAbandonedRuns();
  // The planned cells of `run` that have no recorded result yet, in key order.
  Result<std::vector<CellKey>> MissingCells(int64_t run);
  // Re-opens an incomplete (or abandoned) run for `patchlab run --resume`:
  // status running, recorder the caller. Fails (kInvalidArgument) on a complete
  // run, one still being recorded by a live process, or one recorded on another
  // host whose recorder cannot be checked from here (the message says which).
  Status ResumeRun(int64_t run);
  Status SetRunLabel(int64_t run, std::string_view label);

  // ---- Reading (gate, reports, queries) ----

  Result<RunInfo> GetRun(int64_t run);  // kNotFound when absent
  Result<std::vector<RunInfo>> ListRuns(const RunFilter& filter = {});
  // The newest run (highest id) with `label` (empty: any) and an id below
  // `before` (0: no bound), or nullopt.
  Result<std::optional<RunInfo>> LatestRun(std::string_view label = "", int64_t before = 0);
  Result<std::optional<PatchInfo>> GetPatch(const std::string& id);
  Result<std::vector<PatchInfo>> ListPatches();
  Result<std::optional<ImageInfo>> GetImage(const std::string& name);
  Result<std::vector<ImageInfo>> ListImages();

  // Every cell recorded in `run`, in key order.
  Result<std::vector<CellResult>> CellsOfRun(int64_t run);
  // For a patch: the newest result of every cell key ever recorded for it
  // (across runs), in key order. This is what the gate judges.
  Result<std::vector<CellResult>> LatestCellsOfPatch(const std::string& patch_id);
  // The matrix the patch is meant to cover: for each scenario, the cells planned
  // for the patch by the newest run that planned that scenario (a scenario whose
  // matrix shrank does not keep demanding its old cells).
  Result<std::vector<CellKey>> PlannedCellsOfPatch(const std::string& patch_id);
  // Every result recorded on `image` (optionally of one patch), oldest first.
  Result<std::vector<CellResult>> History(const std::string& image,
                                          const std::string& patch_id = "");
  // Findings of a run (patch_id empty: of every patch), or of a patch across runs (run 0).
  Result<std::vector<SemanticFinding>> Findings(int64_t run, const std::string& patch_id = "");

  // PRAGMA integrity_check; returns "ok" or the problems it lists.
  Result<std::string> IntegrityCheck();

 private:
  CompatDb(std::filesystem::path path, std::unique_ptr<internal::Connection> conn, int version);
  static Result<CompatDb> OpenImpl(const std::filesystem::path& path, bool create);

  std::filesystem::path path_;
  std::unique_ptr<internal::Connection> conn_;
  std::unique_ptr<std::mutex> mutex_;  // a pointer so that CompatDb stays movable
  int schema_version_ = 0;
};

}  // namespace patchlab::metrics
