// ElfFile: a read-only view of one ELF64 x86-64 file (executable, shared
// object, relocatable object or separate debug file), stripped or not.
//
// Open() reads the whole file once and decodes what the lab and the patch core
// need: type and entry, PT_LOAD segments, sections by name, symbols from
// .symtab and .dynsym, the GNU build-id, dynamic entries (DT_NEEDED, DT_SONAME,
// ...), and the dynamic relocations (.rela.dyn, .rela.plt) a loader applies.
// Dynamic data is found through PT_DYNAMIC when the section headers are gone.
//
// Thread-safety: an ElfFile is immutable after Open(); const methods may be
// called from any number of threads. Move-only (it owns the file's bytes).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/error.h"

namespace patchlab {

enum class ElfType { kRelocatable, kExecutable, kShared, kCore, kOther };

struct ElfSegment {    // one program header
  uint32_t type = 0;   // PT_LOAD, PT_DYNAMIC, ...
  uint32_t flags = 0;  // PF_R | PF_W | PF_X
  uint64_t offset = 0;
  uint64_t vaddr = 0;
  uint64_t filesz = 0;
  uint64_t memsz = 0;
  uint64_t align = 0;
};

struct ElfSection {
  std::string name;
  uint32_t index = 0;
  uint32_t type = 0;  // SHT_*
  uint64_t flags = 0;
  uint64_t addr = 0;
  uint64_t offset = 0;
  uint64_t size = 0;
  uint64_t entsize = 0;
  uint32_t link = 0;
  uint32_t info = 0;
};

enum class SymbolType { kNone, kObject, kFunc, kSection, kFile, kTls, kIfunc, kOther };
enum class SymbolBinding { kLocal, kGlobal, kWeak, kOther };

struct ElfSymbol {
  std::string name;
  uint64_t value = 0;  // link-time address (add the load bias for a PIE/DSO)
  uint64_t size = 0;
  SymbolType type = SymbolType::kNone;
  SymbolBinding binding = SymbolBinding::kLocal;
  uint16_t section_index = 0;  // SHN_UNDEF for an undefined reference
  bool defined = false;        // section_index != SHN_UNDEF
  bool dynamic = false;        // from .dynsym (else .symtab)
  // .dynsym only, from .gnu.version: the version name ("GLIBC_2.14"; empty
  // when unversioned) and whether this is the default definition
  // (`name@@VERSION`, what a new link binds to) rather than a kept older one
  // (`name@VERSION`).
  std::string version;
  bool default_version = true;
};

struct ElfRelocation {
  // ".rela.dyn", ".rela.plt", ".relr.dyn" (RELR entries become RELATIVE ones
  // whose addend is the word stored at the offset, as the format defines)
  std::string table;
  uint64_t offset = 0;  // link-time address of the patched word
  uint32_t type = 0;    // R_X86_64_*
  uint32_t symbol_index = 0;
  std::string symbol;  // empty when the relocation has no symbol
  bool symbol_defined = false;
  uint64_t symbol_value = 0;
  SymbolType symbol_type = SymbolType::kNone;
  SymbolBinding symbol_binding = SymbolBinding::kLocal;
  int64_t addend = 0;
};

struct ElfDynamicEntry {
  int64_t tag = 0;  // DT_*
  uint64_t value = 0;
};

class ElfFile {
 public:
  // Reads and decodes `path`. Fails with kNotFound/kIo when the file cannot be
  // read and kParse (naming the file) when it is not a well-formed ELF64
  // little-endian x86-64 file.
  static Result<ElfFile> Open(const std::filesystem::path& path);
  // Decodes a file image held in memory; `origin` names it in errors.
  static Result<ElfFile> FromBytes(std::string bytes, const std::filesystem::path& origin);

  ElfFile(ElfFile&&) noexcept;
  ElfFile& operator=(ElfFile&&) noexcept;
  ElfFile(const ElfFile&) = delete;
  ElfFile& operator=(const ElfFile&) = delete;
  ~ElfFile();

  const std::filesystem::path& path() const { return path_; }
  ElfType type() const { return type_; }
  uint64_t entry() const { return entry_; }

