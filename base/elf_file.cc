#include "base/elf_file.h"

#include <elf.h>
#include <gelf.h>
#include <libelf.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "base/file_util.h"

namespace patchlab {
namespace {

SymbolType ToSymbolType(unsigned t) {
  switch (t) {
    case STT_NOTYPE:
      return SymbolType::kNone;
    case STT_OBJECT:
      return SymbolType::kObject;
    case STT_FUNC:
      return SymbolType::kFunc;
    case STT_SECTION:
      return SymbolType::kSection;
    case STT_FILE:
      return SymbolType::kFile;
    case STT_TLS:
      return SymbolType::kTls;
    case STT_GNU_IFUNC:
      return SymbolType::kIfunc;
    default:
      return SymbolType::kOther;
  }
}

SymbolBinding ToBinding(unsigned b) {
  switch (b) {
    case STB_LOCAL:
      return SymbolBinding::kLocal;
    case STB_GLOBAL:
      return SymbolBinding::kGlobal;
    case STB_WEAK:
      return SymbolBinding::kWeak;
    default:
      return SymbolBinding::kOther;
  }
}

bool IsCodeOrData(SymbolType t) {
  return t == SymbolType::kFunc || t == SymbolType::kObject || t == SymbolType::kIfunc;
}

// Lower is better; used to rank symbols of one name.
int Rank(const ElfSymbol& s) {
  int rank = 0;
  if (!s.defined) rank += 100;
  if (!(IsCodeOrData(s.type) || s.type == SymbolType::kTls)) rank += 20;
  if (s.binding == SymbolBinding::kWeak) rank += 2;
  if (s.binding == SymbolBinding::kLocal) rank += 4;
  if (!s.default_version) rank += 8;
  if (s.dynamic) rank += 1;
  return rank;
}

struct ElfCloser {
  void operator()(Elf* e) const { elf_end(e); }
};

// Lowercase hex of the first NT_GNU_BUILD_ID note in `d`; empty when none.
std::string BuildIdFromNotes(Elf_Data* d) {
  std::string id;
  size_t off = 0, name_off = 0, desc_off = 0;
  GElf_Nhdr nh;
  while (d && (off = gelf_getnote(d, off, &nh, &name_off, &desc_off)) > 0) {
    if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
        std::memcmp(static_cast<char*>(d->d_buf) + name_off, "GNU", 4) == 0) {
      const auto* p = static_cast<const uint8_t*>(d->d_buf) + desc_off;
      id.reserve(nh.n_descsz * 2);
      for (size_t k = 0; k < nh.n_descsz; ++k) id += fmt::format("{:02x}", p[k]);
      break;
    }
  }
  return id;
}

void InitLibelf() {
  static std::once_flag once;
  std::call_once(once, [] { elf_version(EV_CURRENT); });
}

// The addresses and sizes of the tables the dynamic segment points at.
struct DynamicTables {
  uint64_t strtab = 0, strsz = 0, symtab = 0, rela = 0, relasz = 0, jmprel = 0, pltrelsz = 0;
  uint64_t relr = 0, relrsz = 0;
};

// Strings of DT_STRTAB, looked up by offset.
class DynamicStrings {
 public:
  explicit DynamicStrings(std::vector<uint8_t> bytes) : bytes_(std::move(bytes)) {}
  std::string At(uint64_t off) const {
    if (off >= bytes_.size()) return {};
    const char* p = reinterpret_cast<const char*>(bytes_.data()) + off;
    return std::string(p, strnlen(p, bytes_.size() - off));
  }

 private:
  std::vector<uint8_t> bytes_;
};

}  // namespace

