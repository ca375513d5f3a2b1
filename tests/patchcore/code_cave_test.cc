// Code caves are found in this very process's modules and checked against
// the files on disk: every cave must lie past the last file byte of an
// executable segment, inside that segment's last page, and read as zeros; a
// cave in the middle of code would be a patcher writing over live code.
#include "patchcore/code_cave.h"

#include <elf.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <set>
#include <string>

#include "base/elf_file.h"
#include "patchcore/island.h"
#include "tests/support/status_matchers.h"

namespace patchlab::patchcore {
namespace {

// This process's maps and memory.
class CodeCave : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = ProcessMaps::Read(::getpid());
    ASSERT_OK(m);
    maps.emplace(std::move(*m));
    auto mem = ProcessMemory::Open(::getpid());
    ASSERT_OK(mem);
    memory.emplace(std::move(*mem));
  }
  std::optional<ProcessMaps> maps;
  std::optional<ProcessMemory> memory;
};

// The ELF image a mapping belongs to: its file, or for the vdso the image
// itself, read from this process's memory.
Result<ElfFile> ImageOf(const MapEntry& e, const ProcessMemory& memory) {
  if (e.path != "[vdso]") return ElfFile::Open(e.path);
  auto bytes = memory.Read(e.start, static_cast<size_t>(e.end - e.start));
  if (!bytes) return std::unexpected(std::move(bytes.error()));
  return ElfFile::FromBytes(std::string(bytes->begin(), bytes->end()), "[vdso]");
}

TEST_F(CodeCave, EveryCaveIsPaddingAfterAnExecutableSegmentOfItsImage) {
  const auto caves = FindCodeCaves(*memory, *maps, CaveState::kFree);
  ASSERT_FALSE(caves.empty()) << "this test program, libc, ld.so and the vdso have no cave at all";
  bool in_vdso = false;
  for (RemotePtr cave : caves) {
    SCOPED_TRACE(fmt::format("cave at {}", cave));
    const MapEntry* e = maps->Find(cave);
    ASSERT_NE(e, nullptr);
    EXPECT_TRUE(e->exec && (e->is_file() || e->path == "[vdso]")) << e->path;
    in_vdso |= e->path == "[vdso]";
    ASSERT_LE(cave + static_cast<int64_t>(kCaveSize), e->end);
    EXPECT_EQ(cave.addr() % 8, 0u);
    // Past the end of the executable segment that this mapping holds, by
    // the image's own program headers, and no byte of any executable segment.
    auto elf = ImageOf(*e, *memory);
    ASSERT_OK(elf);
    const uint64_t file_offset = e->offset + static_cast<uint64_t>(cave - e->start);
    bool after_a_segment = false;
    for (const ElfSegment& s : elf->segments()) {
      if (s.type != PT_LOAD || !(s.flags & PF_X)) continue;
      const uint64_t end = s.offset + s.filesz;
      EXPECT_TRUE(file_offset >= end || file_offset + kCaveSize <= s.offset) << e->path;
      const uint64_t mapped_end = e->offset + static_cast<uint64_t>(e->end - e->start);
      if (end >= e->offset && end <= file_offset && file_offset + kCaveSize <= mapped_end) {
        after_a_segment = true;
      }
    }
    EXPECT_TRUE(after_a_segment) << e->path << " at file offset " << file_offset;
    auto bytes = memory->Read(cave, kCaveSize);
    ASSERT_OK(bytes);
    for (uint8_t b : *bytes) ASSERT_EQ(b, 0);
  }
  // Statically linked programs have the vdso's.
  EXPECT_TRUE(in_vdso);
  // One per executable segment: never two in the same page.
  std::set<uint64_t> pages;
  for (RemotePtr cave : caves) {
    EXPECT_TRUE(pages.insert(cave.addr() / 4096).second) << fmt::format("{}", cave);
  }
}

TEST_F(CodeCave, ACaveThatHoldsAStubIsFoundOnlyForRecovery) {
  const auto free_caves = FindCodeCaves(*memory, *maps, CaveState::kFree);
  ASSERT_FALSE(free_caves.empty());
  const RemotePtr cave = free_caves.front();
  const auto holding_before = FindCodeCaves(*memory, *maps, CaveState::kHolding);
  EXPECT_EQ(std::count(holding_before.begin(), holding_before.end(), cave), 0);
  // At most the first one, when asked for one.
  EXPECT_EQ(FindCodeCaves(*memory, *maps, CaveState::kFree, 1),
            std::vector<RemotePtr>{free_caves.front()});
  // A stub with its save area, as the patcher leaves it when it dies.
  // Writing through /proc/self/mem gives this process a private copy of the
  // page, as the patcher's write does in a target.
  std::vector<uint8_t> held(kCaveSize, 0);
  std::memcpy(held.data() + kCaveStubOffset, kIslandStub, sizeof kIslandStub);
  std::memcpy(held.data() + kCaveSaveOffset, kSaveAreaMagic, sizeof kSaveAreaMagic);
  ASSERT_OK(memory->Write(cave, held));
  auto now_free = FindCodeCaves(*memory, *maps, CaveState::kFree);
  auto holding = FindCodeCaves(*memory, *maps, CaveState::kHolding);
  ASSERT_OK(memory->Write(cave, std::vector<uint8_t>(kCaveSize, 0)));
  EXPECT_EQ(std::count(now_free.begin(), now_free.end(), cave), 0);
  EXPECT_EQ(std::count(holding.begin(), holding.end(), cave), 1);
}

}  // namespace
}  // namespace patchlab::patchcore
