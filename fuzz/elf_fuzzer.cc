// The ELF reader (base/elf_file.h) on hostile bytes: decoding, then every
// query the patch core and the checker make of a decoded file.
#include "base/elf_file.h"
#include "fuzz/fuzz_target.h"

namespace {

// Touches what callers read: each section's bytes, symbol lookups by name and
// address, and reads at addresses the file itself names.
void Exercise(const patchlab::ElfFile& elf) {
  for (const patchlab::ElfSection& s : elf.sections()) {
    auto bytes = elf.SectionData(s);
    if (bytes && !bytes->empty()) FUZZ_CHECK(bytes->data() >= elf.bytes().data());
  }
  size_t n = 0;
  for (const patchlab::ElfSymbol& sym : elf.symbols()) {
    if (++n > 64) break;
    // "name@VERSION" asks FindSymbol for a version; .symtab names of versioned
    // references in Debian's debug files hold a literal '@' and are not found by it.
    if (!sym.name.empty() && sym.name.find('@') == std::string::npos) {
      FUZZ_CHECK(elf.FindSymbol(sym.name) != nullptr);
    }
    (void)elf.FindSymbols(sym.name);
    (void)elf.SymbolAt(sym.value);
    (void)elf.FileOffsetOf(sym.value);
    if (sym.size > 0 && sym.size <= 4096) (void)elf.ReadAt(sym.value, sym.size);
  }
  (void)elf.ReadAt(elf.entry(), 16);
  (void)elf.LoadSegments();
}

}  // namespace

PATCHLAB_FUZZ_TARGET(elf) {
  auto elf = patchlab::ElfFile::FromBytes(std::string(patchlab::fuzz::AsText(data, size)),
                                          "fuzz-input.elf");
  if (!elf) {
    // Every refusal names the file it refuses.
    FUZZ_CHECK(elf.error().ToString().find("fuzz-input.elf") != std::string::npos);
    return 0;
  }
  Exercise(*elf);
  return 0;
}
