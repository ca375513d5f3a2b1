#include "harness/vm/internal/cpio_writer.h"

#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <utility>

namespace patchlab::harness::internal {

std::string CpioWriter::Normalize(std::string_view path) {
  while (!path.empty() && path.front() == '/') path.remove_prefix(1);
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  if (path.empty()) std::abort();  // the root is implicit; adding it is a bug
  return std::string(path);
}

bool CpioWriter::Contains(std::string_view path) const {
  return names_.count(Normalize(path)) != 0;
}

void CpioWriter::AddParents(const std::string& path) {
  for (size_t slash = path.find('/'); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    std::string dir = path.substr(0, slash);
    if (!names_.count(dir)) AddEntry(dir, S_IFDIR | 0755, {}, 0, 0);
  }
}

void CpioWriter::AddEntry(const std::string& path, uint32_t mode, std::string_view data,
                          uint32_t rdev_major, uint32_t rdev_minor, CpioOwner owner) {
  names_.insert(path);
  char header[111];
  // newc: magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
  // rdevmajor, rdevminor, namesize (with NUL), check; all 8-digit hex.
  std::snprintf(header, sizeof header, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
                next_ino_++, mode, owner.uid, owner.gid, S_ISDIR(mode) ? 2u : 1u, 0u,
                static_cast<uint32_t>(data.size()), 0u, 0u, rdev_major, rdev_minor,
                static_cast<uint32_t>(path.size() + 1), 0u);
  out_.append(header, 110);
  out_.append(path);
  out_.push_back('\0');
  out_.append((4 - out_.size() % 4) % 4, '\0');
  out_.append(data);
  out_.append((4 - out_.size() % 4) % 4, '\0');
}

void CpioWriter::AddDirectory(std::string_view path, mode_t mode, CpioOwner owner) {
  std::string p = Normalize(path);
  if (names_.count(p)) return;
  AddParents(p);
  AddEntry(p, S_IFDIR | (mode & 07777), {}, 0, 0, owner);
}

void CpioWriter::AddFile(std::string_view path, mode_t mode, std::string_view data,
                         CpioOwner owner) {
  std::string p = Normalize(path);
  AddParents(p);
  AddEntry(p, S_IFREG | (mode & 07777), data, 0, 0, owner);
}

void CpioWriter::AddSymlink(std::string_view path, std::string_view target, CpioOwner owner) {
  std::string p = Normalize(path);
  AddParents(p);
  AddEntry(p, S_IFLNK | 0777, target, 0, 0, owner);
}

void CpioWriter::AddCharDevice(std::string_view path, mode_t mode, uint32_t major, uint32_t minor) {
  std::string p = Normalize(path);
  AddParents(p);
  AddEntry(p, S_IFCHR | (mode & 07777), {}, major, minor);
}

std::string CpioWriter::Finish() {
  AddEntry("TRAILER!!!", 0, {}, 0, 0);
  // The kernel reads the initramfs in 512-byte blocks' worth of padding happily;
  // pad like GNU cpio so concatenated archives stay aligned.
  out_.append((512 - out_.size() % 512) % 512, '\0');
  names_.clear();
  next_ino_ = 1;
  return std::exchange(out_, {});
}

}  // namespace patchlab::harness::internal