struct ElfFile::Impl {
  // The steps of FromBytes, in order.
  static Status ReadHeader(ElfFile& f, Elf* elf);
  static Status ReadProgramHeaders(ElfFile& f, Elf* elf);
  // Section headers, with the symbols of .symtab/.dynsym and the build-id note.
  static Status ReadSections(ElfFile& f, Elf* elf);
  static void ReadSymbols(ElfFile& f, Elf* elf, Elf_Scn* scn, const GElf_Shdr& sh);
  // Names the versions of .dynsym's symbols from .gnu.version and
  // .gnu.version_d / .gnu.version_r. `dynsym_begin`: where .dynsym's symbol
  // 1 sits in symbols_.
  static void ReadSymbolVersions(ElfFile& f, Elf* elf, size_t dynsym_begin);
  static void ReadBuildIdFromSegments(ElfFile& f, Elf* elf);
  static void IndexSymbols(ElfFile& f);
  // Decodes the dynamic segment and the relocation tables it names, reading
  // through PT_LOAD mappings so that files without section headers work too.
  static Status LoadDynamic(ElfFile& f);
  static DynamicTables ReadDynamicEntries(ElfFile& f, const ElfSegment& dyn);
  // DT_RELR: packed relative relocations (an address, then bitmaps of the
  // 63 words after it), unpacked into RELATIVE ones.
  static Status ReadRelrTable(ElfFile& f, uint64_t addr, uint64_t size);
  static Status ReadRelocationTable(ElfFile& f, uint64_t addr, uint64_t size, uint64_t symtab,
                                    const DynamicStrings& strings, const char* table);
};

ElfFile::ElfFile(ElfFile&&) noexcept = default;
ElfFile& ElfFile::operator=(ElfFile&&) noexcept = default;
ElfFile::~ElfFile() = default;

std::string_view ElfTypeName(ElfType type) {
  switch (type) {
    case ElfType::kRelocatable:
      return "REL";
    case ElfType::kExecutable:
      return "EXEC";
    case ElfType::kShared:
      return "DYN";
    case ElfType::kCore:
      return "CORE";
    case ElfType::kOther:
      return "OTHER";
  }
  return "OTHER";
}

std::span<const uint8_t> ElfFile::bytes() const {
  return {reinterpret_cast<const uint8_t*>(data_->data()), data_->size()};
}

Result<ElfFile> ElfFile::Open(const std::filesystem::path& path) {
  auto content = ReadFile(path);
  if (!content) return std::unexpected(std::move(content.error()));
  return FromBytes(std::move(*content), path);
}

Result<ElfFile> ElfFile::FromBytes(std::string bytes, const std::filesystem::path& path) {
  InitLibelf();
  ElfFile f;
  f.path_ = path;
  f.data_ = std::make_unique<std::string>(std::move(bytes));
  const std::string name = path.string();
  std::string& data = *f.data_;
  if (data.size() < sizeof(Elf64_Ehdr) || std::memcmp(data.data(), ELFMAG, SELFMAG) != 0) {
    return Fail(ErrorCode::kParse, "{}: not an ELF file", name);
  }
  const auto* ident = reinterpret_cast<const unsigned char*>(data.data());
  if (ident[EI_CLASS] != ELFCLASS64 || ident[EI_DATA] != ELFDATA2LSB) {
    return Fail(ErrorCode::kParse, "{}: not a 64-bit little-endian ELF file", name);
  }
  std::unique_ptr<Elf, ElfCloser> elf(elf_memory(data.data(), data.size()));
  if (!elf) return Fail(ErrorCode::kParse, "{}: {}", name, elf_errmsg(-1));
  if (auto st = Impl::ReadHeader(f, elf.get()); !st) return std::unexpected(std::move(st.error()));
  if (auto st = Impl::ReadProgramHeaders(f, elf.get()); !st)
    return std::unexpected(std::move(st.error()));
  if (auto st = Impl::ReadSections(f, elf.get()); !st)
    return std::unexpected(std::move(st.error()));
  // A file stripped of its section headers still has its notes in PT_NOTE.
  if (f.build_id_.empty()) Impl::ReadBuildIdFromSegments(f, elf.get());
  Impl::IndexSymbols(f);
  if (auto st = Impl::LoadDynamic(f); !st) return std::unexpected(std::move(st.error()));
  return f;
}

