// SystemPatchSummary: what `hotpatch apply|revert --system --json` reported
// in a guest, read on the host: the counts and each process's result. The lab
// asks for it when a scenario patches every process that maps the module
// (`patch.processes: all`), through AgentClient::ApplySystem/RevertSystem.
//
// Thread-safety: plain data and a pure function.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace patchlab::harness {

struct SystemProcessResult {
  pid_t pid = 0;
  std::string comm;
  // "applied", "reverted", "refused", "rolled-back", "vanished"; for a
  // process whose mappings could not be read, "uninspected".
  std::string result;
  std::string reason;  // why (refused, rolled back, vanished, uninspected)
  int64_t pause_us = 0;
  bool followed = false;     // started after the first round (--follow)
  pid_t inherited_from = 0;  // its patched code came by fork from this process
};

struct SystemPatchSummary {
  std::string patch_id;
  std::string module;  // file name and build-id of the patched module
  std::string build_id;
  int applied = 0;
  int reverted = 0;
  int refused = 0;  // also counts the uninspected processes
  int rolled_back = 0;
  int vanished = 0;
  int scanned = 0;  // processes looked at
  int64_t wall_us = 0;
  std::vector<SystemProcessResult> processes;  // the uninspected ones last

  // True when every process found ran the operation (exit code 0).
  bool Complete() const { return refused == 0 && rolled_back == 0; }
};

// Parses the one JSON line of `hotpatch apply|revert --system --json`.
// Fails with kParse naming `origin` and the field that is missing or wrong.
Result<SystemPatchSummary> ParseSystemPatchSummary(std::string_view json_line,
                                                   std::string_view origin);

}  // namespace patchlab::harness
