// The images' copies of the lab's binaries lose their DWARF sections and
// nothing else: same symbols, same build-id, the host file untouched; files
// without debug info (Debian's libraries, scripts) go in byte for byte.
#include "harness/vm/internal/debug_strip.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "base/elf_file.h"
#include "base/file_util.h"
#include "tests/support/status_matchers.h"

namespace patchlab::harness {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

TEST(DebugStrip, TheAgentLosesItsDebugInfoButKeepsSymbolsAndBuildId) {
  const fs::path agent = PATCHLAB_AGENT_BINARY;
  auto before = ReadFile(agent);
  ASSERT_OK(before);
  auto host = ElfFile::Open(agent);
  ASSERT_OK(host);
  if (host->FindSection(".debug_info") == nullptr)
    GTEST_SKIP() << agent << " was built without debug info: nothing to strip";

  auto stripped = internal::ReadWithoutDebugInfo(agent);
  ASSERT_OK(stripped);
  EXPECT_LT(stripped->size(), before->size());
  auto elf = ElfFile::FromBytes(*stripped, agent);
  ASSERT_OK(elf);
  for (const ElfSection& s : elf->sections())
    EXPECT_FALSE(s.name.starts_with(".debug_")) << s.name << " is still there";
  EXPECT_NE(elf->FindSection(".symtab"), nullptr) << "--strip-debug keeps the symbols";
  EXPECT_NE(elf->FindSection(".text"), nullptr);
  EXPECT_EQ(elf->build_id(), host->build_id());
  EXPECT_FALSE(elf->build_id().empty());
  EXPECT_EQ(*ReadFile(agent), *before) << "the build's own file must not change";
}

TEST(DebugStrip, FilesWithoutDebugInfoGoInByteForByte) {
  // A text file, a Debian library (shipped stripped) and an already stripped agent.
  auto stripped_agent = internal::ReadWithoutDebugInfo(PATCHLAB_AGENT_BINARY);
  ASSERT_OK(stripped_agent);
  char tmpl[] = "/tmp/debug-strip-test-XXXXXX";
  fs::path dir = ::mkdtemp(tmpl);
  ASSERT_OK(WriteFileAtomic(dir / "agent", *stripped_agent, 0755));
  for (fs::path file : {fs::path(PATCHLAB_SOURCE_DIR) / "vm-images/images.yaml",
                        fs::canonical("/lib/x86_64-linux-gnu/libz.so.1"), dir / "agent"}) {
    auto bytes = ReadFile(file);
    ASSERT_OK(bytes);
    auto out = internal::ReadWithoutDebugInfo(file);
    ASSERT_OK(out);
    EXPECT_TRUE(*out == *bytes) << file << " changed";
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
}

TEST(DebugStrip, AMissingFileIsNamed) {
  auto out = internal::ReadWithoutDebugInfo("/nonexistent/patchlab-agent");
  ASSERT_FALSE(out);
  EXPECT_THAT(out.error().ToString(), HasSubstr("/nonexistent/patchlab-agent"));
}

}  // namespace
}  // namespace patchlab::harness
