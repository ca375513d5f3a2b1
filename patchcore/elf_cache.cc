#include "patchcore/elf_cache.h"

#include <elf.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include "base/scoped_fd.h"
#include "patchcore/build_id.h"

namespace patchlab::patchcore {
namespace {

Status CheckElfMagic(int fd, const std::string& origin) {
  char magic[SELFMAG];
  if (::pread(fd, magic, SELFMAG, 0) != SELFMAG || std::memcmp(magic, ELFMAG, SELFMAG) != 0) {
    return Fail(ErrorCode::kParse, "{}: not an ELF file", origin);
  }
  return {};
}

Result<ScopedFd> OpenForReading(const std::string& path) {
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return FailErrno("open " + path);
  return fd;
}

}  // namespace

Result<ElfCache::Opened> ElfCache::Identify(pid_t pid, const MapEntry& e) {
  struct stat st;
  std::string path = fmt::format("/proc/{}/root{}", pid, e.path);
  if (::stat(path.c_str(), &st) != 0 || st.st_ino != e.inode || st.st_dev != e.dev) {
    // The path names another file now (replaced, deleted, or another mount
    // namespace's view): reach the mapped file itself.
    path = fmt::format("/proc/{}/map_files/{}", pid, e.MapFilesName());
    if (::stat(path.c_str(), &st) != 0) {
      if (errno == ENOENT || errno == ESRCH) {
        return Fail(ErrorCode::kTargetGone, "pid {}: mapping {} is gone", pid, e.path);
      }
      return FailErrno(fmt::format("stat the file pid {} maps at {} ({})", pid, e.start, e.path));
    }
  }
  return Opened{Key{st.st_dev, st.st_ino, st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec},
                std::move(path)};
}

template <typename T>
std::shared_ptr<ElfCache::Slot<T>> ElfCache::SlotFor(std::map<Key, std::shared_ptr<Slot<T>>>& slots,
                                                     const Key& key) {
  std::lock_guard lock(mu_);
  auto& slot = slots[key];
  if (!slot) slot = std::make_shared<Slot<T>>();
  return slot;
}

Result<std::shared_ptr<const ElfFile>> ElfCache::Module(pid_t pid, const MapEntry& e) {
  auto opened = Identify(pid, e);
  if (!opened) return std::unexpected(std::move(opened.error()));
  auto slot = SlotFor(modules_, opened->key);
  std::call_once(slot->once, [&] {
    slot->value = [&]() -> Result<std::shared_ptr<const ElfFile>> {
      auto fd = OpenForReading(opened->path);
      if (!fd) return std::unexpected(std::move(fd.error()));
      if (auto st = CheckElfMagic(fd->get(), e.path); !st) return std::unexpected(st.error());
      auto elf = ElfFile::Open(opened->path);
      if (!elf) return std::unexpected(std::move(elf.error()));
      return std::make_shared<const ElfFile>(std::move(*elf));
    }();
  });
  return *slot->value;
}

Result<std::string> ElfCache::BuildId(pid_t pid, const MapEntry& e) {
  auto opened = Identify(pid, e);
  if (!opened) return std::unexpected(std::move(opened.error()));
  auto slot = SlotFor(build_ids_, opened->key);
  std::call_once(slot->once, [&] {
    slot->value = [&]() -> Result<std::string> {
      auto fd = OpenForReading(opened->path);
      if (!fd) return std::unexpected(std::move(fd.error()));
      return ReadBuildId(fd->get(), e.path);
    }();
  });
  return *slot->value;
}

std::shared_ptr<const ElfFile> ElfCache::DebugFile(const std::string& build_id) {
  if (build_id.empty()) return nullptr;
  {
    std::lock_guard lock(mu_);
    if (auto it = debug_files_.find(build_id); it != debug_files_.end()) return it->second;
  }
  std::shared_ptr<const ElfFile> found;
  if (auto path = FindDebugFile(build_id); path) {
    if (auto d = ElfFile::Open(*path); d) found = std::make_shared<const ElfFile>(std::move(*d));
  }
  std::lock_guard lock(mu_);
  return debug_files_.emplace(build_id, std::move(found)).first->second;
}

}  // namespace patchlab::patchcore
