// CpioWriter: builds a newc ("070701") cpio archive in memory, the format the
// Linux kernel unpacks as an initramfs. Entries get fixed owners (root), mtime 0
// and inode numbers in insertion order, so the same inputs give the same bytes.
// Parent directories are added automatically (0755) before their children.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <set>
#include <string>
#include <string_view>

namespace patchlab::harness::internal {

// Who owns an entry (a Debian system's files keep their packages' owners).
struct CpioOwner {
  uint32_t uid = 0;
  uint32_t gid = 0;
};

class CpioWriter {
 public:
  // `path` is absolute ("/usr/bin/x") or relative; it is stored relative.
  void AddDirectory(std::string_view path, mode_t mode = 0755, CpioOwner owner = {});
  void AddFile(std::string_view path, mode_t mode, std::string_view data, CpioOwner owner = {});
  void AddSymlink(std::string_view path, std::string_view target, CpioOwner owner = {});
  void AddCharDevice(std::string_view path, mode_t mode, uint32_t major, uint32_t minor);
  bool Contains(std::string_view path) const;
  // Appends the trailer and returns the archive; the writer is then empty.
  std::string Finish();

 private:
  void AddParents(const std::string& path);
  void AddEntry(const std::string& path, uint32_t mode, std::string_view data, uint32_t rdev_major,
                uint32_t rdev_minor, CpioOwner owner = {});
  static std::string Normalize(std::string_view path);

  std::string out_;
  std::set<std::string> names_;
  uint32_t next_ino_ = 1;
};

}  // namespace patchlab::harness::internal
