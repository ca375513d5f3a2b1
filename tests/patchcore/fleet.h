// Helpers for the system-wide tests: many real processes started at once,
// each writing lines "pid=P z=X wrong=W" (targets/zlib_idle.c), read back by
// pid; and libraries with a build-id of the test's choosing.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"
#include "base/subprocess.h"

namespace patchlab::patchcore::testing {

struct ZLine {
  std::string z;  // the probe's answer, hex: "1" original, "600d" patched
  long wrong = 0;
};

class Fleet {
 public:
  explicit Fleet(std::filesystem::path dir) : dir_(std::move(dir)) {}

  // Starts `argv` with its output in a file of its own. Returns its pid.
  Result<pid_t> Start(std::vector<std::string> argv,
                      std::vector<std::pair<std::string, std::string>> env = {});
  const std::vector<pid_t>& pids() const { return pids_; }

  // The latest line of every process that printed one, by pid (workers a
  // process forked print into their parent's file).
  std::map<pid_t, ZLine> Lines() const;
  // Waits (bounded, for liveness only) until `pred` holds for every pid of
  // `pids` that printed a line, and each of them did. The lines as last read.
  std::map<pid_t, ZLine> WaitUntil(const std::vector<pid_t>& pids,
                                   const std::function<bool(const ZLine&)>& pred,
                                   int max_ms = 30000) const;

 private:
  std::filesystem::path dir_;
  std::vector<Subprocess> processes_;
  std::vector<pid_t> pids_;
};

// Copies the ELF file `from` to `to` with its GNU build-id replaced by
// `build_id` (hex, same length): the same code as another file. Fails when
// the old id is not found exactly once.
Status CopyWithBuildId(const std::filesystem::path& from, const std::filesystem::path& to,
                       const std::string& build_id);

// The build-id of `path` (ElfFile).
std::string BuildIdOf(const std::filesystem::path& path);

}  // namespace patchlab::patchcore::testing
