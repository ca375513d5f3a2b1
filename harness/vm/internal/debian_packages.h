// Fetching and unpacking Debian packages for the reference images, through
// apt's ordinary clients (apt-cache, apt-get download, dpkg -x).
#pragma once

#include <filesystem>
#include <string>

#include "base/error.h"

namespace patchlab::harness::internal {

struct DebianPackage {
  std::string name;      // the real (versioned) package, e.g. linux-image-6.1.0-56-cloud-amd64
  std::string version;   // 6.1.192-2
  std::string filename;  // the .deb's basename in the archive
};

// Resolves `name` to the package to fetch: a package with a candidate version
// is itself; a virtual or meta kernel package (linux-image-cloud-amd64) resolves
// to the linux-image-* package it depends on. kNotFound naming the package and
// apt's words when the archive does not have it. Answers are remembered in
// CACHE_DIR/resolved.json until apt's package lists change.
Result<DebianPackage> ResolvePackage(const std::string& name,
                                     const std::filesystem::path& cache_dir);

// The .deb of `package` under `debs_dir`, downloaded with `apt-get download` if
// it is not there yet. kNotFound with apt's message when it cannot be fetched.
Result<std::filesystem::path> FetchDeb(const DebianPackage& package,
                                       const std::filesystem::path& debs_dir);

// `dpkg -x DEB` into `dir` (made atomically: a temporary folder renamed at the
// end); returns at once when `dir` already exists.
Status ExtractDeb(const std::filesystem::path& deb, const std::filesystem::path& dir);

}  // namespace patchlab::harness::internal
