// RAII owners of a sqlite3 connection and its prepared statements, with the
// busy/retry policy of the compatibility database. Private to metrics/.
//
// Thread-safety: none; CompatDb serializes access with its mutex.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "base/error.h"

namespace patchlab::metrics::internal {

class Connection;

// One prepared statement; reset and unbound on destruction (and returned to its
// connection's cache, or finalized when it was not cached).
class Statement {
 public:
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&&) = delete;
  Statement(const Statement&) = delete;
  ~Statement();

  // Binds by 1-based index. Strings are copied by SQLite.
  Statement& Bind(int index, int64_t value);
  Statement& Bind(int index, double value);
  Statement& Bind(int index, std::string_view value);
  Statement& Bind(int index, const char* value) { return Bind(index, std::string_view(value)); }
  Statement& BindNull(int index);
  template <typename T>
  Statement& BindOptional(int index, const std::optional<T>& value) {
    return value ? Bind(index, *value) : BindNull(index);
  }

  // Clears the last execution and the bindings, to run the statement again.
  void Reset();
  // Steps once: true when a row is available, false when done; fails naming the file.
  Result<bool> Step();
  // Steps to completion (for statements that return no rows).
  Status Run();

  int64_t Int(int column) const;
  double Double(int column) const;
  std::string Text(int column) const;
  bool IsNull(int column) const;
  std::optional<double> OptDouble(int column) const;
  std::optional<int64_t> OptInt(int column) const;

 private:
  friend class Connection;
  // `in_use`: the cache entry's flag to clear on destruction; null: owned.
  Statement(Connection* conn, sqlite3_stmt* stmt, bool* in_use)
      : conn_(conn), stmt_(stmt), in_use_(in_use) {}
  Connection* conn_;
  sqlite3_stmt* stmt_;
  bool* in_use_;
};

class Connection {
 public:
  // Opens (and with `create`, creates) the database file with WAL, foreign keys,
  // synchronous=FULL and a busy timeout.
  static Result<std::unique_ptr<Connection>> Open(const std::filesystem::path& path, bool create);
  // Opens an existing file for reading only: no write, no journal-mode change,
  // so it works on a read-only file, folder or medium. A WAL file whose -shm
  // cannot be created there (read-only folder) is opened immutable, unless its
  // -wal holds committed pages the main file lacks: then it fails (kUnsupported)
  // naming the -wal file, rather than show a stale database.
  static Result<std::unique_ptr<Connection>> OpenReadOnly(const std::filesystem::path& path);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Prepares `sql`, or takes it from the connection's cache: each distinct SQL
  // text is compiled once per connection (a cell is recorded with the same
  // handful of statements every time). A statement already handed out and not
  // yet destroyed is compiled afresh for the second user.
  Result<Statement> Prepare(std::string_view sql);
  // Runs one or more statements with no parameters.
  Status Exec(std::string_view sql);
  // Runs `body` inside BEGIN IMMEDIATE ... COMMIT; rolls back when it fails.
  // A busy database (SQLITE_BUSY beyond the busy timeout) is retried with backoff
  // a bounded number of times before failing with kTimeout.
  Status Transaction(const std::function<Status()>& body);

  int64_t LastInsertId() const;
  // An Error for the connection's last failure: "<file>: <what>: <sqlite message>".
  Error LastError(std::string_view what, int rc) const;
  const std::filesystem::path& path() const { return path_; }
  sqlite3* handle() const { return db_; }
  bool read_only() const { return read_only_; }
  bool immutable() const { return immutable_; }

 private:
  Connection(std::filesystem::path path, sqlite3* db) : path_(std::move(path)), db_(db) {}
  struct CachedStatement {
    sqlite3_stmt* stmt = nullptr;
    bool in_use = false;
  };
  std::filesystem::path path_;
  sqlite3* db_;
  // Node-based: a Statement keeps a pointer to its entry's flag.
  std::unordered_map<std::string, CachedStatement> cache_;
  bool read_only_ = false;
  bool immutable_ = false;
};

}  // namespace patchlab::metrics::internal
