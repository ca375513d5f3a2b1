// The shared libraries a program loads, as `ldd` lists them, including the
// dynamic loader: the files a guest needs at the same paths to run it.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"

namespace patchlab::harness::internal {

// Absolute paths of `binary`'s libraries (empty for a static binary).
// kNotFound naming the library when ldd reports one "not found".
Result<std::vector<std::string>> LddClosure(const std::filesystem::path& binary);

// Finds a library by soname in the host's library folders (multiarch first).
Result<std::filesystem::path> FindHostLibrary(const std::string& soname);

}  // namespace patchlab::harness::internal
