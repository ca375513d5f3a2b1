// ProcessScan: the processes of this machine (or of one process tree), and
// which of them map a given module, recognised by the build-id of the file
// each one maps, not by its path: a library replaced on disk after a
// process started is another file, and that process still runs the old one.
//
// Thread-safety: ListProcesses is a free function; a ModuleScanner belongs
// to one thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"
#include "patchcore/elf_cache.h"

namespace patchlab::patchcore {

struct ProcessInfo {
  pid_t pid = 0;
  uint64_t start_time = 0;  // with the pid, names one process for good
  pid_t ppid = 0;
  std::string comm;
};

struct ScanFilter {
  // Only the descendants of this process (its children, their children,
  // ...; not the process itself): a service's workers, or a test's
  // processes on a shared machine. Every process when unset.
  std::optional<pid_t> descendants_of;
};

// Every live process (zombies and kernel threads included: the caller asks
// about their mappings), in pid order, but never this one; filtered.
std::vector<ProcessInfo> ListProcesses(const ScanFilter& filter);

class ModuleScanner {
 public:
  ModuleScanner(std::string build_id, ElfCache& files)
      : build_id_(std::move(build_id)), files_(files) {}

  // The path (as its maps show it) from which `p` maps a file with the
  // build-id as code; nullopt when it maps none (files that are not ELF or
  // carry no build-id cannot be the module). kTargetGone only when the
  // process itself is gone or has exited (a zombie: no mappings left, and
  // no code runs), kRefused with the reason when its mappings cannot be
  // read, kIo when a mapped file could not be read (then nobody can tell
  // whether it is the module: the caller reports the process).
  Result<std::optional<std::string>> MappedPath(const ProcessInfo& p);

 private:
  // One pass over the maps; kTargetGone also when one mapping went away
  // between reading the maps and opening its file.
  Result<std::optional<std::string>> ScanOnce(const ProcessInfo& p);

  std::string build_id_;
  ElfCache& files_;
  std::map<std::pair<dev_t, uint64_t>, bool> known_;  // file identity -> has the build-id
};

}  // namespace patchlab::patchcore
