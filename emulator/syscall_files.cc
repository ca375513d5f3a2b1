// The SyscallLayer's file system (syscalls.h): the root directory of an
// empty tmpfs owned by root with mode 0755, nothing in it, and the working
// directory there. A path is walked as the kernel walks it: "." and ".."
// stay at the root, the first other name does not exist (-ENOENT), or is
// too long to look up (-ENAMETOOLONG, over 255 bytes); creating a name in
// the root needs write permission there, which user 1000 lacks (-EACCES).
// Each call's checks come in the kernel's order (fs/namei.c, fs/open.c,
// fs/stat.c): its flags, then the path's bytes (getname), then the
// starting directory (a relative path with a descriptor that is not
// AT_FDCWD: 0-2 are not directories, -ENOTDIR; any other is closed,
// -EBADF), then the walk. Each call answered is compared with its paths and
// its other arguments. Calls that would reach the root itself in a way not
// modelled (opening it, changing its owner) end the run inconclusive.
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/statvfs.h>
#include <unicorn/unicorn.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>

#include "emulator/internal/guest_abi.h"
#include "emulator/internal/sandbox_live.h"
#include "emulator/sandbox.h"
#include "emulator/syscalls.h"

namespace patchlab::emulator {
namespace {

// The kernel's __O_TMPFILE bit alone: glibc's O_TMPFILE and __O_TMPFILE
// both carry O_DIRECTORY too, and <linux/fcntl.h> clashes with <fcntl.h>.
constexpr uint64_t kOTmpfileBit = 020000000;
// The root's inode: a tmpfs directory holding nothing, made at boot.
constexpr uint64_t kRootDev = 0x15, kRootIno = 1, kRootNlink = 2, kRootSize = 40;
constexpr uint32_t kRootMode = 040755;
constexpr uint64_t kBootTime = 1767225600 - 100000;  // syscalls.cc's epochs

uint64_t Errno(int e) { return static_cast<uint64_t>(-static_cast<int64_t>(e)); }

// Where a path's walk ends.
struct Walk {
  int error = 0;              // the walk failed with this errno
  bool last_is_name = false;  // the last component is a name (missing: nothing exists)
  bool last_is_dot = false;   // "." or ".."
  bool trailing_slash = false;
  // Otherwise the path names the root ("/", or only "." and "..").
};

// Walks `path` (not empty) from the root, as the root holds nothing.
Walk WalkPath(const std::string& path) {
  Walk w;
  std::vector<std::string_view> parts;
  std::string_view rest(path);
  while (!rest.empty()) {
    const size_t slash = rest.find('/');
    std::string_view part = rest.substr(0, slash);
    if (!part.empty()) parts.push_back(part);
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  w.trailing_slash = path.ends_with('/');
  for (size_t i = 0; i < parts.size(); ++i) {
    const bool dots = parts[i] == "." || parts[i] == "..";
    const bool last = i + 1 == parts.size();
    if (parts[i].size() > NAME_MAX) {
      w.error = ENAMETOOLONG;
      return w;
    }
    if (dots) {
      w.last_is_dot = last;
      continue;
    }
    if (!last) {
      w.error = ENOENT;  // a directory that does not exist
      return w;
    }
    w.last_is_name = true;
  }
  return w;
}

// struct stat of the root directory.
void FillRootStat(uint8_t* guest) {
  struct stat st {};
  st.st_dev = kRootDev;
  st.st_ino = kRootIno;
  st.st_nlink = kRootNlink;
  st.st_mode = kRootMode;
  st.st_size = kRootSize;
  st.st_blksize = 4096;
  st.st_atim.tv_sec = st.st_mtim.tv_sec = st.st_ctim.tv_sec = kBootTime;
  internal::CopyOut(st, guest);
}

// struct statfs of the root's tmpfs: 1 MiB, empty.
void FillRootStatfs(uint8_t* guest) {
  struct statfs sf {};
  sf.f_type = TMPFS_MAGIC;
  sf.f_bsize = sf.f_frsize = 4096;
  sf.f_blocks = sf.f_bfree = sf.f_bavail = 256;
  sf.f_files = 1024;
  sf.f_ffree = 1023;
  sf.f_namelen = NAME_MAX;
  sf.f_flags = ST_RELATIME | internal::kStValid;
  internal::CopyOut(sf, guest);
}

}  // namespace

void SyscallLayer::Record(const Call& c, std::vector<uint64_t> args, uint64_t ret,
                          std::string data) {
  sandbox_.live().out.calls.push_back(
      StubCall{SyscallName(c.nr), std::move(args), ret, std::move(data)});
}

namespace {

// A path argument as getname reads it: its bytes, or the errno.
struct PathArg {
  std::string text;
  int error = 0;
};

}  // namespace

// The file system's answers, one family per function. Each takes the call
// and returns the answer (recorded by PathCall) or nullopt.
class SyscallLayer::FileSystem {
 public:
  explicit FileSystem(SyscallLayer& layer) : layer_(layer) {}

