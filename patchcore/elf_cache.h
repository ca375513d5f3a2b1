// ElfCache: the ELF files running processes map, each opened and decoded
// once and then shared: `apply --system` reads the same libraries in
// hundreds of processes.
//
// A file is known by its identity (device, inode, size, modification time),
// not by its path: a library replaced on disk after a process started is a
// different file, and the process still maps the old one. Each mapping is
// opened as the process maps it: by its path (through /proc/PID/root) when
// that still names the mapped inode, else through /proc/PID/map_files, which
// reaches the mapped file itself, also when it was deleted.
//
// Thread-safety: every method may be called from any number of threads; the
// files handed out are immutable.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>

#include "base/elf_file.h"
#include "base/error.h"
#include "patchcore/process_maps.h"

namespace patchlab::patchcore {

class ElfCache {
 public:
  ElfCache() = default;
  ElfCache(const ElfCache&) = delete;
  ElfCache& operator=(const ElfCache&) = delete;

  // The decoded ELF file mapping `e` of `pid` shows. kTargetGone when the
  // process or mapping is gone, kParse when the file is not ELF (also
  // remembered), kIo/kNotFound when it cannot be read.
  Result<std::shared_ptr<const ElfFile>> Module(pid_t pid, const MapEntry& e);

  // Only the build-id of that file (lowercase hex, "" when it has none),
  // read from its notes, once per file.
  Result<std::string> BuildId(pid_t pid, const MapEntry& e);

  // The separate debug file for `build_id` (see FindDebugFile), or null.
  std::shared_ptr<const ElfFile> DebugFile(const std::string& build_id);

 private:
  // device, inode, size, mtime seconds, mtime nanoseconds
  using Key = std::tuple<dev_t, ino_t, off_t, time_t, long>;
  struct Opened {
    Key key;
    std::string path;  // a path that opens the mapped file
  };
  template <typename T>
  struct Slot {
    std::once_flag once;
    std::optional<Result<T>> value;
  };

  static Result<Opened> Identify(pid_t pid, const MapEntry& e);
  template <typename T>
  std::shared_ptr<Slot<T>> SlotFor(std::map<Key, std::shared_ptr<Slot<T>>>& slots, const Key& key);

  std::mutex mu_;
  std::map<Key, std::shared_ptr<Slot<std::shared_ptr<const ElfFile>>>> modules_;
  std::map<Key, std::shared_ptr<Slot<std::string>>> build_ids_;
  std::map<std::string, std::shared_ptr<const ElfFile>> debug_files_;  // null: none
};

}  // namespace patchlab::patchcore
