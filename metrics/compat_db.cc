// CompatDb: opening, migrating and every write. The queries are in compat_db_read.cc.
#include "metrics/compat_db.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <mutex>
#include <nlohmann/json.hpp>

#include "base/file_util.h"
#include "base/log.h"
#include "base/version.h"
#include "metrics/internal/connection.h"
#include "metrics/internal/db_rows.h"
#include "metrics/internal/recorder.h"
#include "metrics/internal/schema.h"

namespace patchlab::metrics {

using internal::Connection;
using internal::Statement;

namespace {

using internal::CheckRecorder;
using internal::RecorderState;

int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

// An estimate in four columns from `first`: value, low, high, samples.
void BindEstimate(internal::Statement& ins, int first, const std::optional<Estimate>& e) {
  if (!e) {
    ins.BindNull(first).BindNull(first + 1).BindNull(first + 2).BindNull(first + 3);
    return;
  }
  ins.Bind(first, e->value).Bind(first + 1, e->low).Bind(first + 2, e->high);
  ins.Bind(first + 3, static_cast<int64_t>(e->samples));
}

// Columns 1..24 of a cell row: what every schema version records.
void BindCellBasics(internal::Statement& ins, const CellResult& cell) {
  std::optional<double> pause_median = cell.pause_median_us;
  if (!pause_median) pause_median = Median(cell.pause_us);
  ins.Bind(1, cell.run_id).Bind(2, cell.key.scenario).Bind(3, cell.key.patch_id);
  ins.Bind(4, static_cast<int64_t>(cell.patch_seq)).Bind(5, cell.key.image).Bind(6, cell.key.cpu);
  ins.Bind(7, cell.key.workload).Bind(8, cell.host).Bind(9, VerdictName(cell.verdict));
  ins.Bind(10, ApplyResultName(cell.apply)).Bind(11, cell.apply_reason);
  ins.Bind(12, nlohmann::json(cell.pause_us).dump()).BindOptional(13, pause_median);
  BindEstimate(ins, 14, cell.cpu_overhead_pct);
  ins.BindOptional(18, cell.mem_overhead_kib).Bind(19, SemanticVerdictName(cell.semantic));
  ins.Bind(20, cell.duration_ms).Bind(21, cell.artefacts);
  ins.Bind(22, nlohmann::json(cell.reasons).dump());
  ins.Bind(23, cell.recorded_at != 0 ? cell.recorded_at : Now());
  if (cell.met_expectation) {
    ins.Bind(24, static_cast<int64_t>(*cell.met_expectation ? 1 : 0));
  } else {
    ins.BindNull(24);
  }
}

// Columns 25..40: the figures of schema 4.
void BindCellFigures(internal::Statement& ins, const CellResult& cell) {
  ins.Bind(25, CpuClockName(cell.cpu_clock));
  if (cell.cpu_overhead_pct && cell.cpu_overhead_pct->coverage > 0) {
    ins.Bind(26, cell.cpu_overhead_pct->coverage);
  } else {
    ins.BindNull(26);
  }
  if (cell.cpu_outcome) {
    ins.Bind(27, OverheadOutcomeName(*cell.cpu_outcome));
  } else {
    ins.BindNull(27);
  }
  ins.BindOptional(28, cell.cpu_limit_pct).BindOptional(29, cell.cpu_scenario_limit_pct);
  nlohmann::json windows = nlohmann::json::array();
  for (const WindowSample& w : cell.cpu_windows) {
    windows.push_back({{"patched", w.patched}, {"cost", w.cost}, {"work", w.work}});
  }
  ins.Bind(30, windows.dump());
  BindEstimate(ins, 31, cell.cpu_reference_pct);
  ins.Bind(35, CpuClockName(cell.cpu_reference_clock));
  if (cell.host_load) {
    ins.Bind(36, cell.host_load->load1).Bind(37, cell.host_load->busy_pct);
    ins.Bind(38, cell.host_load->steal_pct);
  } else {
    ins.BindNull(36).BindNull(37).BindNull(38);
  }
  ins.BindOptional(39, cell.patch_mapped_kib).BindOptional(40, cell.island_kib);
}

}  // namespace

Result<CompatDb> CompatDb::OpenImpl(const std::filesystem::path& path, bool create) {
  if (create && path.has_parent_path()) {
    if (auto s = MakeDirs(path.parent_path()); !s) {
      return std::unexpected(
          std::move(s.error()).AddContext("creating the folder of " + path.string()));
    }
  }
  auto conn = Connection::Open(path, create);
  if (!conn) return std::unexpected(conn.error());
  auto version = internal::MigrateToCurrent(**conn);
  if (!version) return std::unexpected(version.error());
  return CompatDb(path, std::move(*conn), *version);
}

Result<CompatDb> CompatDb::Open(const std::filesystem::path& path) { return OpenImpl(path, true); }

Result<CompatDb> CompatDb::OpenReadOnly(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return Fail(ErrorCode::kNotFound, "{}: no such database (give --db FILE)", path.string());
  }
  auto conn = Connection::OpenReadOnly(path);
  if (!conn) return std::unexpected(conn.error());
  auto version = internal::ReadSchemaVersion(**conn);
  if (!version) return std::unexpected(version.error());
  if (*version > kSchemaVersion) {
    return Fail(ErrorCode::kUnsupported,
                "{}: database schema version {} is newer than this patchlab understands ({}); "
                "use a newer patchlab",
                path.string(), *version, kSchemaVersion);
  }
  if (*version < kMinReadableSchemaVersion) {
    return Fail(ErrorCode::kRefused,
                "{}: database schema version {} is too old to read without migrating it to {}; "
                "open it once for writing (CompatDb::Open, `patchlab run`)",
                path.string(), *version, kSchemaVersion);
  }
  return CompatDb(path, std::move(*conn), *version);
}

