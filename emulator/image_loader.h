// Loading ELF images into a sandbox the way ld.so would, minus running code:
// PT_LOAD segments at their addresses (plus a load bias for PIE executables
// and shared objects), and the dynamic relocations a loader applies.
//
// Relocations: RELATIVE (bias + addend); GLOB_DAT, JUMP_SLOT and 64 against a
// symbol (S, or S + addend for 64). A symbol defined in the image itself
// resolves there; otherwise it is looked up by name in the images of `lookup`
// in order (in the image labelled "target", private .symtab symbols included,
// so that a patch object's references reach the mapped target; in libraries,
// global ones only); otherwise it
// resolves to a library stub slot (stubs.h), which ends the run as
// inconclusive if it is not a stubbed function. IRELATIVE targets (ifuncs)
// become an inconclusive stub. COPY and TLS relocations are left alone:
// library data and thread-locals do not exist in the sandbox.
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

// Applies `image`'s dynamic relocations. Fails with kUnsupported naming the
// file, offset and type for a relocation type not listed above.
Status ApplyRelocations(Sandbox& sandbox, const LoadedImage& image,
                        std::span<const LoadedImage* const> lookup);

// The load bias the checker uses for `elf`: 0 for ET_EXEC, `dyn_base` for
// ET_DYN (minus the lowest segment address, so the image starts there).
uint64_t ChooseBias(const ElfFile& elf, uint64_t dyn_base);

}  // namespace patchlab::emulator
