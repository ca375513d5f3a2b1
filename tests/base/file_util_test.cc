#include "base/file_util.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "tests/support/status_matchers.h"

using ::testing::HasSubstr;

namespace patchlab {
namespace {

namespace fs = std::filesystem;

fs::path FreshDir(const char* name) {
  fs::path dir = fs::path(::testing::TempDir()) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

TEST(FileUtil, WriteAtomicReplacesContentAndSetsMode) {
  fs::path dir = FreshDir("atomic");
  fs::path file = dir / "state.json";
  ASSERT_TRUE(WriteFileAtomic(file, "old").has_value());
  ASSERT_TRUE(WriteFileAtomic(file, "new content", 0600).has_value());
  EXPECT_EQ(*ReadFile(file), "new content");
  struct stat st;
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // No temporary left behind.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
}

// Without fsync the new file takes the old one's name by a swap
// (RENAME_EXCHANGE); the old content must go with the temporary.
TEST(FileUtil, WriteAtomicForProcessCrashReplacesAndLeavesNoTemporary) {
  fs::path dir = FreshDir("atomic_nosync");
  fs::path file = dir / "state.json";
  ASSERT_OK(WriteFileAtomic(file, "first", 0600, Durability::kProcessCrash));
  EXPECT_EQ(*ReadFile(file), "first");
  for (int i = 0; i < 3; ++i) {
    const std::string content = "content " + std::to_string(i);
    ASSERT_OK(WriteFileAtomic(file, content, 0640, Durability::kProcessCrash));
    EXPECT_EQ(*ReadFile(file), content);
  }
  struct stat st;
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  EXPECT_EQ(st.st_nlink, 1u);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
}

TEST(FileUtil, WriteAtomicFailureNamesFileAndKeepsOldContent) {
  fs::path dir = FreshDir("atomic_fail");
  fs::path file = dir / "kept.txt";
  ASSERT_TRUE(WriteFileAtomic(file, "precious").has_value());
  // A directory where the file's folder should be makes the write fail.
  auto r = WriteFileAtomic(dir / "missing" / "x.txt", "data");
  ASSERT_FALSE(r.has_value());
  EXPECT_THAT(r.error().ToString(), HasSubstr("missing/x.txt"));
  EXPECT_EQ(*ReadFile(file), "precious");
}

TEST(FileUtil, WriteAtomicOnFullDiskLeavesOldFile) {
  // A real full disk: a 64 KiB tmpfs. Needs root to mount; CI runs as root.
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a tiny tmpfs";
  fs::path dir = FreshDir("fulldisk");
  if (::system(("mount -t tmpfs -o size=64k tmpfs " + dir.string() + " 2>/dev/null").c_str()) !=
      0) {
    GTEST_SKIP() << "cannot mount tmpfs here";
  }
  struct Unmount {
    fs::path dir;
    ~Unmount() { [[maybe_unused]] int rc = ::system(("umount " + dir.string()).c_str()); }
  } unmount{dir};
  fs::path file = dir / "db";
  ASSERT_TRUE(WriteFileAtomic(file, "small").has_value());
  auto r = WriteFileAtomic(file, std::string(1 << 20, 'x'));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().sys_errno(), ENOSPC);
  EXPECT_THAT(r.error().ToString(), HasSubstr(file.string()));
  EXPECT_EQ(*ReadFile(file), "small");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
}

TEST(FileUtil, ReadMissingFileIsNotFound) {
  auto r = ReadFile("/nonexistent/file");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kNotFound);
  EXPECT_THAT(r.error().ToString(), HasSubstr("/nonexistent/file"));
}

TEST(FileUtil, MakeDirsCreatesParents) {
  fs::path dir = FreshDir("mkdirs") / "a" / "b" / "c";
  ASSERT_TRUE(MakeDirs(dir).has_value());
  EXPECT_TRUE(fs::is_directory(dir));
  ASSERT_TRUE(MakeDirs(dir).has_value());
}

TEST(FileUtil, Sha256MatchesKnownVector) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace
}  // namespace patchlab
