// Mapping ELF images into a sandbox the way ld.so maps them: PT_LOAD
// segments at their addresses (plus a load bias for PIE executables and
// shared objects). Linking them (relocations, TLS, IFUNCs) is
// image_linker.h's.
//
// Thread-safety: none (works on one Sandbox).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "base/elf_file.h"
#include "base/error.h"
#include "emulator/sandbox.h"

namespace patchlab::emulator {

struct LoadedImage {
  std::shared_ptr<const ElfFile> elf;
  uint64_t bias = 0;  // added to link-time addresses
  std::string label;  // "old", "new", "target", "patch": names its regions
};

// Maps `elf`'s PT_LOAD segments at link-time address + `bias` (segments that
// share a page share one region, with the union of their permissions). The
// PT_GNU_RELRO pages are a read-only region of their own, as after ld.so's
// mprotect: writing there faults, and they are neither restored nor compared.
// Fails when the file has no PT_LOAD segment or a segment overlaps something
// already mapped (naming both).
Result<LoadedImage> MapImage(Sandbox& sandbox, std::shared_ptr<const ElfFile> elf, uint64_t bias,
                             std::string label);

// The load bias the checker uses for `elf`: 0 for ET_EXEC, `dyn_base` for
// ET_DYN (minus the lowest segment address, so the image starts there).
uint64_t ChooseBias(const ElfFile& elf, uint64_t dyn_base);

}  // namespace patchlab::emulator
