// SystemRecord: what `apply --system` applied to the whole machine: the
// patch, and the module (build-id) it is for. `status --system` uses it to
// name the processes that map that module but do not run the patch (started
// later, or refused), `revert --system` to find processes that inherited the
// patch by fork without a record of their own.
//
// Files: ROOT/system/ID.json (0600; ROOT as StateRoot()). Also here: the
// per-process state folders of live processes (ROOT/PID-STARTTIME).
//
// Thread-safety: functions on files; records are written atomically.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/error.h"

namespace patchlab::patchcore {

struct SystemRecord {
  std::string id;
  uint64_t seq = 0;
  std::string module;  // the target's file name, as packed
  std::string build_id;
  std::string package_sha256;
};

Status SaveSystemRecord(const SystemRecord& record);
// Every record, by id. A malformed one fails naming its file.
Result<std::vector<SystemRecord>> LoadSystemRecords();
Status RemoveSystemRecord(const std::string& id);

struct RecordedProcess {
  pid_t pid = 0;
  uint64_t start_time = 0;
};

// The processes that have a state folder and are still the process that
// folder was made for (same pid and start time), in pid order.
std::vector<RecordedProcess> LiveRecordedProcesses();

}  // namespace patchlab::patchcore
