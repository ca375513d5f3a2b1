// SideLayout: what each side of a check maps into its sandboxes, where, and
// what each image's undefined symbols resolve against.
//
// The old side maps the old ELF (the "target": a PIE or shared object at
// kTargetBase, an ET_EXEC file at its own addresses) and the shared
// libraries it needs (DT_NEEDED, transitively, found beside it or in the
// system folders), except glibc's own (libc, libm, ld.so, ...), whose
// functions go to stubs and whose data to zero-filled storage
// (image_linker.h). The new side maps the same; when the new function lives
// in another file that is a patch object, that file too, at kPatchBase, its
// undefined references resolved against the target first (private symbols
// included): a patch calls the target's helpers and writes its globals in
// the mapped target, where both sides' writes are compared. When the new
// file is a whole program or library instead, the new side maps it in place
// of the old one (PairLayout::separate_spaces).
//
// Thread-safety: plain values and a pure function of the files.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/elf_file.h"
#include "base/error.h"

namespace patchlab::emulator {

struct FunctionRef;

struct SideImage {
  std::shared_ptr<const ElfFile> elf;
  uint64_t bias = 0;           // added to link-time addresses
  std::string label;           // "target", "patch" or the library's file name
  std::vector<size_t> lookup;  // images its undefined symbols resolve in, in order
};

struct SideLayout {
  std::vector<SideImage> images;
  size_t function_image = 0;          // the image that holds the checked function
  const ElfSymbol* symbol = nullptr;  // nullptr for an address no symbol covers
  uint64_t address = 0;               // the function's link-time address
};

struct PairLayout {
  SideLayout sides[2];  // old, new
  // The new file is a whole program or library (an ET_EXEC file, a PIE, or
  // a library with the old one's soname), not a patch object: the new side
  // maps it alone (with its own libraries) as its target, in an address
  // space of its own, where two non-PIE builds at the same addresses fit.
  bool separate_spaces = false;
  std::string why_separate;  // "an ET_EXEC file", ...
  // glibc's libraries the images need, which are not mapped (their data
  // symbols' sizes and ld.so's layout come from them: ld_so_data.h).
  std::vector<std::string> glibc_libraries;
};

// Opens both files, finds both functions and their libraries. Fails naming
// the file or symbol that is missing or cannot be read.
Result<PairLayout> PlanLayout(const FunctionRef& old_fn, const FunctionRef& new_fn);

// Whether `soname` is one of glibc's libraries (libc, libm, ld.so, ...).
bool IsGlibcLibrary(const std::string& soname);

}  // namespace patchlab::emulator