Status ElfFile::Impl::ReadHeader(ElfFile& f, Elf* elf) {
  const std::string name = f.path_.string();
  GElf_Ehdr ehdr;
  if (!gelf_getehdr(elf, &ehdr)) {
    return Fail(ErrorCode::kParse, "{}: bad ELF header: {}", name, elf_errmsg(-1));
  }
  if (ehdr.e_machine != EM_X86_64) {
    return Fail(ErrorCode::kParse, "{}: machine {} is not x86-64", name, ehdr.e_machine);
  }
  switch (ehdr.e_type) {
    case ET_REL:
      f.type_ = ElfType::kRelocatable;
      break;
    case ET_EXEC:
      f.type_ = ElfType::kExecutable;
      break;
    case ET_DYN:
      f.type_ = ElfType::kShared;
      break;
    case ET_CORE:
      f.type_ = ElfType::kCore;
      break;
    default:
      f.type_ = ElfType::kOther;
      break;
  }
  f.entry_ = ehdr.e_entry;
  return {};
}

Status ElfFile::Impl::ReadProgramHeaders(ElfFile& f, Elf* elf) {
  const std::string name = f.path_.string();
  size_t phnum = 0;
  if (elf_getphdrnum(elf, &phnum) != 0) {
    return Fail(ErrorCode::kParse, "{}: bad program headers: {}", name, elf_errmsg(-1));
  }
  for (size_t i = 0; i < phnum; ++i) {
    GElf_Phdr ph;
    if (!gelf_getphdr(elf, static_cast<int>(i), &ph)) {
      return Fail(ErrorCode::kParse, "{}: program header {}: {}", name, i, elf_errmsg(-1));
    }
    f.segments_.push_back(ElfSegment{ph.p_type, ph.p_flags, ph.p_offset, ph.p_vaddr, ph.p_filesz,
                                     ph.p_memsz, ph.p_align});
  }
  return {};
}

Status ElfFile::Impl::ReadSections(ElfFile& f, Elf* elf) {
  const std::string name = f.path_.string();
  const std::string& data = *f.data_;
  size_t shstrndx = 0;
  if (elf_getshdrstrndx(elf, &shstrndx) != 0) shstrndx = 0;
  size_t dynsym_begin = SIZE_MAX;
  for (Elf_Scn* scn = elf_nextscn(elf, nullptr); scn; scn = elf_nextscn(elf, scn)) {
    GElf_Shdr sh;
    if (!gelf_getshdr(scn, &sh)) {
      return Fail(ErrorCode::kParse, "{}: section header: {}", name, elf_errmsg(-1));
    }
    ElfSection s;
    const char* sname = shstrndx ? elf_strptr(elf, shstrndx, sh.sh_name) : nullptr;
    s.name = sname ? sname : "";
    s.index = static_cast<uint32_t>(elf_ndxscn(scn));
    s.type = sh.sh_type;
    s.flags = sh.sh_flags;
    s.addr = sh.sh_addr;
    s.offset = sh.sh_offset;
    s.size = sh.sh_size;
    s.entsize = sh.sh_entsize;
    s.link = sh.sh_link;
    s.info = sh.sh_info;
    if (s.type != SHT_NOBITS && (s.offset > data.size() || s.size > data.size() - s.offset)) {
      return Fail(ErrorCode::kParse, "{}: section {} ({}) lies outside the file", name, s.index,
                  s.name);
    }
    f.sections_.push_back(std::move(s));
    if (sh.sh_type == SHT_DYNSYM) dynsym_begin = f.symbols_.size();
    if (sh.sh_type == SHT_SYMTAB || sh.sh_type == SHT_DYNSYM) ReadSymbols(f, elf, scn, sh);
    if (sh.sh_type == SHT_NOTE && f.build_id_.empty()) {
      f.build_id_ = BuildIdFromNotes(elf_getdata(scn, nullptr));
    }
  }
  if (dynsym_begin != SIZE_MAX) ReadSymbolVersions(f, elf, dynsym_begin);
  return {};
}

