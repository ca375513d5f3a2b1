#include "metrics/internal/connection.h"

#include <cerrno>
#include <chrono>
#include <thread>

#include "base/log.h"

namespace patchlab::metrics::internal {
namespace {

// A lab run records a cell every few seconds at most, so waiting long for a
// competing writer costs nothing, while giving up would lose a measurement.
constexpr int kBusyTimeoutMs = 5000;
constexpr int kMaxTransactionAttempts = 12;

ErrorCode CodeFor(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return ErrorCode::kTimeout;
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
      return ErrorCode::kParse;
    case SQLITE_CONSTRAINT:
      return ErrorCode::kInvalidArgument;
    default:
      return ErrorCode::kIo;
  }
}

int ErrnoFor(int rc) {
  switch (rc & 0xff) {
    case SQLITE_FULL:
      return ENOSPC;
    case SQLITE_READONLY:
      return EROFS;
    case SQLITE_PERM:
      return EACCES;
    default:
      return 0;
  }
}

}  // namespace

Statement::Statement(Statement&& other) noexcept
    : conn_(other.conn_), stmt_(std::exchange(other.stmt_, nullptr)) {}

Statement::~Statement() {
  if (stmt_ != nullptr) sqlite3_finalize(stmt_);
}

Statement& Statement::Bind(int index, int64_t value) {
  sqlite3_bind_int64(stmt_, index, value);
  return *this;
}
Statement& Statement::Bind(int index, double value) {
  sqlite3_bind_double(stmt_, index, value);
  return *this;
}
Statement& Statement::Bind(int index, std::string_view value) {
  sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
  return *this;
}
Statement& Statement::BindNull(int index) {
  sqlite3_bind_null(stmt_, index);
  return *this;
}

void Statement::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

Result<bool> Statement::Step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return std::unexpected(conn_->LastError(sqlite3_sql(stmt_), rc));
}

Status Statement::Run() {
  for (;;) {
    auto row = Step();
    if (!row) return std::unexpected(row.error());
    if (!*row) return {};
  }
}

int64_t Statement::Int(int column) const { return sqlite3_column_int64(stmt_, column); }
double Statement::Double(int column) const { return sqlite3_column_double(stmt_, column); }
std::string Statement::Text(int column) const {
  const unsigned char* text = sqlite3_column_text(stmt_, column);
  if (text == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(text), sqlite3_column_bytes(stmt_, column));
}
bool Statement::IsNull(int column) const {
  return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}
std::optional<double> Statement::OptDouble(int column) const {
  if (IsNull(column)) return std::nullopt;
  return Double(column);
}
std::optional<int64_t> Statement::OptInt(int column) const {
  if (IsNull(column)) return std::nullopt;
  return Int(column);
}

Result<std::unique_ptr<Connection>> Connection::Open(const std::filesystem::path& path,
                                                     bool create) {
  sqlite3* db = nullptr;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    int sys_errno = db != nullptr ? sqlite3_system_errno(db) : 0;
    sqlite3_close_v2(db);
    return std::unexpected(
        Error(CodeFor(rc), fmt::format("{}: cannot open database: {}", path.string(), message),
              sys_errno));
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  std::unique_ptr<Connection> conn(new Connection(path, db));
  // journal_mode=WAL needs the write lock once per file; a concurrent opener may
  // hold it, so this goes through the same retry as every other write.
  for (int attempt = 0;; ++attempt) {
    auto s =
        conn->Exec("PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON; PRAGMA synchronous=FULL;");
    if (s) break;
    if (s.error().code() != ErrorCode::kTimeout || attempt + 1 >= kMaxTransactionAttempts) {
      return std::unexpected(s.error());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20 << std::min(attempt, 5)));
  }
  return conn;
}

Connection::~Connection() { sqlite3_close_v2(db_); }

Result<Statement> Connection::Prepare(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
  if (rc != SQLITE_OK) return std::unexpected(LastError(sql, rc));
  return Statement(this, stmt);
}

Status Connection::Exec(std::string_view sql) {
  char* message = nullptr;
  std::string text(sql);
  int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &message);
  if (rc != SQLITE_OK) {
    std::string what = message != nullptr ? message : sqlite3_errstr(rc);
    sqlite3_free(message);
    return std::unexpected(
        Error(CodeFor(rc), fmt::format("{}: {}", path_.string(), what), ErrnoFor(rc)));
  }
  return {};
}

Status Connection::Transaction(const std::function<Status()>& body) {
  for (int attempt = 0;; ++attempt) {
    Status status = Exec("BEGIN IMMEDIATE");
    if (status) {
      status = body();
      if (status) status = Exec("COMMIT");
      if (!status && !sqlite3_get_autocommit(db_)) {
        // The rollback's own failure adds nothing: the first error is the story.
        (void)Exec("ROLLBACK");
      }
    }
    if (status) return {};
    if (status.error().code() != ErrorCode::kTimeout || attempt + 1 >= kMaxTransactionAttempts) {
      return status;
    }
    Log("metrics")->debug("{}: database busy, retrying (attempt {})", path_.string(), attempt + 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(10 << std::min(attempt, 6)));
  }
}

int64_t Connection::LastInsertId() const { return sqlite3_last_insert_rowid(db_); }

Error Connection::LastError(std::string_view what, int rc) const {
  std::string where(what.substr(0, 60));
  for (char& c : where) {
    if (c == '\n') c = ' ';
  }
  return Error(CodeFor(rc),
               fmt::format("{}: {} (in '{}')", path_.string(), sqlite3_errmsg(db_), where),
               ErrnoFor(rc));
}

}  // namespace patchlab::metrics::internal
