// Host files into an image's cpio: single files at a guest path with their
// ldd closure, the lab's own binaries without debug info, whole trees (an
// unpacked package, a Debian system). Used by the initramfs builders and by
// ImageStore::MakeOverlay.
//
// Errors: a host file that cannot be read fails naming it (kNotFound/kIo); a
// library ldd cannot find fails with kNotFound naming it; objcopy failing
// fails with kIo. On failure the cpio may hold part of what was asked: the
// callers then drop the whole archive.
//
// Thread-safety: free functions; a CpioWriter is used by one thread at a time.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>

#include "base/error.h"
#include "harness/vm/internal/cpio_writer.h"

namespace patchlab::harness::internal {

// Adds `host` at `guest_path` byte for byte, and with `closure` its ldd
// closure at the paths ld.so asks for. With `usr_merged` (a Debian system:
// /lib, /bin, /sbin are links into /usr) paths go under /usr and a library the
// archive already has is kept (the same Debian file as the host's).
Status AddHostFile(CpioWriter& cpio, const std::filesystem::path& host,
                   const std::string& guest_path, mode_t mode, bool closure,
                   bool usr_merged = false);

// Adds one of the lab's own programs (the agent, hotpatch) at `guest_path`,
// mode 0755, with its closure, all without debug info (debug_strip.h).
Status AddLabBinary(CpioWriter& cpio, const std::filesystem::path& host,
                    const std::string& guest_path, bool usr_merged);

struct TreeOptions {
  bool skip_docs = true;     // usr/share/{doc,man,lintian}
  bool keep_owners = false;  // a Debian system's files keep their packages' owners
  bool skip_dev = false;     // /dev is a devtmpfs at boot; the lab adds its own nodes
};

// Adds every directory, regular file and symlink under `root` at the same
// paths relative to the archive's root, sorted (same tree, same bytes).
Status AddTree(CpioWriter& cpio, const std::filesystem::path& root, TreeOptions tree);

}  // namespace patchlab::harness::internal
