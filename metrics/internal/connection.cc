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
    : conn_(other.conn_),
      stmt_(std::exchange(other.stmt_, nullptr)),
      in_use_(std::exchange(other.in_use_, nullptr)) {}

Statement::~Statement() {
  if (stmt_ == nullptr) return;
  if (in_use_ == nullptr) {
    sqlite3_finalize(stmt_);
    return;
  }
  // Back to the cache: no open read cursor, no bound value kept alive.
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  *in_use_ = false;
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

namespace {

// sqlite3_open_v2 with the lab's connection settings; fails naming the file.
Result<sqlite3*> OpenHandle(const std::filesystem::path& path, const std::string& name, int flags) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(name.c_str(), &db, flags, nullptr);
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
  return db;
}

// A "file:" URI for `path` with `query`: '%', '?' and '#' in the path escaped.
std::string FileUri(const std::filesystem::path& path, std::string_view query) {
  std::string uri = "file:";
  for (char c : std::filesystem::absolute(path).string()) {
    if (c == '%' || c == '?' || c == '#') {
      uri += fmt::format("%{:02X}", static_cast<unsigned char>(c));
    } else {
      uri += c;
    }
  }
  return uri + "?" + std::string(query);
}

}  // namespace

Result<std::unique_ptr<Connection>> Connection::Open(const std::filesystem::path& path,
                                                     bool create) {
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
  auto db = OpenHandle(path, path.string(), flags);
  if (!db) return std::unexpected(db.error());
  std::unique_ptr<Connection> conn(new Connection(path, *db));
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

Result<std::unique_ptr<Connection>> Connection::OpenReadOnly(const std::filesystem::path& path) {
  constexpr int kFlags = SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI;
  auto db = OpenHandle(path, FileUri(path, "mode=ro"), kFlags);
  if (!db) return std::unexpected(db.error());
  std::unique_ptr<Connection> conn(new Connection(path, *db));
  conn->read_only_ = true;
  // SQLite opens a WAL file's -wal and -shm lazily: the first read tells
  // whether this folder lets it. query_only is a second lock on the door.
  auto probe = conn->Exec("PRAGMA query_only=ON; SELECT count(*) FROM sqlite_master;");
  if (probe) return conn;
  int rc = sqlite3_extended_errcode(conn->db_);
  bool no_shm = (rc & 0xff) == SQLITE_CANTOPEN || rc == SQLITE_READONLY_CANTINIT ||
                rc == SQLITE_READONLY_CANTLOCK || rc == SQLITE_READONLY_RECOVERY;
  if (!no_shm) return std::unexpected(probe.error());
  // The -shm cannot be made (read-only medium or folder). Nobody can write
  // here either, so the main file is the whole database unless a -wal left
  // behind by a writer that did not checkpoint holds pages it lacks.
  std::filesystem::path wal = path.string() + "-wal";
  std::error_code ec;
  auto wal_size = std::filesystem::file_size(wal, ec);
  if (!ec && wal_size > 0) {
    return Fail(ErrorCode::kUnsupported,
                "{}: cannot be read here: {} holds {} bytes of committed writes not yet in the "
                "database file, and {}-shm cannot be created in this read-only folder; copy the "
                "database with its -wal file to writable storage, or checkpoint it "
                "(sqlite3 FILE 'PRAGMA wal_checkpoint') where it was written",
                path.string(), wal.string(), wal_size, path.string());
  }
  conn.reset();
  db = OpenHandle(path, FileUri(path, "mode=ro&immutable=1"), kFlags);
  if (!db) return std::unexpected(db.error());
  conn.reset(new Connection(path, *db));
  conn->read_only_ = true;
  conn->immutable_ = true;
  if (auto s = conn->Exec("PRAGMA query_only=ON; SELECT count(*) FROM sqlite_master;"); !s) {
    return std::unexpected(s.error());
  }
  Log("metrics")->debug("{}: opened immutable (read-only folder, no -wal)", path.string());
  return conn;
}

Connection::~Connection() {
  // REQUIRES: no Statement of this connection outlives it.
  for (auto& [sql, entry] : cache_) sqlite3_finalize(entry.stmt);
  sqlite3_close_v2(db_);
}

Result<Statement> Connection::Prepare(std::string_view sql) {
  auto it = cache_.find(std::string(sql));
  if (it != cache_.end() && !it->second.in_use) {
    it->second.in_use = true;
    return Statement(this, it->second.stmt, &it->second.in_use);
  }
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) return std::unexpected(LastError(sql, rc));
  if (it != cache_.end()) return Statement(this, stmt, nullptr);  // the cached one is busy
  CachedStatement& entry = cache_[std::string(sql)];
  entry.stmt = stmt;
  entry.in_use = true;
  return Statement(this, stmt, &entry.in_use);
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
  if (read_only_) {
    return Fail(ErrorCode::kUnsupported, "{}: opened read-only; nothing can be written",
                path_.string());
  }
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
