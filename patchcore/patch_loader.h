// PatchObject: a patch's ELF shared object prepared for loading into a target
// without the target's dynamic loader (which takes locks and runs code).
//
// Prepare() resolves, before the target is stopped, every symbol the object's
// dynamic relocations name: its own definitions first, then the manifest's
// references to private target symbols (.symtab or the debug file), then the
// exported symbols of the target's loaded modules. Image() then lays the
// PT_LOAD segments out at a chosen base and applies RELATIVE, 64, GLOB_DAT
// and JUMP_SLOT relocations. TLS, COPY and IRELATIVE relocations, PT_TLS and
// PT_INTERP are refused (kUnsupported), naming the symbol. Constructors
// (DT_INIT, DT_INIT_ARRAY) are not run: a patch object must not need them.
//
// Thread-safety: immutable after Prepare().
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/elf_file.h"
#include "base/error.h"
#include "patchcore/module_set.h"
#include "patchcore/patch_package.h"
#include "patchcore/process_memory.h"
#include "patchcore/remote_ptr.h"

namespace patchlab::patchcore {

struct PageProtection {
  uint64_t offset = 0;  // from the image base, page-aligned
  uint64_t size = 0;
  int prot = 0;  // PROT_*
};

class PatchObject {
 public:
  static Result<PatchObject> Prepare(std::shared_ptr<const ElfFile> object,
                                     const Manifest& manifest, const LoadedModule& target,
                                     const ModuleSet& modules, const ProcessMemory& memory);

  // Bytes to map (page-aligned).
  uint64_t map_size() const { return map_size_; }
  // The relocated image for a mapping at `base`.
  std::vector<uint8_t> Image(RemotePtr base) const;
  // How each page range must be protected once written.
  const std::vector<PageProtection>& protections() const { return protections_; }
  // Runtime address of the patch object's defined function `name` at `base`.
  Result<RemotePtr> FunctionAddress(RemotePtr base, std::string_view name) const;
  // Runtime [start, end) of the executable pages at `base`.
  std::vector<RemoteRange> CodeRanges(RemotePtr base) const;

 private:
  struct Fixup {
    uint64_t image_offset;
    uint32_t type;
    bool relative_to_base;  // value = base-relative link address + addend
    uint64_t link_value;    // with relative_to_base
    uint64_t absolute;      // resolved external value otherwise
    int64_t addend;
  };
  // Segments to pages: the map size and each page range's protection.
  Status LayOut(const std::string& origin);
  // What relocation `r` needs at load time; nullopt for R_X86_64_NONE.
  Result<std::optional<Fixup>> ResolveFixup(const ElfRelocation& r,
                                            const std::set<std::string>& refs,
                                            const LoadedModule& target, const ModuleSet& modules,
                                            const ProcessMemory& memory,
                                            const std::string& origin) const;

  std::shared_ptr<const ElfFile> object_;
  uint64_t min_vaddr_ = 0;
  uint64_t map_size_ = 0;
  std::vector<PageProtection> protections_;
  std::vector<Fixup> fixups_;
};

}  // namespace patchlab::patchcore