void ElfFile::Impl::ReadSymbolVersions(ElfFile& f, Elf* elf, size_t dynsym_begin) {
  Elf_Scn* versym = nullptr;
  std::map<uint16_t, std::string> names;  // version index -> name
  for (Elf_Scn* scn = elf_nextscn(elf, nullptr); scn; scn = elf_nextscn(elf, scn)) {
    GElf_Shdr sh;
    if (!gelf_getshdr(scn, &sh)) continue;
    Elf_Data* d = elf_getdata(scn, nullptr);
    if (d == nullptr) continue;
    if (sh.sh_type == SHT_GNU_versym) {
      versym = scn;
    } else if (sh.sh_type == SHT_GNU_verdef) {
      GElf_Verdef def;
      GElf_Verdaux aux;
      for (size_t off = 0; gelf_getverdef(d, static_cast<int>(off), &def) != nullptr;) {
        if (gelf_getverdaux(d, static_cast<int>(off + def.vd_aux), &aux) != nullptr) {
          const char* n = elf_strptr(elf, sh.sh_link, aux.vda_name);
          if (n != nullptr) names[def.vd_ndx] = n;
        }
        if (def.vd_next == 0) break;
        off += def.vd_next;
      }
    } else if (sh.sh_type == SHT_GNU_verneed) {
      GElf_Verneed need;
      GElf_Vernaux aux;
      for (size_t off = 0; gelf_getverneed(d, static_cast<int>(off), &need) != nullptr;) {
        for (size_t a = off + need.vn_aux; gelf_getvernaux(d, static_cast<int>(a), &aux);) {
          const char* n = elf_strptr(elf, sh.sh_link, aux.vna_name);
          if (n != nullptr) names[aux.vna_other] = n;
          if (aux.vna_next == 0) break;
          a += aux.vna_next;
        }
        if (need.vn_next == 0) break;
        off += need.vn_next;
      }
    }
  }
  if (versym == nullptr) return;
  Elf_Data* d = elf_getdata(versym, nullptr);
  for (size_t i = dynsym_begin; i < f.symbols_.size() && f.symbols_[i].dynamic; ++i) {
    GElf_Versym v;
    if (gelf_getversym(d, static_cast<int>(i - dynsym_begin + 1), &v) == nullptr) break;
    ElfSymbol& s = f.symbols_[i];
    // Hidden: an older version kept for old binaries, not the default.
    s.default_version = (v & 0x8000) == 0;
    auto it = names.find(static_cast<uint16_t>(v & 0x7fff));
    if (it != names.end() && (v & 0x7fff) > VER_NDX_GLOBAL) s.version = it->second;
  }
}

void ElfFile::Impl::ReadSymbols(ElfFile& f, Elf* elf, Elf_Scn* scn, const GElf_Shdr& sh) {
  Elf_Data* d = elf_getdata(scn, nullptr);
  if (!d) return;
  size_t count = sh.sh_entsize ? sh.sh_size / sh.sh_entsize : 0;
  for (size_t i = 1; i < count; ++i) {
    GElf_Sym sym;
    if (!gelf_getsym(d, static_cast<int>(i), &sym)) break;
    ElfSymbol es;
    const char* n = elf_strptr(elf, sh.sh_link, sym.st_name);
    es.name = n ? n : "";
    es.value = sym.st_value;
    es.size = sym.st_size;
    es.type = ToSymbolType(GELF_ST_TYPE(sym.st_info));
    es.binding = ToBinding(GELF_ST_BIND(sym.st_info));
    es.section_index = sym.st_shndx;
    es.defined = sym.st_shndx != SHN_UNDEF;
    es.dynamic = sh.sh_type == SHT_DYNSYM;
    f.symbols_.push_back(std::move(es));
  }
}

