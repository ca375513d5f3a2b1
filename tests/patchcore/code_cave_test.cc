// Code caves are found in this very process's modules and checked against
// the files on disk: every cave must lie past the last file byte of an
// executable segment, inside that segment's last page, and read as zeros; a
// cave in the middle of code would be a patcher writing over live code.
#include "patchcore/code_cave.h"

#include <elf.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <set>
#include <string>

#include "base/elf_file.h"
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

TEST_F(CodeCave, EveryCaveIsPaddingAfterAnExecutableSegmentOfItsFile) {
  const auto caves = FindCodeCaves(*memory, *maps, /*zeroed_only=*/true);
  ASSERT_FALSE(caves.empty()) << "this test program, libc and ld.so have no cave at all";
  for (RemotePtr cave : caves) {
    SCOPED_TRACE(fmt::format("cave at {}", cave));
    const MapEntry* e = maps->Find(cave);
    ASSERT_NE(e, nullptr);
    EXPECT_TRUE(e->exec && e->is_file()) << e->path;
    ASSERT_LE(cave + static_cast<int64_t>(kCaveSize), e->end);
    EXPECT_EQ(cave.addr() % 8, 0u);
    // Past the end of the executable segment that this mapping holds, by
    // the file's own program headers, and within its last page.
    auto elf = ElfFile::Open(e->path);
    ASSERT_OK(elf);
    const uint64_t file_offset = e->offset + static_cast<uint64_t>(cave - e->start);
    bool after_a_segment = false;
    for (const ElfSegment& s : elf->segments()) {
      if (s.type != PT_LOAD) continue;
      const uint64_t end = s.offset + s.filesz;
      // No cave byte is a file byte of any executable segment.
      if (s.flags & PF_X) {
        EXPECT_TRUE(file_offset >= end || file_offset + kCaveSize <= s.offset) << e->path;
        if (file_offset >= end && file_offset - end < 8 &&
            (end & ~uint64_t{4095}) == (file_offset & ~uint64_t{4095})) {
          after_a_segment = true;
        }
      }
    }
    EXPECT_TRUE(after_a_segment) << e->path << " at file offset " << file_offset;
    auto bytes = memory->Read(cave, kCaveSize);
    ASSERT_OK(bytes);
    for (uint8_t b : *bytes) ASSERT_EQ(b, 0);
  }
  // One per executable segment: never two in the same page.
  std::set<uint64_t> pages;
  for (RemotePtr cave : caves)
    EXPECT_TRUE(pages.insert(cave.addr() / 4096).second) << fmt::format("{}", cave);
}

TEST_F(CodeCave, ACaveThatHoldsAStubIsFoundOnlyForRecovery) {
  const auto free_caves = FindCodeCaves(*memory, *maps, /*zeroed_only=*/true);
  ASSERT_FALSE(free_caves.empty());
  const RemotePtr cave = free_caves.front();
  // Writing through /proc/self/mem gives this process a private copy of the
  // page, as the patcher's write does in a target.
  const std::vector<uint8_t> stub = {0x0f, 0x05, 0xeb, 0xfe};
  ASSERT_OK(memory->Write(cave, stub));
  auto now_free = FindCodeCaves(*memory, *maps, /*zeroed_only=*/true);
  auto all = FindCodeCaves(*memory, *maps, /*zeroed_only=*/false);
  ASSERT_OK(memory->Write(cave, std::vector<uint8_t>(stub.size(), 0)));
  EXPECT_EQ(std::count(now_free.begin(), now_free.end(), cave), 0);
  EXPECT_EQ(std::count(all.begin(), all.end(), cave), 1);
}

}  // namespace
}  // namespace patchlab::patchcore
