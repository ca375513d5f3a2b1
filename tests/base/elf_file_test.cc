// ElfFile against real files: fixtures built by CMake (PIE and non-PIE), a
// stripped copy made with objcopy at test time, and the system's libz.so.1.
#include "base/elf_file.h"

#include <dlfcn.h>
#include <elf.h>
#include <gtest/gtest.h>
#include <link.h>

#include <cstring>
#include <filesystem>
#include <map>

#include "base/file_util.h"
#include "base/subprocess.h"
#include "tests/support/status_matchers.h"

using ::testing::HasSubstr;

namespace patchlab {
namespace {

namespace fs = std::filesystem;

const ElfSegment* FirstExecSegment(const ElfFile& f) {
  for (const ElfSegment& s : f.segments()) {
    if (s.type == PT_LOAD && (s.flags & PF_X)) return &s;
  }
  return nullptr;
}

// The path the dynamic loader maps for `soname`, or "" when it has none.
std::string LoadedPath(const char* soname) {
  void* handle = dlopen(soname, RTLD_NOW | RTLD_NOLOAD);
  if (!handle) handle = dlopen(soname, RTLD_NOW);
  if (!handle) return "";
  link_map* map = nullptr;
  std::string path;
  if (dlinfo(handle, RTLD_DI_LINKMAP, &map) == 0 && map && map->l_name) path = map->l_name;
  dlclose(handle);
  return path;
}

TEST(ElfFile, ReadsPieExecutable) {
  auto f = ElfFile::Open(ELF_FIXTURE_PIE);
  ASSERT_OK(f);
  EXPECT_EQ(f->type(), ElfType::kShared);
  EXPECT_NE(f->entry(), 0u);
  ASSERT_NE(FirstExecSegment(*f), nullptr);
  EXPECT_FALSE(f->LoadSegments().empty());
  EXPECT_EQ(f->build_id().size(), 40u) << f->build_id();
  ASSERT_NE(f->FindSection(".text"), nullptr);
  EXPECT_EQ(f->FindSection(".no.such.section"), nullptr);

  const ElfSymbol* exported = f->FindSymbol("exported_function");
  ASSERT_NE(exported, nullptr);
  EXPECT_TRUE(exported->defined);
  EXPECT_EQ(exported->type, SymbolType::kFunc);
  EXPECT_EQ(exported->binding, SymbolBinding::kGlobal);
  EXPECT_GT(exported->size, 0u);

  // Private symbols only live in .symtab.
  const ElfSymbol* helper = f->FindSymbol("hidden_helper");
  ASSERT_NE(helper, nullptr);
  EXPECT_EQ(helper->binding, SymbolBinding::kLocal);
  EXPECT_FALSE(helper->dynamic);
  const ElfSymbol* counter = f->FindSymbol("counter");
  ASSERT_NE(counter, nullptr);
  EXPECT_EQ(counter->type, SymbolType::kObject);

  // Lookup by address finds the containing function, also mid-function.
  EXPECT_EQ(f->SymbolAt(exported->value), exported);
  EXPECT_EQ(f->SymbolAt(exported->value + exported->size - 1), exported);
  EXPECT_NE(f->SymbolAt(exported->value + exported->size), exported);

  // The function's bytes through the segment mapping equal the section's.
  auto code = f->ReadAt(exported->value, exported->size);
  ASSERT_OK(code);
  auto off = f->FileOffsetOf(exported->value);
  ASSERT_TRUE(off.has_value());
  EXPECT_EQ(0, std::memcmp(code->data(), f->bytes().data() + *off, code->size()));

  // adler32 is undefined here and reached through the PLT: a JUMP_SLOT (or a
  // GLOB_DAT with -fno-plt) against it, and libz among the needed libraries.
  bool saw_adler = false;
  for (const ElfRelocation& r : f->dynamic_relocations()) {
    if (r.symbol == "adler32") {
      saw_adler = true;
      EXPECT_FALSE(r.symbol_defined);
      EXPECT_TRUE(r.type == R_X86_64_JUMP_SLOT || r.type == R_X86_64_GLOB_DAT) << r.type;
    }
  }
  EXPECT_TRUE(saw_adler);
  // A PIE has RELATIVE relocations (e.g. for its init arrays).
  EXPECT_TRUE(std::any_of(f->dynamic_relocations().begin(), f->dynamic_relocations().end(),
                          [](const ElfRelocation& r) { return r.type == R_X86_64_RELATIVE; }));
  EXPECT_NE(std::find(f->needed().begin(), f->needed().end(), "libz.so.1"), f->needed().end());
  const ElfSymbol* undefined_adler = f->FindSymbol("adler32");
  ASSERT_NE(undefined_adler, nullptr);
  EXPECT_FALSE(undefined_adler->defined);
}

TEST(ElfFile, ReadsNonPieExecutable) {
  auto f = ElfFile::Open(ELF_FIXTURE_NOPIE);
  ASSERT_OK(f);
  EXPECT_EQ(f->type(), ElfType::kExecutable);
  const ElfSymbol* exported = f->FindSymbol("exported_function");
  ASSERT_NE(exported, nullptr);
  EXPECT_GE(exported->value, 0x400000u);  // absolute link-time address
  EXPECT_EQ(f->SymbolAt(exported->value + 1), exported);
}

TEST(ElfFile, StrippedFileKeepsDynamicDataAndBuildId) {
  fs::path dir = fs::path(::testing::TempDir()) / "elf_stripped";
  fs::create_directories(dir);
  fs::path stripped = dir / "fixture.stripped";
  SubprocessOptions o;
  o.argv = {"objcopy", "--strip-all", ELF_FIXTURE_PIE, stripped.string()};
  auto r = RunSubprocess(o);
  if (!r) GTEST_SKIP() << "objcopy not available";
  ASSERT_TRUE(r->status.Success()) << r->stderr_data;

  auto full = ElfFile::Open(ELF_FIXTURE_PIE);
  auto f = ElfFile::Open(stripped);
  ASSERT_TRUE(full.has_value() && f.has_value());
  EXPECT_EQ(f->build_id(), full->build_id());
  EXPECT_EQ(f->FindSymbol("hidden_helper"), nullptr);  // .symtab is gone
  EXPECT_EQ(f->FindSection(".symtab"), nullptr);
  EXPECT_EQ(f->dynamic_relocations().size(), full->dynamic_relocations().size());
  EXPECT_EQ(f->needed(), full->needed());
}

TEST(ElfFile, ReadsSystemSharedLibrary) {
  std::string libz = LoadedPath("libz.so.1");
  if (libz.empty()) GTEST_SKIP() << "libz.so.1 is not loaded in this process";
  auto f = ElfFile::Open(libz);
  ASSERT_OK(f);
  EXPECT_EQ(f->type(), ElfType::kShared);
  EXPECT_EQ(f->soname(), "libz.so.1");
  EXPECT_NE(std::find(f->needed().begin(), f->needed().end(), "libc.so.6"), f->needed().end());
  const ElfSymbol* adler = f->FindSymbol("adler32");
  ASSERT_NE(adler, nullptr);
  EXPECT_TRUE(adler->defined);
  EXPECT_TRUE(adler->dynamic);
  EXPECT_EQ(adler->type, SymbolType::kFunc);
  EXPECT_FALSE(f->build_id().empty());
  EXPECT_FALSE(f->dynamic_relocations().empty());
}

TEST(ElfFile, SymbolVersionsPickTheDefaultUnlessOneIsNamed) {
  auto f = ElfFile::Open(ELF_FIXTURE_VERSIONED);
  ASSERT_OK(f);
  std::vector<const ElfSymbol*> all = f->FindSymbols("vfunc");
  ASSERT_EQ(all.size(), 2u);
  // The default version ranks first; the old one is kept, marked not default.
  EXPECT_EQ(all[0]->version, "VER_2");
  EXPECT_TRUE(all[0]->default_version);
  EXPECT_EQ(all[1]->version, "VER_1");
  EXPECT_FALSE(all[1]->default_version);
  EXPECT_EQ(f->FindSymbol("vfunc"), all[0]);
  EXPECT_EQ(f->FindSymbol("vfunc@VER_1"), all[1]);
  EXPECT_EQ(f->FindSymbol("vfunc@@VER_2"), all[0]);
  EXPECT_EQ(f->FindSymbol("vfunc@VER_3"), nullptr);
  // The two versions are the two functions the version script named.
  const ElfSymbol* v1 = f->FindSymbol("vfunc_v1");
  ASSERT_NE(v1, nullptr);
  EXPECT_EQ(all[1]->value, v1->value);
}

// A debug file's .symtab names versioned symbols "vfunc@VER_1" and it has no
// .dynsym: such a symbol is found by its own name (fuzz/elf_fuzzer found
// FindSymbol taking the '@' for a version request and returning nothing).
TEST(ElfFile, SymbolsWhoseNamesHoldAVersionAreFoundByThatName) {
  auto f = ElfFile::Open(ELF_FIXTURE_VERSIONED_DEBUG);
  ASSERT_OK(f);
  size_t with_at = 0;
  for (const ElfSymbol& s : f->symbols()) {
    if (s.name.empty()) continue;
    with_at += s.name.find('@') != std::string::npos;
    EXPECT_NE(f->FindSymbol(s.name), nullptr) << s.name;
  }
  EXPECT_EQ(with_at, 2u);
  const ElfSymbol* v1 = f->FindSymbol("vfunc@VER_1");
  ASSERT_NE(v1, nullptr);
  EXPECT_EQ(v1->value, f->FindSymbol("vfunc_v1")->value);
}

// The relocations of pointer_table: 100 RELATIVE ones whose addends are the
// three objects' addresses in turn, in either file.
void ExpectPointerTableRelocated(const char* path, std::string_view table) {
  auto f = ElfFile::Open(path);
  ASSERT_OK(f);
  const ElfSymbol* pt = f->FindSymbol("pointer_table");
  ASSERT_NE(pt, nullptr);
  const ElfSymbol* objects[3] = {f->FindSymbol("o0"), f->FindSymbol("o1"), f->FindSymbol("o2")};
  for (const ElfSymbol* o : objects) ASSERT_NE(o, nullptr);
  std::map<uint64_t, const ElfRelocation*> by_offset;
  for (const ElfRelocation& r : f->dynamic_relocations()) by_offset[r.offset] = &r;
  for (uint64_t i = 0; i < 100; ++i) {
    auto it = by_offset.find(pt->value + 8 * i);
    ASSERT_NE(it, by_offset.end()) << path << ": pointer_table[" << i << "] is not relocated";
    EXPECT_EQ(it->second->type, static_cast<uint32_t>(R_X86_64_RELATIVE));
    EXPECT_EQ(it->second->table, table);
    EXPECT_EQ(static_cast<uint64_t>(it->second->addend), objects[i % 3]->value)
        << "pointer_table[" << i << "]";
  }
}

TEST(ElfFile, PackedRelativeRelocationsAreUnpacked) {
  auto relr = ElfFile::Open(ELF_FIXTURE_RELR);
  ASSERT_OK(relr);
  ASSERT_NE(relr->FindSection(".relr.dyn"), nullptr) << "the linker did not pack them";
  ExpectPointerTableRelocated(ELF_FIXTURE_RELR, ".relr.dyn");
  ExpectPointerTableRelocated(ELF_FIXTURE_VERSIONED, ".rela.dyn");
}

TEST(ElfFile, ErrorsNameTheFile) {
  fs::path dir = fs::path(::testing::TempDir()) / "elf_bad";
  fs::create_directories(dir);
  ASSERT_TRUE(WriteFileAtomic(dir / "text.txt", "hello, not an ELF file").has_value());
  auto r = ElfFile::Open(dir / "text.txt");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kParse);
  EXPECT_THAT(r.error().ToString(), HasSubstr("text.txt")) << r.error().ToString();

