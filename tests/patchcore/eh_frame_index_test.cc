// EhFrameIndex against the live memory of this process: the search table it
// finds in each module's decoded file is where the loader put it, and the
// bytes it serves are the ones in memory.
#include "patchcore/eh_frame_index.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <climits>
#include <cstring>

#include "tests/support/status_matchers.h"

namespace patchlab::patchcore {
namespace {

uint64_t MemoryWord(uint64_t addr) {
  uint64_t v;
  std::memcpy(&v, reinterpret_cast<const void*>(addr), sizeof v);
  return v;
}

TEST(EhFrameIndex, MatchesTheLoadedModulesOfThisProcess) {
  auto maps = ProcessMaps::Read(::getpid());
  ASSERT_OK(maps);
  auto modules = ModuleSet::Load(::getpid(), *maps);
  ASSERT_OK(modules);
  int indexed = 0;
  bool libc_seen = false;
  for (const LoadedModule& m : modules->modules()) {
    auto index = IndexEhFrame(m);
    if (!index) continue;
    ++indexed;
    libc_seen = libc_seen || m.path.find("/libc.so") != std::string::npos;
    SCOPED_TRACE(m.path);
    EXPECT_TRUE(m.range.Contains(RemotePtr(index->header)));
    EXPECT_EQ(*reinterpret_cast<const uint8_t*>(index->header), 1);  // the header's version
    EXPECT_GT(index->fde_count, 0u);
    // The first and the last table entry, and the header, read as served.
    for (uint64_t addr : {index->header, index->table, index->table + (index->fde_count - 1) * 8}) {
      auto word = index->ReadWord(addr);
      ASSERT_TRUE(word.has_value()) << std::hex << addr;
      EXPECT_EQ(*word, MemoryWord(addr)) << std::hex << addr;
    }
    // The table: (initial location, FDE) offsets from the header, sorted,
    // both inside the module; libc's covers getpid.
    int64_t last = INT64_MIN;
    for (uint64_t i = 0; i < index->fde_count; ++i) {
      int32_t entry[2];
      std::memcpy(entry, reinterpret_cast<const void*>(index->table + i * 8), sizeof entry);
      ASSERT_GE(entry[0], last) << "entry " << i;
      last = entry[0];
      ASSERT_TRUE(m.range.Contains(RemotePtr(index->header + entry[0]))) << "entry " << i;
      ASSERT_TRUE(m.range.Contains(RemotePtr(index->header + entry[1]))) << "entry " << i;
    }
    if (m.path.find("/libc.so") != std::string::npos) {
      const uint64_t getpid_at = reinterpret_cast<uint64_t>(&::getpid);
      int32_t first;
      std::memcpy(&first, reinterpret_cast<const void*>(index->table), sizeof first);
      EXPECT_LE(index->header + first, getpid_at);
      EXPECT_LT(getpid_at, index->header + last);
    }
    // Writable memory (here: the stack) is never served from the file.
    int local = 0;
    EXPECT_FALSE(index->ReadWord(reinterpret_cast<uint64_t>(&local)).has_value());
  }
  EXPECT_TRUE(libc_seen);
  EXPECT_GE(indexed, 2);  // this program and libc at least
}

TEST(EhFrameIndex, ModuleWithoutEhFrameHeaderHasNone) {
  // An object with no program headers at all (a relocatable file) stands
  // for a module whose tables libunwind-ptrace has to find itself.
  auto elf = ElfFile::Open("/usr/lib/x86_64-linux-gnu/crt1.o");
  if (!elf) GTEST_SKIP() << "no crt1.o here: " << elf.error().ToString();
  LoadedModule m;
  m.path = "/usr/lib/x86_64-linux-gnu/crt1.o";
  m.elf = std::make_shared<const ElfFile>(std::move(*elf));
  EXPECT_FALSE(IndexEhFrame(m).has_value());
}

}  // namespace
}  // namespace patchlab::patchcore