void ElfFile::Impl::ReadBuildIdFromSegments(ElfFile& f, Elf* elf) {
  const std::string& data = *f.data_;
  for (const ElfSegment& seg : f.segments_) {
    if (seg.type != PT_NOTE || seg.offset > data.size() || seg.filesz > data.size() - seg.offset) {
      continue;
    }
    f.build_id_ = BuildIdFromNotes(
        elf_getdata_rawchunk(elf, static_cast<int64_t>(seg.offset), seg.filesz, ELF_T_NHDR));
    if (!f.build_id_.empty()) return;
  }
}

void ElfFile::Impl::IndexSymbols(ElfFile& f) {
  for (size_t i = 0; i < f.symbols_.size(); ++i) {
    const ElfSymbol& s = f.symbols_[i];
    if (!s.name.empty()) f.symbols_by_name_.emplace(s.name, i);
    if (s.defined && s.size > 0 && IsCodeOrData(s.type) && s.section_index != SHN_ABS) {
      f.symbols_by_addr_.push_back(i);
    }
  }
  std::sort(f.symbols_by_addr_.begin(), f.symbols_by_addr_.end(), [&](size_t a, size_t b) {
    const ElfSymbol& x = f.symbols_[a];
    const ElfSymbol& y = f.symbols_[b];
    if (x.value != y.value) return x.value < y.value;
    return Rank(x) < Rank(y);
  });
}

Status ElfFile::Impl::LoadDynamic(ElfFile& f) {
  const std::string name = f.path_.string();
  const ElfSegment* dyn = nullptr;
  for (const ElfSegment& seg : f.segments_) {
    if (seg.type == PT_DYNAMIC) dyn = &seg;
  }
  if (!dyn || dyn->filesz == 0) return {};
  // A separate debug file keeps the headers but not the bytes (NOBITS).
  if (const ElfSection* s = f.FindSection(".dynamic"); s && s->type == SHT_NOBITS) return {};
  if (dyn->offset > f.data_->size() || dyn->filesz > f.data_->size() - dyn->offset) {
    return Fail(ErrorCode::kParse, "{}: PT_DYNAMIC lies outside the file", name);
  }
  DynamicTables t = ReadDynamicEntries(f, *dyn);
  std::vector<uint8_t> string_bytes;
  if (t.strtab && t.strsz) {
    auto s = f.ReadAt(t.strtab, t.strsz);
    if (!s) return std::unexpected(std::move(s.error()).AddContext("DT_STRTAB"));
    string_bytes = std::move(*s);
  }
  const DynamicStrings strings(std::move(string_bytes));
  for (const ElfDynamicEntry& d : f.dynamic_) {
    if (d.tag == DT_NEEDED) f.needed_.push_back(strings.At(d.value));
    if (d.tag == DT_SONAME) f.soname_ = strings.At(d.value);
  }
  // DT_RELASZ may include the PLT relocations when they follow it directly;
  // the loader then stops DT_RELA short, and so do we.
  if (t.rela && t.jmprel && t.jmprel > t.rela && t.jmprel < t.rela + t.relasz)
    t.relasz = t.jmprel - t.rela;
  if (auto st = ReadRelrTable(f, t.relr, t.relrsz); !st) return st;
  if (auto st = ReadRelocationTable(f, t.rela, t.relasz, t.symtab, strings, ".rela.dyn"); !st)
    return st;
  return ReadRelocationTable(f, t.jmprel, t.pltrelsz, t.symtab, strings, ".rela.plt");
}

