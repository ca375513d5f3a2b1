// Row helpers shared by the database's writers and readers. Private to metrics/.
#pragma once

#include <string>
#include <string_view>

#include "base/error.h"
#include "metrics/cell_result.h"
#include "metrics/internal/connection.h"

namespace patchlab::metrics::internal {

// Fails (kNotFound) naming the file unless run `run` exists.
Status RequireRun(Connection& conn, int64_t run);
// Fails (kNotFound) unless `table` has a row with `column` = `value`; `what`
// names it in the message ("patch", "image") with a hint of what to record first.
Status RequireRow(Connection& conn, std::string_view table, std::string_view column,
                  std::string_view value, std::string_view what);

// The SELECT column list that ReadCell reads, over `cells c`, for a file of
// schema `version` (columns a version lacks read as NULL or '').
std::string CellColumns(int version);
// Turns a row selected with kCellColumns into a CellResult; fails (kParse)
// naming the cell on a stored value this build does not know.
Result<CellResult> ReadCell(const Statement& stmt, const std::filesystem::path& file);

// The SELECT column list that ReadRun reads, over `runs`, for a file of schema
// `version` (columns a version lacks read as their defaults).
std::string RunColumns(int version);
Result<RunInfo> ReadRun(const Statement& stmt, const std::filesystem::path& file);

}  // namespace patchlab::metrics::internal
