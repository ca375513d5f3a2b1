// CompatDb: the queries (gate, reports, `patchlab compat|runs|history`).
#include <mutex>
#include <nlohmann/json.hpp>

#include "metrics/compat_db.h"
#include "metrics/internal/connection.h"
#include "metrics/internal/db_rows.h"
#include "metrics/internal/recorder.h"

namespace patchlab::metrics {

using internal::Statement;

namespace {

// Steps `stmt` to the end, calling `on_row` for each row; stops at its first error.
template <typename F>
Status ForEachRow(Statement& stmt, F&& on_row) {
  for (;;) {
    auto row = stmt.Step();
    if (!row) return std::unexpected(row.error());
    if (!*row) return {};
    if (auto s = on_row(); !s) return s;
  }
}

Result<std::vector<CellResult>> ReadCells(Statement& stmt, const std::filesystem::path& file) {
  std::vector<CellResult> out;
  Status s = ForEachRow(stmt, [&]() -> Status {
    auto cell = internal::ReadCell(stmt, file);
    if (!cell) return std::unexpected(cell.error());
    out.push_back(std::move(*cell));
    return {};
  });
  if (!s) return std::unexpected(s.error());
  return out;
}

// A run whose recorder is gone reads as incomplete, with the reason, even
// before a writer records that (a reader may not be able to write: read-only
// media), so `patchlab runs` never shows a dead run as running.
Result<std::vector<RunInfo>> ReadRuns(Statement& stmt, const std::filesystem::path& file) {
  std::vector<RunInfo> out;
  Status s = ForEachRow(stmt, [&]() -> Status {
    auto run = internal::ReadRun(stmt, file);
    if (!run) return std::unexpected(run.error());
    if (run->status == RunStatus::kRunning) {
      internal::RecorderCheck check = internal::CheckRecorder(*run);
      if (check.state == internal::RecorderState::kGone) {
        run->status = RunStatus::kIncomplete;
        run->note = check.why;
      }
    }
    out.push_back(std::move(*run));
    return {};
  });
  if (!s) return std::unexpected(s.error());
  return out;
}

constexpr const char* kKeyOrder = " ORDER BY c.scenario, c.patch_id, c.image, c.cpu, c.workload";

}  // namespace

Result<RunInfo> CompatDb::GetRun(int64_t run) {
  std::lock_guard lock(*mutex_);
  auto stmt = conn_->Prepare(
      fmt::format("SELECT {} FROM runs WHERE id=?", internal::RunColumns(schema_version_)));
  if (!stmt) return std::unexpected(stmt.error());
  stmt->Bind(1, run);
  auto runs = ReadRuns(*stmt, path_);
  if (!runs) return std::unexpected(runs.error());
  if (runs->empty()) return Fail(ErrorCode::kNotFound, "{}: no run {}", path_.string(), run);
  return std::move(runs->front());
}

Result<std::vector<RunInfo>> CompatDb::ListRuns(const RunFilter& filter) {
  std::lock_guard lock(*mutex_);
  std::string sql =
      fmt::format("SELECT {} FROM runs WHERE (?1 = '' OR label = ?1) ORDER BY id DESC",
                  internal::RunColumns(schema_version_));
  if (filter.limit > 0) sql += fmt::format(" LIMIT {}", filter.limit);
  auto stmt = conn_->Prepare(sql);
  if (!stmt) return std::unexpected(stmt.error());
  stmt->Bind(1, filter.label);
  return ReadRuns(*stmt, path_);
}

Result<std::optional<RunInfo>> CompatDb::LatestRun(std::string_view label, int64_t before) {
  std::lock_guard lock(*mutex_);
  auto stmt =
      conn_->Prepare(fmt::format("SELECT {} FROM runs WHERE (?1 = '' OR label = ?1) AND (?2 = 0 OR "
                                 "id < ?2) ORDER BY id DESC LIMIT 1",
                                 internal::RunColumns(schema_version_)));
  if (!stmt) return std::unexpected(stmt.error());
  stmt->Bind(1, label).Bind(2, before);
  auto runs = ReadRuns(*stmt, path_);
  if (!runs) return std::unexpected(runs.error());
  if (runs->empty()) return std::optional<RunInfo>();
  return std::optional<RunInfo>(std::move(runs->front()));
}

Result<std::vector<PatchInfo>> CompatDb::ListPatches() {
  std::lock_guard lock(*mutex_);
  auto stmt = conn_->Prepare(
      "SELECT id, seq, target_build_id, package_hash, signer FROM patches ORDER BY id");
  if (!stmt) return std::unexpected(stmt.error());
  std::vector<PatchInfo> out;
  Status s = ForEachRow(*stmt, [&]() -> Status {
    out.push_back(PatchInfo{stmt->Text(0), static_cast<int>(stmt->Int(1)), stmt->Text(2),
                            stmt->Text(3), stmt->Text(4)});
    return {};
  });
  if (!s) return std::unexpected(s.error());
  return out;
}

Result<std::optional<PatchInfo>> CompatDb::GetPatch(const std::string& id) {
  auto all = ListPatches();
  if (!all) return std::unexpected(all.error());
  for (auto& p : *all) {
    if (p.id == id) return std::optional<PatchInfo>(std::move(p));
  }
  return std::optional<PatchInfo>();
}

Result<std::vector<ImageInfo>> CompatDb::ListImages() {
  std::lock_guard lock(*mutex_);
  auto stmt = conn_->Prepare(
      "SELECT name, kernel_version, packages, content_hash FROM images ORDER BY name");
  if (!stmt) return std::unexpected(stmt.error());
  std::vector<ImageInfo> out;
  Status s = ForEachRow(*stmt, [&]() -> Status {
    ImageInfo image{stmt->Text(0), stmt->Text(1), {}, stmt->Text(3)};
    auto packages = nlohmann::json::parse(stmt->Text(2), nullptr, false);
    if (packages.is_array()) {
      for (const auto& p : packages) {
        if (p.is_string()) image.packages.push_back(p.get<std::string>());
      }
    }
    out.push_back(std::move(image));
    return {};
  });
  if (!s) return std::unexpected(s.error());
  return out;
}

Result<std::optional<ImageInfo>> CompatDb::GetImage(const std::string& name) {
  auto all = ListImages();
  if (!all) return std::unexpected(all.error());
  for (auto& i : *all) {
    if (i.name == name) return std::optional<ImageInfo>(std::move(i));
  }
  return std::optional<ImageInfo>();
}

Result<std::vector<CellResult>> CompatDb::CellsOfRun(int64_t run) {
  std::lock_guard lock(*mutex_);
  auto stmt = conn_->Prepare(fmt::format("SELECT {} FROM cells c WHERE c.run_id=?{}",
                                         internal::CellColumns(schema_version_), kKeyOrder));
  if (!stmt) return std::unexpected(stmt.error());
  stmt->Bind(1, run);
  return ReadCells(*stmt, path_);
}

Result<std::vector<CellResult>> CompatDb::LatestCellsOfPatch(const std::string& patch_id) {
  std::vector<CellResult> all;
  {
    std::lock_guard lock(*mutex_);
    auto stmt =
        conn_->Prepare(fmt::format("SELECT {} FROM cells c WHERE c.patch_id=?{}, c.run_id DESC",
                                   internal::CellColumns(schema_version_), kKeyOrder));
    if (!stmt) return std::unexpected(stmt.error());
    stmt->Bind(1, patch_id);
    auto cells = ReadCells(*stmt, path_);
    if (!cells) return std::unexpected(cells.error());
    all = std::move(*cells);
  }
  // Newest first within a key. An infra error says nothing about the patch, so
  // it stands only when the cell has no real measurement at all.
  std::vector<CellResult> out;
  for (size_t i = 0; i < all.size();) {
    size_t j = i;
    while (j < all.size() && all[j].key == all[i].key) ++j;
    size_t pick = i;
    for (size_t k = i; k < j; ++k) {
      if (all[k].verdict != Verdict::kInfraError) {
        pick = k;
        break;
      }
    }
    out.push_back(std::move(all[pick]));
    i = j;
  }
  return out;
}

Result<std::vector<CellKey>> CompatDb::PlannedCellsOfPatch(const std::string& patch_id) {
  std::lock_guard lock(*mutex_);
  auto stmt = conn_->Prepare(
      "SELECT DISTINCT p.scenario, p.patch_id, p.image, p.cpu, p.workload FROM planned_cells p "
      "WHERE p.patch_id=?1 AND p.run_id = (SELECT MAX(q.run_id) FROM planned_cells q "
      "WHERE q.patch_id=?1 AND q.scenario=p.scenario) "
      "ORDER BY p.scenario, p.patch_id, p.image, p.cpu, p.workload");
  if (!stmt) return std::unexpected(stmt.error());
  stmt->Bind(1, patch_id);
  std::vector<CellKey> out;
  Status s = ForEachRow(*stmt, [&]() -> Status {
    out.push_back(
        CellKey{stmt->Text(0), stmt->Text(1), stmt->Text(2), stmt->Text(3), stmt->Text(4)});
    return {};
  });
  if (!s) return std::unexpected(s.error());
  return out;
}

Result<std::vector<CellKey>> CompatDb::MissingCells(int64_t run) {
  std::lock_guard lock(*mutex_);
  if (auto e = internal::RequireRun(*conn_, run); !e) return std::unexpected(e.error());
  auto stmt = conn_->Prepare(
      "SELECT p.scenario, p.patch_id, p.image, p.cpu, p.workload FROM planned_cells p WHERE "
      "p.run_id=?1 AND "
      "NOT EXISTS (SELECT 1 FROM cells c WHERE c.run_id=?1 AND c.scenario=p.scenario AND "
      "c.patch_id=p.patch_id "
      "AND c.image=p.image AND c.cpu=p.cpu AND c.workload=p.workload) "
      "ORDER BY p.scenario, p.patch_id, p.image, p.cpu, p.workload");
  if (!stmt) return std::unexpected(stmt.error());
  stmt->Bind(1, run);
  std::vector<CellKey> out;
  Status s = ForEachRow(*stmt, [&]() -> Status {
    out.push_back(
        CellKey{stmt->Text(0), stmt->Text(1), stmt->Text(2), stmt->Text(3), stmt->Text(4)});
    return {};
  });
  if (!s) return std::unexpected(s.error());
  return out;
}

Result<std::vector<CellResult>> CompatDb::History(const std::string& image,
                                                  const std::string& patch_id) {
  std::lock_guard lock(*mutex_);
  auto stmt = conn_->Prepare(
      fmt::format("SELECT {} FROM cells c WHERE c.image=?1 AND (?2 = '' OR c.patch_id=?2) "
                  "ORDER BY c.run_id, c.scenario, c.patch_id, c.cpu, c.workload",
                  internal::CellColumns(schema_version_)));
  if (!stmt) return std::unexpected(stmt.error());
  stmt->Bind(1, image).Bind(2, patch_id);
  return ReadCells(*stmt, path_);
}

Result<std::vector<SemanticFinding>> CompatDb::Findings(int64_t run, const std::string& patch_id) {
  std::lock_guard lock(*mutex_);
  auto stmt = conn_->Prepare(
      "SELECT run_id, scenario, patch_id, function, kind, input, old_result, new_result, expected, "
      "detail "
      "FROM findings WHERE (?1 = 0 OR run_id=?1) AND (?2 = '' OR patch_id=?2) ORDER BY run_id, id");
  if (!stmt) return std::unexpected(stmt.error());
  stmt->Bind(1, run).Bind(2, patch_id);
  std::vector<SemanticFinding> out;
  Status s = ForEachRow(*stmt, [&]() -> Status {
    out.push_back(SemanticFinding{stmt->Int(0), stmt->Text(1), stmt->Text(2), stmt->Text(3),
                                  stmt->Text(4), stmt->Text(5), stmt->Text(6), stmt->Text(7),
                                  stmt->Int(8) != 0, stmt->Text(9)});
    return {};
  });
  if (!s) return std::unexpected(s.error());
  return out;
}

}  // namespace patchlab::metrics