DynamicTables ElfFile::Impl::ReadDynamicEntries(ElfFile& f, const ElfSegment& dyn) {
  DynamicTables t;
  const size_t count = dyn.filesz / sizeof(Elf64_Dyn);
  const auto* entries = reinterpret_cast<const Elf64_Dyn*>(f.data_->data() + dyn.offset);
  for (size_t i = 0; i < count; ++i) {
    Elf64_Dyn d;
    std::memcpy(&d, entries + i, sizeof d);
    if (d.d_tag == DT_NULL) break;
    f.dynamic_.push_back(ElfDynamicEntry{d.d_tag, d.d_un.d_val});
    switch (d.d_tag) {
      case DT_STRTAB:
        t.strtab = d.d_un.d_ptr;
        break;
      case DT_STRSZ:
        t.strsz = d.d_un.d_val;
        break;
      case DT_SYMTAB:
        t.symtab = d.d_un.d_ptr;
        break;
      case DT_RELA:
        t.rela = d.d_un.d_ptr;
        break;
      case DT_RELASZ:
        t.relasz = d.d_un.d_val;
        break;
      case DT_JMPREL:
        t.jmprel = d.d_un.d_ptr;
        break;
      case DT_PLTRELSZ:
        t.pltrelsz = d.d_un.d_val;
        break;
      case DT_RELR:
        t.relr = d.d_un.d_ptr;
        break;
      case DT_RELRSZ:
        t.relrsz = d.d_un.d_val;
        break;
      default:
        break;
    }
  }
  return t;
}

Status ElfFile::Impl::ReadRelrTable(ElfFile& f, uint64_t addr, uint64_t size) {
  if (!addr || !size) return {};
  auto raw = f.ReadAt(addr, size);
  if (!raw) return std::unexpected(std::move(raw.error()).AddContext(".relr.dyn"));
  auto add = [&](uint64_t where) -> Status {
    auto word = f.ReadAt(where, 8);
    if (!word) {
      return Fail(ErrorCode::kParse, "{}: .relr.dyn relocates {:#x}, outside every segment",
                  f.path_.string(), where);
    }
    ElfRelocation rel;
    rel.table = ".relr.dyn";
    rel.offset = where;
    rel.type = R_X86_64_RELATIVE;
    std::memcpy(&rel.addend, word->data(), 8);
    f.relocations_.push_back(std::move(rel));
    return {};
  };
  uint64_t next = 0;  // the word the next bitmap's bit 1 stands for
  for (size_t off = 0; off + 8 <= raw->size(); off += 8) {
    uint64_t entry;
    std::memcpy(&entry, raw->data() + off, 8);
    if ((entry & 1) == 0) {
      if (auto st = add(entry); !st) return st;
      next = entry + 8;
      continue;
    }
    for (int bit = 1; bit < 64; ++bit) {
      if ((entry >> bit) & 1) {
        if (auto st = add(next + (bit - 1) * 8); !st) return st;
      }
    }
    next += 63 * 8;
  }
  return {};
}

Status ElfFile::Impl::ReadRelocationTable(ElfFile& f, uint64_t addr, uint64_t size, uint64_t symtab,
                                          const DynamicStrings& strings, const char* table) {
  if (!addr || !size) return {};
  auto raw = f.ReadAt(addr, size);
  if (!raw) return std::unexpected(std::move(raw.error()).AddContext(table));
  for (size_t off = 0; off + sizeof(Elf64_Rela) <= raw->size(); off += sizeof(Elf64_Rela)) {
    Elf64_Rela r;
    std::memcpy(&r, raw->data() + off, sizeof r);
    ElfRelocation rel;
    rel.table = table;
    rel.offset = r.r_offset;
    rel.type = static_cast<uint32_t>(ELF64_R_TYPE(r.r_info));
    rel.symbol_index = static_cast<uint32_t>(ELF64_R_SYM(r.r_info));
    rel.addend = r.r_addend;
    if (rel.symbol_index != 0 && symtab) {
      auto sym_raw =
          f.ReadAt(symtab + uint64_t{rel.symbol_index} * sizeof(Elf64_Sym), sizeof(Elf64_Sym));
      if (!sym_raw) {
        return Fail(ErrorCode::kParse, "{}: {} entry {} names symbol {} outside DT_SYMTAB",
                    f.path_.string(), table, off / sizeof(Elf64_Rela), rel.symbol_index);
      }
      Elf64_Sym sym;
      std::memcpy(&sym, sym_raw->data(), sizeof sym);
      rel.symbol = strings.At(sym.st_name);
      rel.symbol_defined = sym.st_shndx != SHN_UNDEF;
      rel.symbol_value = sym.st_value;
      rel.symbol_type = ToSymbolType(ELF64_ST_TYPE(sym.st_info));
      rel.symbol_binding = ToBinding(ELF64_ST_BIND(sym.st_info));
    }
    f.relocations_.push_back(std::move(rel));
  }
  return {};
}