  PathArg Read(uint64_t addr) const {
    PathArg p;
    for (uint64_t i = 0; i < PATH_MAX; ++i) {
      const uint8_t* b = layer_.sandbox_.HostPtr(addr + i, 1, UC_PROT_READ);
      if (b == nullptr) {
        p.error = EFAULT;
        return p;
      }
      if (*b == 0) {
        if (p.text.empty()) p.error = ENOENT;
        return p;
      }
      p.text.push_back(static_cast<char>(*b));
    }
    p.error = ENAMETOOLONG;
    return p;
  }

  // The walk of a path read from `addr` relative to `dirfd`; `path` gets
  // its bytes. An error in `Walk::error`.
  Walk Lookup(uint64_t dirfd, uint64_t addr, std::string* path) const {
    PathArg p = Read(addr);
    *path = p.text;
    if (p.error != 0) return Walk{.error = p.error};
    if (!p.text.starts_with('/') && static_cast<int32_t>(dirfd) != AT_FDCWD)
      return Walk{.error = layer_.IsOpen(dirfd) ? ENOTDIR : EBADF};
    return WalkPath(p.text);
  }

  // The errno of a lookup that needs the file to exist; 0 for the root.
  static int Existing(const Walk& w) {
    if (w.error != 0) return w.error;
    return w.last_is_name ? ENOENT : 0;
  }

  // Creating the last component (mkdir, symlink, mknod): filename_create.
  static int Create(const Walk& w, bool directory) {
    if (w.error != 0) return w.error;
    if (!w.last_is_name) return EEXIST;
    if (w.trailing_slash && !directory) return ENOENT;
    return EACCES;  // the root is not writable by user 1000
  }

  std::optional<uint64_t> Open(uint64_t dirfd, uint64_t path_addr, uint64_t flags,
                               std::string* path) const {
    const Walk w = Lookup(dirfd, path_addr, path);
    if (w.error != 0) return Errno(w.error);
    if ((flags & kOTmpfileBit) == kOTmpfileBit) return std::nullopt;
    if (w.last_is_name) {
      if ((flags & O_CREAT) == 0) return Errno(ENOENT);
      return Errno(w.trailing_slash ? EISDIR : EACCES);
    }
    // The root itself.
    if ((flags & O_CREAT) != 0) return Errno((flags & O_EXCL) != 0 ? EEXIST : EISDIR);
    if ((flags & O_ACCMODE) != 0) return Errno(EISDIR);
    return std::nullopt;  // a descriptor of the root directory: not modelled
  }

  std::optional<uint64_t> Stat(uint64_t dirfd, uint64_t path_addr, uint64_t buf,
                               std::string* path) const {
    const Walk w = Lookup(dirfd, path_addr, path);
    if (int e = Existing(w); e != 0) return Errno(e);
    uint8_t* st = layer_.Writable(buf, sizeof(struct stat));
    if (st == nullptr) return Errno(EFAULT);
    FillRootStat(st);
    return 0;
  }

  std::optional<uint64_t> Access(uint64_t dirfd, uint64_t path_addr, uint64_t mode,
                                 std::string* path) const {
    if ((mode & ~7ull) != 0) return Errno(EINVAL);
    const Walk w = Lookup(dirfd, path_addr, path);
    if (int e = Existing(w); e != 0) return Errno(e);
    return (mode & W_OK) != 0 ? Errno(EACCES) : 0;
  }

  std::optional<uint64_t> Rename(const Call& c, std::string* paths) const;
  std::optional<uint64_t> Remove(uint64_t dirfd, uint64_t path_addr, bool directory,
                                 std::string* path) const;

