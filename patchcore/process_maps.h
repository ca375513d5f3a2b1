// ProcessMaps: a snapshot of /proc/PID/maps, with the questions the patcher
// asks of it: which mapping holds an address, which modules are loaded, and
// where the free gap nearest an address is (for code that must sit within
// reach of a rel32 jump).
//
// Thread-safety: immutable after Read().
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "patchcore/remote_ptr.h"

namespace patchlab::patchcore {

struct MapEntry {
  RemotePtr start;
  RemotePtr end;
  bool read = false;
  bool write = false;
  bool exec = false;
  bool shared = false;
  uint64_t offset = 0;
  dev_t dev = 0;  // makedev(major, minor) of the file's device
  uint64_t inode = 0;
  std::string path;  // "" for anonymous; "[vdso]", "[stack]", ...; a file path

  bool is_file() const { return !path.empty() && path[0] == '/'; }
  // The file as /proc/PID/map_files names this mapping: the very file mapped,
  // also after it was replaced or deleted on disk.
  std::string MapFilesName() const;
};

class ProcessMaps {
 public:
  // Reads /proc/PID/maps. kTargetGone (naming the pid) when the process is gone.
  static Result<ProcessMaps> Read(pid_t pid);
  // Parses maps text (for tests and for reading a saved copy).
  static Result<ProcessMaps> Parse(std::string_view text, std::string_view origin);

  const std::vector<MapEntry>& entries() const { return entries_; }
  // The mapping that holds `addr`, or nullptr.
  const MapEntry* Find(RemotePtr addr) const;
  // Distinct file paths of file-backed mappings, in address order of their first mapping.
  std::vector<std::string> FilePaths() const;
  // The mappings of `path`, in address order.
  std::vector<const MapEntry*> MappingsOf(const std::string& path) const;

  // The start of a free, page-aligned range of `size` bytes whose every byte
  // lies within `reach` bytes of `near` (both directions), closest first.
  // nullopt when there is none.
  std::optional<RemotePtr> FindFreeNear(RemotePtr near, uint64_t size,
                                        uint64_t reach = kRel32Reach) const;

  // What a rel32 displacement can span, with a margin for the instruction itself.
  // Marks `range` as taken (a mapping we are about to make).
  void Reserve(RemoteRange range);

  static constexpr uint64_t kRel32Reach = (1ull << 31) - (1ull << 20);

 private:
  std::vector<MapEntry> entries_;
};

// Start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat):
// with the pid it names one process for good, even if the pid is recycled.
Result<uint64_t> ProcessStartTime(pid_t pid);

}  // namespace patchlab::patchcore