std::vector<ElfSegment> ElfFile::LoadSegments() const {
  std::vector<ElfSegment> out;
  for (const ElfSegment& s : segments_) {
    if (s.type == PT_LOAD) out.push_back(s);
  }
  return out;
}

const ElfSection* ElfFile::FindSection(std::string_view name) const {
  for (const ElfSection& s : sections_) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

Result<std::span<const uint8_t>> ElfFile::SectionData(const ElfSection& section) const {
  if (section.type == SHT_NOBITS) return std::span<const uint8_t>();
  if (section.offset > data_->size() || section.size > data_->size() - section.offset) {
    return Fail(ErrorCode::kParse, "{}: section {} lies outside the file", path_.string(),
                section.name);
  }
  return bytes().subspan(section.offset, section.size);
}

const ElfSymbol* ElfFile::FindSymbol(std::string_view name) const {
  std::vector<const ElfSymbol*> all = FindSymbols(name);
  return all.empty() ? nullptr : all.front();
}

std::vector<const ElfSymbol*> ElfFile::FindSymbols(std::string_view name) const {
  std::vector<const ElfSymbol*> out;
  // "name@VERSION" / "name@@VERSION": that version of a dynamic symbol.
  const size_t at = name.find('@');
  if (at != std::string_view::npos && at > 0) {
    std::string_view version = name.substr(at + 1);
    if (version.starts_with('@')) version.remove_prefix(1);
    auto [lo, hi] = symbols_by_name_.equal_range(std::string(name.substr(0, at)));
    for (auto it = lo; it != hi; ++it) {
      const ElfSymbol& s = symbols_[it->second];
      if (s.dynamic && s.version == version) out.push_back(&s);
    }
  }
  // Otherwise the name as it stands: a .symtab name may itself hold an '@'
  // (the linker names versioned aliases "memcpy@GLIBC_2.2.5" there, and a
  // debug file has no .dynsym to match the version against).
  if (out.empty()) {
    auto [lo, hi] = symbols_by_name_.equal_range(std::string(name));
    for (auto it = lo; it != hi; ++it) out.push_back(&symbols_[it->second]);
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const ElfSymbol* a, const ElfSymbol* b) { return Rank(*a) < Rank(*b); });
  return out;
}

const ElfSymbol* ElfFile::SymbolAt(uint64_t addr) const {
  // Symbols are sorted by start; walk back from the last one starting at or
  // before addr. Sizes differ, so an earlier, longer symbol may still hold it.
  auto it = std::upper_bound(symbols_by_addr_.begin(), symbols_by_addr_.end(), addr,
                             [&](uint64_t a, size_t i) { return a < symbols_[i].value; });
  const ElfSymbol* best = nullptr;
  constexpr int kMaxBacktrack = 64;
  int steps = 0;
  while (it != symbols_by_addr_.begin() && steps++ < kMaxBacktrack) {
    --it;
    const ElfSymbol& s = symbols_[*it];
    if (addr >= s.value && addr - s.value < s.size) {
      if (!best || Rank(s) < Rank(*best) || (Rank(s) == Rank(*best) && s.value > best->value)) {
        best = &s;
      }
    }
  }
  return best;
}