  // A truncated ELF: the header survives, the rest does not.
  auto whole = ReadFile(ELF_FIXTURE_PIE);
  ASSERT_TRUE(whole.has_value());
  ASSERT_TRUE(WriteFileAtomic(dir / "cut.elf", whole->substr(0, 200)).has_value());
  auto cut = ElfFile::Open(dir / "cut.elf");
  EXPECT_FALSE(cut.has_value());
  if (!cut) {
    EXPECT_THAT(cut.error().ToString(), HasSubstr("cut.elf"));
  }

  auto missing = ElfFile::Open(dir / "absent.so");
  ASSERT_FALSE(missing.has_value());
  EXPECT_THAT(missing.error().ToString(), HasSubstr("absent.so"));
}

// A PT_LOAD whose p_offset is near 2^64: offset + rel wrapped to a small
// number, passed the bounds check and read the file's first bytes as the
// segment's (found by fuzz/elf_fuzzer.cc under UBSan: pointer overflow).
TEST(ElfFile, SegmentOffsetThatWrapsIsOutsideTheFile) {
  auto bytes = ReadFile(ELF_FIXTURE_PIE);
  ASSERT_OK(bytes);
  Elf64_Ehdr eh;
  std::memcpy(&eh, bytes->data(), sizeof eh);
  uint64_t exec_vaddr = 0;
  for (uint16_t i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    const size_t at = eh.e_phoff + size_t{i} * eh.e_phentsize;
    std::memcpy(&ph, bytes->data() + at, sizeof ph);
    if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
    exec_vaddr = ph.p_vaddr;
    ph.p_offset = ~uint64_t{0} - 15;  // -16: 32 bytes in, the sum wraps to 16
    std::memcpy(bytes->data() + at, &ph, sizeof ph);
    break;
  }
  ASSERT_NE(exec_vaddr, 0u);
  auto f = ElfFile::FromBytes(std::move(*bytes), "wrapped.elf");
  ASSERT_OK(f);
  auto read = f->ReadAt(exec_vaddr + 32, 8);
  ASSERT_FALSE(read.has_value()) << "read 8 bytes from file offset 16";
  EXPECT_THAT(read.error().ToString(), ::testing::HasSubstr("wrapped.elf: segment at"));
  EXPECT_THAT(read.error().ToString(), ::testing::HasSubstr("lies outside the file"));
}

// A PT_LOAD whose p_memsz a hostile header set to 2 GiB: a read inside it
// as large as a made-up DT_RELASZ allocated that much before anything was
// checked (found by fuzz/dwarf_fuzzer.cc: a 1.8 GB malloc). Refused, naming
// the file; a read within the file's size still works.
TEST(ElfFile, ReadLargerThanTheFileIsRefusedBeforeAllocating) {
  auto bytes = ReadFile(ELF_FIXTURE_PIE);
  ASSERT_OK(bytes);
  const uint64_t file_size = bytes->size();
  Elf64_Ehdr eh;
  std::memcpy(&eh, bytes->data(), sizeof eh);
  uint64_t vaddr = 0;
  for (uint16_t i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    const size_t at = eh.e_phoff + size_t{i} * eh.e_phentsize;
    std::memcpy(&ph, bytes->data() + at, sizeof ph);
    if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
    vaddr = ph.p_vaddr;
    ph.p_memsz = uint64_t{2} << 30;
    std::memcpy(bytes->data() + at, &ph, sizeof ph);
    break;
  }
  ASSERT_NE(vaddr, 0u);
  auto f = ElfFile::FromBytes(std::move(*bytes), "huge-memsz.elf");
  ASSERT_OK(f);
  auto huge = f->ReadAt(vaddr, uint64_t{1} << 30);
  ASSERT_FALSE(huge.has_value()) << "allocated 1 GiB for a file of " << file_size << " bytes";
  EXPECT_THAT(huge.error().ToString(), HasSubstr("huge-memsz.elf"));
  EXPECT_THAT(huge.error().ToString(), HasSubstr("more than the file's"));
  EXPECT_OK(f->ReadAt(vaddr, 16));
}

TEST(ElfFile, FindDebugFileUsesBuildIdLayout) {
  fs::path root = fs::path(::testing::TempDir()) / "debugroot";
  fs::remove_all(root);
  fs::create_directories(root / ".build-id" / "ab");
  ASSERT_TRUE(WriteFileAtomic(root / ".build-id" / "ab" / "cdef0123.debug", "x").has_value());
  auto found = FindDebugFile("abcdef0123", root);
  ASSERT_OK(found);
  EXPECT_EQ(*found, root / ".build-id" / "ab" / "cdef0123.debug");
  auto absent = FindDebugFile("abcdef0124", root);
  ASSERT_FALSE(absent.has_value());
  EXPECT_EQ(absent.error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(FindDebugFile("../etc", root).error().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace patchlab
