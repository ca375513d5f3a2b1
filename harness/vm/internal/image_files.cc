#include "harness/vm/internal/image_files.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "base/file_util.h"
#include "harness/vm/internal/debug_strip.h"
#include "harness/vm/internal/ldd_closure.h"

namespace patchlab::harness::internal {
namespace fs = std::filesystem;

namespace {

// Where a host path lands in a Debian system whose /lib, /bin and /sbin are
// links into /usr (merged /usr): written through the link, the kernel's cpio
// unpacker would follow it, but the archive would name two entries for one file.
std::string GuestPath(const std::string& path, bool usr_merged) {
  if (!usr_merged) return path;
  for (const char* top : {"/lib/", "/lib64/", "/bin/", "/sbin/"}) {
    if (path.rfind(top, 0) == 0) return "/usr" + path;
  }
  return path;
}

// Adds `host`'s ldd closure at the paths ld.so asks for. In a Debian system
// (`usr_merged`) a library it already has is kept: it is the same Debian file
// the host has. With `strip_debug` a library with debug info goes in without it.
Status AddClosure(CpioWriter& cpio, const fs::path& host, bool usr_merged, bool strip_debug) {
  auto libs = internal::LddClosure(host);
  if (!libs) return std::unexpected(libs.error());
  for (const std::string& lib : *libs) {
    std::string guest = GuestPath(lib, usr_merged);
    if (cpio.Contains(guest)) continue;
    // Follow symlinks: the guest gets the real bytes under the name ld.so asks for.
    fs::path real = fs::canonical(lib);
    auto bytes = strip_debug ? internal::ReadWithoutDebugInfo(real) : ReadFile(real);
    if (!bytes) return std::unexpected(bytes.error());
    cpio.AddFile(guest, 0755, *bytes);
  }
  return {};
}

}  // namespace

// Adds a host file at `guest_path` as it is, and with `closure` its ldd closure.
Status AddHostFile(CpioWriter& cpio, const fs::path& host, const std::string& guest_path,
                   mode_t mode, bool closure, bool usr_merged) {
  auto data = ReadFile(host);
  if (!data) return std::unexpected(data.error());
  cpio.AddFile(GuestPath(guest_path, usr_merged), mode, *data);
  if (!closure) return {};
  return AddClosure(cpio, host, usr_merged, false);
}

// Adds one of the lab's own programs (the agent, hotpatch) and its closure
// without debug info: the guest runs them, nobody debugs them there, and an
// -O2 -g hotpatch is 25 times its stripped size.
Status AddLabBinary(CpioWriter& cpio, const fs::path& host, const std::string& guest_path,
                    bool usr_merged) {
  auto data = internal::ReadWithoutDebugInfo(host);
  if (!data) return std::unexpected(data.error());
  cpio.AddFile(GuestPath(guest_path, usr_merged), 0755, *data);
  return AddClosure(cpio, host, usr_merged, true);
}

// Adds every directory, regular file and symlink under `root` (sorted, so the
// bytes are the same for the same tree).
Status AddTree(CpioWriter& cpio, const fs::path& root, TreeOptions tree) {
  std::vector<fs::path> entries;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    entries.push_back(it->path());
  }
  if (ec) return Fail(ErrorCode::kIo, "listing {}: {}", root.string(), ec.message());
  std::sort(entries.begin(), entries.end());  // determinism
  for (const fs::path& p : entries) {
    // Lexically: fs::relative would follow the links a Debian system is full of.
    std::string rel = p.lexically_relative(root).string();
    if (tree.skip_docs &&
        (rel.rfind("usr/share/doc", 0) == 0 || rel.rfind("usr/share/man", 0) == 0 ||
         rel.rfind("usr/share/lintian", 0) == 0)) {
      continue;
    }
    if (tree.skip_dev && rel.rfind("dev/", 0) == 0) continue;
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0)
      return Fail(ErrorCode::kIo, "lstat {}: {}", p.string(), std::strerror(errno));
    internal::CpioOwner owner;
    if (tree.keep_owners) owner = {st.st_uid, st.st_gid};
    if (S_ISLNK(st.st_mode)) {
      cpio.AddSymlink(rel, fs::read_symlink(p).string(), owner);
    } else if (S_ISDIR(st.st_mode)) {
      cpio.AddDirectory(rel, st.st_mode & 07777, owner);
    } else if (S_ISREG(st.st_mode)) {
      auto data = ReadFile(p);
      if (!data) return std::unexpected(data.error());
      cpio.AddFile(rel, st.st_mode & 07777, *data, owner);
    }
  }
  return {};
}

}  // namespace patchlab::harness::internal