  const std::vector<ElfSegment>& segments() const { return segments_; }
  // Only the PT_LOAD ones, in file order.
  std::vector<ElfSegment> LoadSegments() const;

  const std::vector<ElfSection>& sections() const { return sections_; }
  // The section called `name`, or nullptr.
  const ElfSection* FindSection(std::string_view name) const;
  // The section's bytes in the file (empty for SHT_NOBITS). Fails naming the
  // file and section when the header points outside the file.
  Result<std::span<const uint8_t>> SectionData(const ElfSection& section) const;

  // Every symbol of .symtab then .dynsym (index 0 skipped), in table order.
  const std::vector<ElfSymbol>& symbols() const { return symbols_; }
  // The best symbol named `name`: a defined FUNC/IFUNC/OBJECT/TLS first,
  // global before weak before local, a default version before an older one,
  // .symtab before .dynsym; then any defined one; then an undefined one.
  // `name@VERSION` (or `name@@VERSION`) asks for that version of a dynamic
  // symbol. nullptr when there is none.
  const ElfSymbol* FindSymbol(std::string_view name) const;
  // Every symbol named `name` (e.g. several static functions of that name),
  // best first as FindSymbol ranks them.
  std::vector<const ElfSymbol*> FindSymbols(std::string_view name) const;
  // The defined FUNC/OBJECT/IFUNC symbol whose [value, value+size) holds
  // `addr` (a link-time address), or nullptr. Prefers global over local.
  const ElfSymbol* SymbolAt(uint64_t addr) const;

  // Lowercase hex of the NT_GNU_BUILD_ID note; empty when there is none.
  const std::string& build_id() const { return build_id_; }

  const std::vector<ElfDynamicEntry>& dynamic() const { return dynamic_; }
  // DT_NEEDED names, in order; DT_SONAME ("" when absent).
  const std::vector<std::string>& needed() const { return needed_; }
  const std::string& soname() const { return soname_; }
  // The relocations a dynamic loader applies (.relr.dyn, .rela.dyn, .rela.plt).
  const std::vector<ElfRelocation>& dynamic_relocations() const { return relocations_; }

  // Bytes of the file image at link-time address [addr, addr+size), from the
  // PT_LOAD segment that holds them (zero fill past filesz). Fails naming the
  // file when the range is not inside one segment.
  Result<std::vector<uint8_t>> ReadAt(uint64_t addr, uint64_t size) const;
  // The file offset that holds link-time address `addr`, if it is file-backed.
  std::optional<uint64_t> FileOffsetOf(uint64_t addr) const;

  // The raw file.
  std::span<const uint8_t> bytes() const;

 private:
  ElfFile() = default;
  struct Impl;

  std::filesystem::path path_;
  std::unique_ptr<std::string> data_;  // heap-held so spans survive a move
  ElfType type_ = ElfType::kOther;
  uint64_t entry_ = 0;
  std::vector<ElfSegment> segments_;
  std::vector<ElfSection> sections_;
  std::vector<ElfSymbol> symbols_;
  std::unordered_multimap<std::string, size_t> symbols_by_name_;
  std::vector<size_t> symbols_by_addr_;  // defined sized FUNC/OBJECT, sorted by value
  std::string build_id_;
  std::vector<ElfDynamicEntry> dynamic_;
  std::vector<std::string> needed_;
  std::string soname_;
  std::vector<ElfRelocation> relocations_;
};

// The separate debug file for `build_id` (hex), looked up as
// ROOT/.build-id/xx/rest.debug in each ROOT of DebugRoots(). kNotFound (naming
// every place looked at) when absent; kInvalidArgument for a malformed id.
Result<std::filesystem::path> FindDebugFile(std::string_view build_id);
Result<std::filesystem::path> FindDebugFile(std::string_view build_id,
                                            const std::filesystem::path& debug_root);

// Where debug files are looked for: the folders of $PATCHLAB_DEBUG_DIR
// (colon-separated), then /usr/lib/debug (what Debian's -dbgsym packages
// fill).
std::vector<std::filesystem::path> DebugRoots();

std::string_view ElfTypeName(ElfType type);

}  // namespace patchlab
