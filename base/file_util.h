// Files the lab reads and records. Anything recorded is written atomically:
// a temporary file beside the target, fsync, rename over it, fsync the folder.
// A crash or a full disk leaves either the old content or the new, never a mix,
// and the error names the file.
//
// Thread-safety: the functions are safe to call concurrently on distinct paths.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>

#include "base/error.h"

namespace patchlab {

// The whole content of `path`. Fails naming the path (kNotFound when absent).
Result<std::string> ReadFile(const std::filesystem::path& path);

// What a write must survive. Either way a reader sees the old content or the
// new, never a mix, also when the writer is killed half-way.
enum class Durability {
  kPowerLoss,  // fsync the file and its folder before returning
  // Only the writer being killed: the rename alone suffices (the page cache
  // outlives the process). For records of what is in the memory of running
  // processes, which a reboot erases anyway; saves two fsyncs per write, and
  // swaps the names instead of renaming over the old file (ext4 flushes on
  // that): a writer killed between the swap and the unlink leaves the old
  // content in a hidden temporary beside `path`.
  kProcessCrash,
};

// Replaces `path` with `data`, atomically, with permission bits `mode`.
// On failure (e.g. ENOSPC) the old file is untouched and no temporary is left.
Status WriteFileAtomic(const std::filesystem::path& path, std::string_view data, mode_t mode = 0644,
                       Durability durability = Durability::kPowerLoss);

// Creates `dir` and its parents (like mkdir -p) with `mode` for the ones made.
Status MakeDirs(const std::filesystem::path& dir, mode_t mode = 0755);

// Lowercase hex SHA-256 of `data` (OpenSSL), for content-addressed caches.
std::string Sha256Hex(std::string_view data);

}  // namespace patchlab
