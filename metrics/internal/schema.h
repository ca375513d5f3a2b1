// The compatibility database's schema and its forward migrations. Private to metrics/.
#pragma once

#include "base/error.h"
#include "metrics/internal/connection.h"

namespace patchlab::metrics::internal {

// The statements that take a schema at version N-1 to N, for N = 1 (empty file)
// up to kSchemaVersion. Exposed so tests can build an old database by hand.
const char* MigrationTo(int version);

// Reads PRAGMA user_version and applies every missing migration, each in its own
// IMMEDIATE transaction that re-reads the version (another process may have
// migrated meanwhile). Fails naming the file when the schema is newer than this
// build. Returns the version the file ends at.
Result<int> MigrateToCurrent(Connection& conn);

// The file's PRAGMA user_version.
Result<int> ReadSchemaVersion(Connection& conn);

}  // namespace patchlab::metrics::internal