Result<CompatDb> CompatDb::OpenExisting(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return Fail(ErrorCode::kNotFound, "{}: no such database (give --db FILE)", path.string());
  }
  return OpenImpl(path, false);
}

CompatDb::CompatDb(std::filesystem::path path, std::unique_ptr<Connection> conn, int version)
    : path_(std::move(path)),
      conn_(std::move(conn)),
      mutex_(std::make_unique<std::mutex>()),
      schema_version_(version) {}
CompatDb::CompatDb(CompatDb&&) noexcept = default;
CompatDb& CompatDb::operator=(CompatDb&&) noexcept = default;
CompatDb::~CompatDb() = default;

Result<int64_t> CompatDb::BeginRun(RunInfo info) {
  if (info.started_at == 0) info.started_at = Now();
  if (info.version.empty()) info.version = Version();
  if (info.git_revision.empty()) info.git_revision = GitDescribe();
  internal::FillRecorder(info);
  (void)MarkAbandonedRuns();  // best effort: a stale "running" run misleads readers
  std::lock_guard lock(*mutex_);
  int64_t id = 0;
  Status s = conn_->Transaction([&]() -> Status {
    auto stmt = conn_->Prepare(
        "INSERT INTO runs(started_at, finished_at, host, version, git_revision, status, label, "
        "args, note, pid, boot_id, pid_ns, pid_start) "
        "VALUES (?, 0, ?, ?, ?, 'running', ?, ?, '', ?, ?, ?, ?)");
    if (!stmt) return std::unexpected(stmt.error());
    stmt->Bind(1, info.started_at)
        .Bind(2, info.host)
        .Bind(3, info.version)
        .Bind(4, info.git_revision);
    stmt->Bind(5, info.label).Bind(6, info.args).Bind(7, static_cast<int64_t>(info.pid));
    stmt->Bind(8, info.boot_id).Bind(9, info.pid_ns).Bind(10, info.pid_start);
    if (auto r = stmt->Run(); !r) return r;
    id = conn_->LastInsertId();
    return {};
  });
  if (!s) return std::unexpected(std::move(s.error()).AddContext("starting a run"));
  return id;
}

