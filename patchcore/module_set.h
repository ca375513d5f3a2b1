// ModuleSet: the ELF modules a process has loaded (the executable and its
// shared libraries), each with its load bias, and symbol lookups against them:
// a module's private symbols (.symtab, or the debug file found by build-id)
// and the exported symbols of the whole process, in the loader's order
// (executable first). IFUNC symbols are taken from a GOT slot the target's
// loader already filled, since resolving them would mean running target code.
//
// Thread-safety: immutable after Load().
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/elf_file.h"
#include "base/error.h"
#include "patchcore/elf_cache.h"
#include "patchcore/process_maps.h"
#include "patchcore/process_memory.h"
#include "patchcore/remote_ptr.h"

namespace patchlab::patchcore {

struct LoadedModule {
  std::string path;                      // as in /proc/PID/maps
  std::shared_ptr<const ElfFile> elf;    // the file on disk
  std::shared_ptr<const ElfFile> debug;  // debug file by build-id, when found
  uint64_t bias = 0;                     // runtime address - link-time address
  RemoteRange range;                     // lowest to highest mapping of the file

  RemotePtr Runtime(uint64_t link_addr) const { return RemotePtr(link_addr + bias); }
  // A defined symbol of this module: .symtab/.dynsym, then the debug file.
  const ElfSymbol* FindDefined(std::string_view name) const;
};

class ModuleSet {
 public:
  // Opens every ELF file mapped by `pid` as the process maps it (through
  // /proc/PID/root, so a process in another mount namespace works too, or
  // /proc/PID/map_files for a file replaced on disk since). Non-ELF mappings
  // are skipped. `cache` shares decoded files across calls (and threads);
  // null: the files are read for this call alone.
  static Result<ModuleSet> Load(pid_t pid, const ProcessMaps& maps, ElfCache* cache = nullptr);

  const std::vector<LoadedModule>& modules() const { return modules_; }
  // The module whose file has build-id `build_id`, or the one named `file_name` (basename).
  const LoadedModule* FindByBuildId(std::string_view build_id) const;
  const LoadedModule* FindByFileName(std::string_view file_name) const;
  const LoadedModule* FindByAddress(RemotePtr addr) const;

  // The runtime address of exported symbol `name` (global or weak, defined,
  // from .dynsym), searching modules in load order. kNotFound when no module
  // exports it; kUnsupported for an IFUNC no loaded GOT has resolved yet.
  Result<RemotePtr> ResolveExported(std::string_view name, const ProcessMemory& memory) const;

 private:
  std::vector<LoadedModule> modules_;
};

}  // namespace patchlab::patchcore