 private:
  SyscallLayer& layer_;
};

std::optional<uint64_t> SyscallLayer::FileSystem::Rename(const Call& c, std::string* paths) const {
  // rename(old, new), renameat(olddfd, old, newdfd, new), renameat2(..., flags)
  const bool at = c.nr != SYS_rename;
  const uint64_t old_fd = at ? c.a[0] : static_cast<uint64_t>(AT_FDCWD);
  const uint64_t old_addr = at ? c.a[1] : c.a[0];
  const uint64_t new_fd = at ? c.a[2] : static_cast<uint64_t>(AT_FDCWD);
  const uint64_t new_addr = at ? c.a[3] : c.a[1];
  const uint64_t flags = c.nr == SYS_renameat2 ? c.a[4] : 0;
  if ((flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT)) != 0) return Errno(EINVAL);
  if ((flags & (RENAME_NOREPLACE | RENAME_WHITEOUT)) != 0 && (flags & RENAME_EXCHANGE) != 0)
    return Errno(EINVAL);
  if ((flags & RENAME_WHITEOUT) != 0) return std::nullopt;
  std::string old_path, new_path;
  const Walk o = Lookup(old_fd, old_addr, &old_path);
  *paths = old_path;
  if (o.error != 0) return Errno(o.error);
  const Walk n = Lookup(new_fd, new_addr, &new_path);
  *paths += std::string(1, '\0') + new_path;
  if (n.error != 0) return Errno(n.error);
  if (!o.last_is_name) return Errno(EBUSY);
  if (!n.last_is_name) return Errno((flags & RENAME_NOREPLACE) != 0 ? EEXIST : EBUSY);
  return Errno(ENOENT);  // the source does not exist
}

std::optional<uint64_t> SyscallLayer::FileSystem::Remove(uint64_t dirfd, uint64_t path_addr,
                                                         bool directory, std::string* path) const {
  const Walk w = Lookup(dirfd, path_addr, path);
  if (w.error != 0) return Errno(w.error);
  if (w.last_is_name) return Errno(ENOENT);
  if (!directory) return Errno(EISDIR);
  // rmdir of "/" (busy), of ".." (not empty), of "." (invalid).
  const std::string_view trimmed =
      std::string_view(*path).substr(0, path->find_last_not_of('/') + 1);
  if (!w.last_is_dot) return Errno(EBUSY);
  return Errno(trimmed.ends_with("..") ? ENOTEMPTY : EINVAL);
}

namespace {

constexpr uint64_t kCwd = static_cast<uint64_t>(static_cast<int64_t>(AT_FDCWD));

}  // namespace

// open, creat, openat; the stat and access families; readlink; truncate;
// statfs; chdir; getcwd.
std::optional<uint64_t> SyscallLayer::PathCall(const Call& c) {
  FileSystem fs(*this);
  std::string path;
  std::vector<uint64_t> args;  // the arguments that are not pointers
  std::optional<uint64_t> ret;
  switch (c.nr) {
    case SYS_open:
    case SYS_creat:
    case SYS_openat: {
      const bool at = c.nr == SYS_openat;
      const uint64_t flags = c.nr == SYS_creat ? (O_CREAT | O_WRONLY | O_TRUNC) : c.a[at ? 2 : 1];
      const uint64_t mode = c.a[c.nr == SYS_creat ? 1 : at ? 3 : 2];
      args = {at ? c.a[0] : kCwd, flags, (flags & O_CREAT) != 0 ? mode : 0};
      ret = fs.Open(at ? c.a[0] : kCwd, c.a[at ? 1 : 0], flags, &path);
      break;
    }
    case SYS_stat:
    case SYS_lstat:
      ret = fs.Stat(kCwd, c.a[0], c.a[1], &path);
      break;
    case SYS_newfstatat:
      args = {c.a[0], c.a[3]};
      if ((c.a[3] &
           ~(AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_EMPTY_PATH | AT_STATX_SYNC_TYPE)) != 0)
        ret = Errno(EINVAL);
      else
        ret = fs.Stat(c.a[0], c.a[1], c.a[2], &path);
      break;
    case SYS_statx: {
      args = {c.a[0], c.a[2], c.a[3]};
      const uint64_t known =
          AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_EMPTY_PATH | AT_STATX_SYNC_TYPE;
      if ((c.a[2] & ~known) != 0 || (c.a[2] & AT_STATX_SYNC_TYPE) == AT_STATX_SYNC_TYPE ||
          (c.a[3] & 0x80000000u) != 0) {
        ret = Errno(EINVAL);
        break;
      }
      const Walk w = fs.Lookup(c.a[0], c.a[1], &path);
      if (int e = FileSystem::Existing(w); e != 0) ret = Errno(e);  // the root: not modelled
      break;
    }
    case SYS_access:
      args = {c.a[1]};
      ret = fs.Access(kCwd, c.a[0], c.a[1], &path);
      break;
    case SYS_faccessat:
    case SYS_faccessat2:
      args = {c.a[0], c.a[2], c.nr == SYS_faccessat2 ? c.a[3] : 0};
      if (c.nr == SYS_faccessat2 &&
          (c.a[3] & ~(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH)) != 0)
        ret = Errno(EINVAL);
      else
        ret = fs.Access(c.a[0], c.a[1], c.a[2], &path);
      break;
    default:
      return PathCallMore(c);
  }
  if (!ret) return std::nullopt;
  Record(c, std::move(args), *ret, std::move(path));
  return ret;
}

// The rest of PathCall's calls.
std::optional<uint64_t> SyscallLayer::PathCallMore(const Call& c) {
  FileSystem fs(*this);
  std::string path;
  std::vector<uint64_t> args;
  std::optional<uint64_t> ret;
  switch (c.nr) {
    case SYS_readlink:
    case SYS_readlinkat: {
      const bool at = c.nr == SYS_readlinkat;
      const int32_t size = static_cast<int32_t>(c.a[at ? 3 : 2]);
      args = {at ? c.a[0] : kCwd, static_cast<uint64_t>(size)};
      if (size <= 0) {
        ret = Errno(EINVAL);
        break;
      }
      const Walk w = fs.Lookup(at ? c.a[0] : kCwd, c.a[at ? 1 : 0], &path);
      const int e = FileSystem::Existing(w);
      ret = Errno(e != 0 ? e : EINVAL);  // the root is not a symbolic link
      break;
    }
    case SYS_truncate: {
      args = {c.a[1]};
      if (static_cast<int64_t>(c.a[1]) < 0) {
        ret = Errno(EINVAL);
        break;
      }
      const int e = FileSystem::Existing(fs.Lookup(kCwd, c.a[0], &path));
      ret = Errno(e != 0 ? e : EISDIR);
      break;
    }
    case SYS_statfs: {
      const int e = FileSystem::Existing(fs.Lookup(kCwd, c.a[0], &path));
      if (e != 0) {
        ret = Errno(e);
      } else if (uint8_t* sf = Writable(c.a[1], sizeof(struct statfs)); sf == nullptr) {
        ret = Errno(EFAULT);
      } else {
        FillRootStatfs(sf);
        ret = 0;
      }
      break;
    }
    case SYS_chdir:
      ret = Errno(FileSystem::Existing(fs.Lookup(kCwd, c.a[0], &path)));  // "/": stays there, 0
      break;
    case SYS_getcwd: {
      args = {c.a[1]};
      uint8_t* buf = c.a[1] < 2 ? nullptr : Writable(c.a[0], 2);
      ret = c.a[1] < 2 ? Errno(ERANGE) : buf == nullptr ? Errno(EFAULT) : 2;
      if (buf != nullptr) std::memcpy(buf, "/", 2);
      break;
    }
    default:
      return PathChange(c);
  }
  if (!ret) return std::nullopt;
  Record(c, std::move(args), *ret, std::move(path));
  return ret;
}

// Calls that would change the file system: creating, removing, renaming,
// changing modes, owners and times.
std::optional<uint64_t> SyscallLayer::PathChange(const Call& c) {
  FileSystem fs(*this);
  std::string path;
  std::vector<uint64_t> args;
  std::optional<uint64_t> ret;
  switch (c.nr) {
    case SYS_mkdir:
    case SYS_mkdirat: {
      const bool at = c.nr == SYS_mkdirat;
      args = {at ? c.a[0] : kCwd, c.a[at ? 2 : 1]};
      ret = Errno(FileSystem::Create(fs.Lookup(at ? c.a[0] : kCwd, c.a[at ? 1 : 0], &path), true));
      break;
    }
    case SYS_symlink:
    case SYS_symlinkat: {
      const bool at = c.nr == SYS_symlinkat;
      PathArg target = fs.Read(c.a[0]);
      path = target.text + std::string(1, '\0');
      args = {at ? c.a[1] : kCwd};
      if (target.error != 0) {
        ret = Errno(target.error);
        break;
      }
      std::string link;
      ret = Errno(FileSystem::Create(fs.Lookup(at ? c.a[1] : kCwd, c.a[at ? 2 : 1], &link), false));
      path += link;
      break;
    }
    case SYS_link:
    case SYS_linkat: {
      const bool at = c.nr == SYS_linkat;
      args = {at ? c.a[0] : kCwd, at ? c.a[2] : kCwd, at ? c.a[4] : 0};
      if (at && (c.a[4] & ~(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH)) != 0) {
        ret = Errno(EINVAL);
        break;
      }
      const Walk w = fs.Lookup(at ? c.a[0] : kCwd, c.a[at ? 1 : 0], &path);
      if (int e = FileSystem::Existing(w); e != 0)
        ret = Errno(e);  // linking the root: not modelled
      break;
    }
    case SYS_unlink:
    case SYS_rmdir:
      ret = fs.Remove(kCwd, c.a[0], c.nr == SYS_rmdir, &path);
      break;
    case SYS_unlinkat:
      args = {c.a[0], c.a[2]};
      ret = (c.a[2] & ~AT_REMOVEDIR) != 0
                ? Errno(EINVAL)
                : fs.Remove(c.a[0], c.a[1], (c.a[2] & AT_REMOVEDIR) != 0, &path);
      break;
    case SYS_rename:
    case SYS_renameat:
    case SYS_renameat2:
      args = {c.nr == SYS_rename ? kCwd : c.a[0], c.nr == SYS_rename ? kCwd : c.a[2],
              c.nr == SYS_renameat2 ? c.a[4] : 0};
      ret = fs.Rename(c, &path);
      break;
    default:
      return PathAttributes(c);
  }
  if (!ret) return std::nullopt;
  Record(c, std::move(args), *ret, std::move(path));
  return ret;
}

// chmod, fchmodat, chown, lchown, fchownat, utimensat, name_to_handle_at:
// on a name that does not exist; on the root, changing its mode, owner or
// group is refused (-EPERM, user 1000 does not own it), the rest is not
// modelled.
std::optional<uint64_t> SyscallLayer::PathAttributes(const Call& c) {
  FileSystem fs(*this);
  std::string path;
  std::vector<uint64_t> args;
  uint64_t dirfd = kCwd, path_addr = c.a[0], flags = 0, known_flags = 0;
  switch (c.nr) {
    case SYS_chmod:
    case SYS_chown:
    case SYS_lchown:
      args = {c.a[1], c.nr == SYS_chmod ? 0 : c.a[2]};
      break;
    case SYS_fchmodat:
      dirfd = c.a[0], path_addr = c.a[1];
      args = {c.a[0], c.a[2]};
      break;
    case SYS_fchownat:
      dirfd = c.a[0], path_addr = c.a[1], flags = c.a[4];
      known_flags = AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH;
      args = {c.a[0], c.a[2], c.a[3], c.a[4]};
      break;
    case SYS_utimensat:
      // A NULL path with a descriptor is futimens on it: flags must be 0
      // and the descriptor open; on 0-2 not modelled.
      if (c.a[1] == 0 && static_cast<int32_t>(c.a[0]) != AT_FDCWD) {
        const uint64_t e = c.a[3] != 0 ? Errno(EINVAL) : !IsOpen(c.a[0]) ? Errno(EBADF) : 0;
        if (e == 0) return std::nullopt;
        Record(c, {c.a[0], c.a[3]}, e, {});
        return e;
      }
      dirfd = c.a[0], path_addr = c.a[1], flags = c.a[3];
      known_flags = AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH;
      args = {c.a[0], c.a[3]};
      // The times are read first; their values are checked only once the
      // file is found (never, here).
      if (c.a[2] != 0 && sandbox_.HostPtr(c.a[2], 32, UC_PROT_READ) == nullptr) {
        Record(c, std::move(args), Errno(EFAULT), {});
        return Errno(EFAULT);
      }
      break;
    case SYS_name_to_handle_at:
      dirfd = c.a[0], path_addr = c.a[1], flags = c.a[4];
      known_flags = AT_SYMLINK_FOLLOW | AT_EMPTY_PATH;
      args = {c.a[0], c.a[4]};
      break;
    default:
      return std::nullopt;
  }
  std::optional<uint64_t> ret;
  if ((flags & ~known_flags) != 0) {
    ret = Errno(EINVAL);
  } else if (int e = FileSystem::Existing(fs.Lookup(dirfd, path_addr, &path)); e != 0) {
    ret = Errno(e);
  } else if (c.nr == SYS_chmod || c.nr == SYS_fchmodat) {
    ret = Errno(EPERM);  // only the root's owner may change its mode
  } else if ((c.nr == SYS_chown || c.nr == SYS_lchown || c.nr == SYS_fchownat) &&
             (static_cast<uint32_t>(args[args.size() == 2 ? 0 : 1]) != ~0u ||
              static_cast<uint32_t>(args[args.size() == 2 ? 1 : 2]) != ~0u)) {
    ret = Errno(EPERM);  // nor its owner or group
  }
  if (!ret) return std::nullopt;
  Record(c, std::move(args), *ret, std::move(path));
  return ret;
}

}  // namespace patchlab::emulator