Status CompatDb::RecordPatch(const PatchInfo& patch) {
  if (patch.id.empty())
    return Fail(ErrorCode::kInvalidArgument, "{}: a patch needs an id", path_.string());
  std::lock_guard lock(*mutex_);
  return conn_->Transaction([&]() -> Status {
    auto stmt = conn_->Prepare(
        "INSERT INTO patches(id, seq, target_build_id, package_hash, signer) VALUES (?, ?, ?, ?, "
        "?) "
        "ON CONFLICT(id) DO UPDATE SET seq=excluded.seq, target_build_id=excluded.target_build_id, "
        "package_hash=excluded.package_hash, signer=excluded.signer");
    if (!stmt) return std::unexpected(stmt.error());
    stmt->Bind(1, patch.id).Bind(2, static_cast<int64_t>(patch.seq)).Bind(3, patch.target_build_id);
    stmt->Bind(4, patch.package_hash).Bind(5, patch.signer);
    return stmt->Run();
  });
}

Status CompatDb::RecordImage(const ImageInfo& image) {
  if (image.name.empty())
    return Fail(ErrorCode::kInvalidArgument, "{}: an image needs a name", path_.string());
  std::lock_guard lock(*mutex_);
  return conn_->Transaction([&]() -> Status {
    auto stmt = conn_->Prepare(
        "INSERT INTO images(name, kernel_version, packages, content_hash) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(name) DO UPDATE SET kernel_version=excluded.kernel_version, "
        "packages=excluded.packages, content_hash=excluded.content_hash");
    if (!stmt) return std::unexpected(stmt.error());
    stmt->Bind(1, image.name).Bind(2, image.kernel_version);
    stmt->Bind(3, nlohmann::json(image.packages).dump()).Bind(4, image.content_hash);
    return stmt->Run();
  });
}

Status CompatDb::PlanCells(int64_t run, const std::vector<CellKey>& cells) {
  std::lock_guard lock(*mutex_);
  return conn_->Transaction([&]() -> Status {
    if (auto e = internal::RequireRun(*conn_, run); !e) return e;
    auto one = conn_->Prepare(
        "INSERT OR IGNORE INTO planned_cells(run_id, scenario, patch_id, image, cpu, workload) "
        "VALUES (?, ?, ?, ?, ?, ?)");
    if (!one) return std::unexpected(one.error());
    for (const CellKey& k : cells) {
      one->Reset();
      one->Bind(1, run)
          .Bind(2, k.scenario)
          .Bind(3, k.patch_id)
          .Bind(4, k.image)
          .Bind(5, k.cpu)
          .Bind(6, k.workload);
      if (auto r = one->Run(); !r) return r;
    }
    return {};
  });
}

