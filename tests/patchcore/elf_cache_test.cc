// ElfCache knows a file by its identity, not its path: a library replaced on
// disk after it was cached is a different file, and a process that maps the
// new one must get the new one (and one that still maps the old one, the
// old one). The test maps real ELF files into this process.
#include "patchcore/elf_cache.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <thread>

#include "base/file_util.h"
#include "patchcore/process_scan.h"
#include "tests/support/status_matchers.h"

namespace patchlab::patchcore {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr const char* kLibz = "/lib/x86_64-linux-gnu/libz.so.1";
constexpr const char* kTrue = "/usr/bin/true";

// A private read-only mapping of `path`, unmapped on destruction.
class Mapped {
 public:
  explicit Mapped(const fs::path& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    size_ = fs::file_size(path);
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (p != MAP_FAILED) addr_ = p;
  }
  ~Mapped() {
    if (addr_) ::munmap(addr_, size_);
  }
  Mapped(const Mapped&) = delete;
  Mapped& operator=(const Mapped&) = delete;

  // This process's maps entry of the mapping.
  std::optional<MapEntry> Entry() const {
    auto maps = ProcessMaps::Read(::getpid());
    if (!addr_ || !maps) return std::nullopt;
    const MapEntry* e = maps->Find(RemotePtr(reinterpret_cast<uint64_t>(addr_)));
    if (!e) return std::nullopt;
    return *e;
  }

 private:
  void* addr_ = nullptr;
  size_t size_ = 0;
};

std::string BuildIdOf(const char* path) {
  auto elf = ElfFile::Open(path);
  return elf ? elf->build_id() : "";
}

fs::path FreshDir() {
  fs::path dir = fs::temp_directory_path() / ("elf_cache_test-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string CachedBuildId(ElfCache& cache, const MapEntry& e) {
  auto elf = cache.Module(::getpid(), e);
  return elf ? (*elf)->build_id() : "error: " + elf.error().ToString();
}

TEST(ElfCache, FileReplacedOnDiskIsNotServedFromTheCache) {
  if (!fs::exists(kLibz) || !fs::exists(kTrue))
    GTEST_SKIP() << "needs " << kLibz << " and " << kTrue;
  const std::string libz_id = BuildIdOf(kLibz), true_id = BuildIdOf(kTrue);
  ASSERT_FALSE(libz_id.empty());
  ASSERT_NE(libz_id, true_id);
  const fs::path dir = FreshDir();
  const fs::path lib = dir / "libx.so";
  fs::copy_file(kLibz, lib);
  ElfCache cache;
  Mapped old_map(lib);
  auto old_entry = old_map.Entry();
  ASSERT_TRUE(old_entry.has_value());
  EXPECT_EQ(CachedBuildId(cache, *old_entry), libz_id);

  // Replaced the way package managers do: a new file renamed over the path.
  fs::copy_file(kTrue, dir / "new.tmp");
  fs::rename(dir / "new.tmp", lib);
  Mapped new_map(lib);
  auto new_entry = new_map.Entry();
  ASSERT_TRUE(new_entry.has_value());
  EXPECT_EQ(CachedBuildId(cache, *new_entry), true_id);
  // The process that mapped the old file still gets the old one.
  EXPECT_EQ(CachedBuildId(cache, *old_entry), libz_id);

  // Rewritten in place (same inode): its size and time differ, so it is
  // read again.
  {
    auto bytes = ReadFile(kLibz);
    ASSERT_OK(bytes);
    int fd = ::open(lib.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, bytes->data(), bytes->size()), static_cast<ssize_t>(bytes->size()));
    ::close(fd);
  }
  Mapped rewritten(lib);
  auto rewritten_entry = rewritten.Entry();
  ASSERT_TRUE(rewritten_entry.has_value());
  EXPECT_EQ(rewritten_entry->inode, new_entry->inode);
  EXPECT_EQ(CachedBuildId(cache, *rewritten_entry), libz_id);
  fs::remove_all(dir);
}

// A mapping that goes between reading the maps and opening its file is not
// the process ending: the scanner must not answer "gone" for a live process
// (system-wide apply dropped such a process without a word). A thread maps
// and unmaps a deleted copy of /usr/bin/true (reached through map_files, so
// an unmapped one is ENOENT) while this process is scanned for a module it
// does not map: no scan may answer "gone" (which drops the process without a
// word); each answers "not mapped", or, when every re-read raced, an error
// that names the pid (reported as uninspected).
TEST(ModuleScanner, AMappingThatComesAndGoesIsNotTheProcessEnding) {
  const fs::path dir = fs::path(::testing::TempDir()) / "scanner-flicker";
  fs::create_directories(dir);
  const fs::path copy = dir / "true-copy";
  fs::copy_file(kTrue, copy, fs::copy_options::overwrite_existing);
  int fd = ::open(copy.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  fs::remove(copy);  // the maps say "(deleted)": the scanner goes to map_files
  std::atomic<bool> stop{false};
  std::thread flicker([&] {
    while (!stop.load()) {
      void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
      if (p != MAP_FAILED) ::munmap(p, 4096);
    }
  });
  const ProcessInfo self{::getpid(), 0, ::getppid(), "self"};
  ElfCache files;
  int answered = 0, gone = 0;
  std::string first_gone;
  for (int i = 0; i < 300; ++i) {
    ModuleScanner scanner(std::string(40, 'f'), files);
    auto path = scanner.MappedPath(self);
    if (path) {
      EXPECT_FALSE(*path);
      ++answered;
    } else if (path.error().code() == ErrorCode::kTargetGone) {
      if (gone++ == 0) first_gone = path.error().ToString();
    } else {
      EXPECT_THAT(path.error().ToString(), HasSubstr(std::to_string(self.pid)));
    }
  }
  stop = true;
  flicker.join();
  ::close(fd);
  fs::remove_all(dir);
  EXPECT_EQ(gone, 0) << first_gone;
  EXPECT_GT(answered, 0);
}

}  // namespace
}  // namespace patchlab::patchcore