std::optional<uint64_t> ElfFile::FileOffsetOf(uint64_t addr) const {
  for (const ElfSegment& s : segments_) {
    if (s.type == PT_LOAD && addr >= s.vaddr && addr - s.vaddr < s.filesz) {
      return s.offset + (addr - s.vaddr);
    }
  }
  return std::nullopt;
}

Result<std::vector<uint8_t>> ElfFile::ReadAt(uint64_t addr, uint64_t size) const {
  for (const ElfSegment& s : segments_) {
    if (s.type != PT_LOAD || addr < s.vaddr || addr - s.vaddr >= s.memsz) continue;
    uint64_t rel = addr - s.vaddr;
    if (size > s.memsz - rel) break;
    // What a caller reads is code or a table the file holds; only a segment's
    // zero-filled tail adds bytes the file does not. A read larger than the
    // whole file comes from sizes a hostile header made up (a DT_RELASZ of
    // 1.8 GB, found by fuzz/dwarf_fuzzer.cc): refused before allocating.
    if (size > data_->size()) {
      return Fail(ErrorCode::kParse, "{}: {} bytes at {:#x} is more than the file's {} bytes",
                  path_.string(), size, addr, data_->size());
    }
    const uint64_t n = rel < s.filesz ? std::min(size, s.filesz - rel) : 0;
    // Checked term by term: a p_offset near 2^64 plus `rel` wraps to a small
    // offset that would pass a check of the sum.
    if (n > 0 && (s.offset > data_->size() || rel > data_->size() - s.offset ||
                  n > data_->size() - s.offset - rel)) {
      return Fail(ErrorCode::kParse, "{}: segment at {:#x} lies outside the file", path_.string(),
                  s.vaddr);
    }
    std::vector<uint8_t> out(size, 0);
    if (n > 0) std::memcpy(out.data(), data_->data() + (s.offset + rel), n);
    return out;
  }
  return Fail(ErrorCode::kNotFound, "{}: address range {:#x}+{} is not inside one PT_LOAD segment",
              path_.string(), addr, size);
}

std::vector<std::filesystem::path> DebugRoots() {
  std::vector<std::filesystem::path> roots;
  if (const char* env = std::getenv("PATCHLAB_DEBUG_DIR")) {
    std::string_view rest(env);
    while (!rest.empty()) {
      size_t colon = rest.find(':');
      std::string_view dir = rest.substr(0, colon);
      if (!dir.empty()) roots.emplace_back(dir);
      rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
    }
  }
  roots.emplace_back("/usr/lib/debug");
  return roots;
}

Result<std::filesystem::path> FindDebugFile(std::string_view build_id) {
  std::string looked;
  for (const std::filesystem::path& root : DebugRoots()) {
    auto found = FindDebugFile(build_id, root);
    if (found || found.error().code() != ErrorCode::kNotFound) return found;
    looked += (looked.empty() ? "" : ", ") + root.string();
  }
  return Fail(ErrorCode::kNotFound, "no debug file for build-id {} (looked in {})", build_id,
              looked);
}

Result<std::filesystem::path> FindDebugFile(std::string_view build_id,
                                            const std::filesystem::path& debug_root) {
  bool hex = build_id.size() > 2 && std::all_of(build_id.begin(), build_id.end(), [](char c) {
               return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
             });
  if (!hex) return Fail(ErrorCode::kInvalidArgument, "malformed build-id '{}'", build_id);
  std::filesystem::path p = debug_root / ".build-id" / std::string(build_id.substr(0, 2)) /
                            (std::string(build_id.substr(2)) + ".debug");
  std::error_code ec;
  if (!std::filesystem::is_regular_file(p, ec)) {
    return Fail(ErrorCode::kNotFound, "no debug file for build-id {} ({})", build_id, p.string());
  }
  return p;
}

}  // namespace patchlab