Status CompatDb::RecordCell(const CellResult& cell) {
  std::lock_guard lock(*mutex_);
  Status s = conn_->Transaction([&]() -> Status {
    if (auto e = internal::RequireRun(*conn_, cell.run_id); !e) return e;
    if (auto e = internal::RequireRow(*conn_, "patches", "id", cell.key.patch_id, "patch"); !e)
      return e;
    if (auto e = internal::RequireRow(*conn_, "images", "name", cell.key.image, "image"); !e)
      return e;
    // Replacing deletes the old row so its crash rows go with it (ON DELETE CASCADE).
    auto del = conn_->Prepare(
        "DELETE FROM cells WHERE run_id=? AND scenario=? AND patch_id=? AND image=? AND cpu=? AND "
        "workload=?");
    if (!del) return std::unexpected(del.error());
    del->Bind(1, cell.run_id)
        .Bind(2, cell.key.scenario)
        .Bind(3, cell.key.patch_id)
        .Bind(4, cell.key.image);
    del->Bind(5, cell.key.cpu).Bind(6, cell.key.workload);
    if (auto r = del->Run(); !r) return r;

    auto ins = conn_->Prepare(
        "INSERT INTO cells(run_id, scenario, patch_id, patch_seq, image, cpu, workload, host, "
        "verdict, apply_result, apply_reason, pause_us, pause_median_us, cpu_overhead_pct, "
        "cpu_ci_low, cpu_ci_high, cpu_samples, mem_overhead_kib, semantic, duration_ms, "
        "artefacts, reasons, recorded_at, met_expectation, cpu_clock, cpu_coverage, cpu_outcome, "
        "cpu_limit_pct, cpu_scenario_limit_pct, cpu_windows, cpu_ref_pct, cpu_ref_low, "
        "cpu_ref_high, cpu_ref_samples, cpu_ref_clock, host_load1, host_busy_pct, host_steal_pct, "
        "patch_mapped_kib, island_kib, application) "
        "VALUES "
        "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
    if (!ins) return std::unexpected(ins.error());
    BindCellBasics(*ins, cell);
    BindCellFigures(*ins, cell);
    ins->Bind(41, cell.application);
    if (auto r = ins->Run(); !r) return r;
    int64_t cell_id = conn_->LastInsertId();

    for (const auto& [kind, count] : cell.crashes) {
      if (count <= 0) continue;
      auto c = conn_->Prepare("INSERT INTO cell_crashes(cell_id, kind, count) VALUES (?, ?, ?)");
      if (!c) return std::unexpected(c.error());
      c->Bind(1, cell_id).Bind(2, CrashKindName(kind)).Bind(3, static_cast<int64_t>(count));
      if (auto r = c->Run(); !r) return r;
    }
    return {};
  });
  if (!s)
    return std::unexpected(
        std::move(s.error()).AddContext("recording cell " + cell.key.ToString()));
  return {};
}

Status CompatDb::RecordFindings(int64_t run, const std::vector<SemanticFinding>& findings) {
  std::lock_guard lock(*mutex_);
  return conn_->Transaction([&]() -> Status {
    if (auto e = internal::RequireRun(*conn_, run); !e) return e;
    for (const SemanticFinding& f : findings) {
      if (auto e = internal::RequireRow(*conn_, "patches", "id", f.patch_id, "patch"); !e) return e;
      auto stmt = conn_->Prepare(
          "INSERT INTO findings(run_id, scenario, patch_id, function, kind, input, old_result, "
          "new_result, "
          "expected, detail) VALUES (?,?,?,?,?,?,?,?,?,?)");
      if (!stmt) return std::unexpected(stmt.error());
      stmt->Bind(1, run)
          .Bind(2, f.scenario)
          .Bind(3, f.patch_id)
          .Bind(4, f.function)
          .Bind(5, f.kind);
      stmt->Bind(6, f.input).Bind(7, f.old_result).Bind(8, f.new_result);
      stmt->Bind(9, static_cast<int64_t>(f.expected ? 1 : 0)).Bind(10, f.detail);
      if (auto r = stmt->Run(); !r) return r;
    }
    return {};
  });
}

Status CompatDb::FinishRun(int64_t run, RunStatus status, std::string_view note) {
  if (status == RunStatus::kRunning) {
    return Fail(ErrorCode::kInvalidArgument, "{}: a run cannot finish as 'running'",
                path_.string());
  }
  std::lock_guard lock(*mutex_);
  return conn_->Transaction([&]() -> Status {
    if (auto e = internal::RequireRun(*conn_, run); !e) return e;
    auto stmt = conn_->Prepare("UPDATE runs SET status=?, finished_at=?, note=? WHERE id=?");
    if (!stmt) return std::unexpected(stmt.error());
    stmt->Bind(1, RunStatusName(status)).Bind(2, Now()).Bind(3, note).Bind(4, run);
    return stmt->Run();
  });
}

Status CompatDb::MarkIncomplete(int64_t run, std::string_view why) {
  return FinishRun(run, RunStatus::kIncomplete, why);
}

Result<int> CompatDb::MarkAbandonedRuns() {
  std::lock_guard lock(*mutex_);
  int marked = 0;
  Status s = conn_->Transaction([&]() -> Status {
    marked = 0;
    auto stmt = conn_->Prepare(fmt::format("SELECT {} FROM runs WHERE status='running'",
                                           internal::RunColumns(schema_version_)));
    if (!stmt) return std::unexpected(stmt.error());
    std::vector<std::pair<int64_t, std::string>> gone;
    for (;;) {
      auto row = stmt->Step();
      if (!row) return std::unexpected(row.error());
      if (!*row) break;
      auto run = internal::ReadRun(*stmt, path_);
      if (!run) return std::unexpected(run.error());
      auto check = CheckRecorder(*run);
      if (check.state == RecorderState::kGone) gone.emplace_back(run->id, check.why);
    }
    for (const auto& [id, why] : gone) {
      auto up = conn_->Prepare(
          "UPDATE runs SET status='incomplete', note=? WHERE id=? AND status='running'");
      if (!up) return std::unexpected(up.error());
      up->Bind(1, why).Bind(2, id);
      if (auto r = up->Run(); !r) return r;
      ++marked;
    }
    return {};
  });
  if (!s) return std::unexpected(s.error());
  if (marked > 0)
    Log("metrics")->info("{}: marked {} abandoned run(s) incomplete", path_.string(), marked);
  return marked;
}

Status CompatDb::ResumeRun(int64_t run) {
  (void)MarkAbandonedRuns();
  std::lock_guard lock(*mutex_);
  return conn_->Transaction([&]() -> Status {
    auto stmt = conn_->Prepare(
        fmt::format("SELECT {} FROM runs WHERE id=?", internal::RunColumns(schema_version_)));
    if (!stmt) return std::unexpected(stmt.error());
    stmt->Bind(1, run);
    auto row = stmt->Step();
    if (!row) return std::unexpected(row.error());
    if (!*row) return Fail(ErrorCode::kNotFound, "{}: no run {}", path_.string(), run);
    auto info = internal::ReadRun(*stmt, path_);
    if (!info) return std::unexpected(info.error());
    if (info->status == RunStatus::kComplete) {
      return Fail(ErrorCode::kInvalidArgument, "{}: run {} is complete; nothing to resume",
                  path_.string(), run);
    }
    if (info->status == RunStatus::kRunning) {
      // MarkAbandonedRuns() left it running: its recorder is alive, or on a
      // host (or in a pid namespace) this process cannot see.
      return Fail(ErrorCode::kInvalidArgument, "{}: run {} is still being recorded: {}",
                  path_.string(), run, CheckRecorder(*info).why);
    }
    RunInfo self;
    internal::FillRecorder(self);
    auto up = conn_->Prepare(
        "UPDATE runs SET status='running', pid=?, host=?, boot_id=?, pid_ns=?, pid_start=?, "
        "note='', finished_at=0 WHERE id=?");
    if (!up) return std::unexpected(up.error());
    up->Bind(1, static_cast<int64_t>(self.pid)).Bind(2, self.host).Bind(3, self.boot_id);
    up->Bind(4, self.pid_ns).Bind(5, self.pid_start).Bind(6, run);
    return up->Run();
  });
}

Status CompatDb::SetRunLabel(int64_t run, std::string_view label) {
  std::lock_guard lock(*mutex_);
  return conn_->Transaction([&]() -> Status {
    if (auto e = internal::RequireRun(*conn_, run); !e) return e;
    auto stmt = conn_->Prepare("UPDATE runs SET label=? WHERE id=?");
    if (!stmt) return std::unexpected(stmt.error());
    stmt->Bind(1, label).Bind(2, run);
    return stmt->Run();
  });
}

Result<std::string> CompatDb::IntegrityCheck() {
  std::lock_guard lock(*mutex_);
  auto stmt = conn_->Prepare("PRAGMA integrity_check");
  if (!stmt) return std::unexpected(stmt.error());
  std::string out;
  for (;;) {
    auto row = stmt->Step();
    if (!row) return std::unexpected(row.error());
    if (!*row) break;
    out += (out.empty() ? "" : "\n") + stmt->Text(0);
  }
  return out;
}

}  // namespace patchlab::metrics
