// The initramfs of an image recipe, as bytes: the busybox userland or a
// Debian system (`system:`) with the lab's /init, agent and hotpatch, or for
// `root: disk` the small initramfs that mounts the system's disk and unpacks
// the lab's files over it. vm-images/README.md describes what each holds.
//
// Errors: a host file or package file that cannot be read fails naming it; a
// recipe library the host lacks fails with kNotFound naming the recipe
// (images.yaml:LINE:COL); an extra file that does not exist fails with
// kNotFound naming it. Nothing is written anywhere: the caller stores the bytes.
//
// Thread-safety: free functions over their arguments; safe to call
// concurrently.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"
#include "harness/vm/image_store.h"
#include "harness/vm/internal/debian_packages.h"

namespace patchlab::harness::internal {

// What a recipe's image is made of, fetched and unpacked by the store.
struct ImageIngredients {
  DebianPackage kernel_package;
  std::filesystem::path kernel_root;  // unpacked kernel package
  std::vector<std::filesystem::path> package_roots;
  std::filesystem::path system_root;  // a recipe with system: the Debian system made by mmdebstrap
};

// The initramfs of `recipe` (busybox or a whole Debian system), plus `extra`.
// The same inputs give the same bytes.
Result<std::string> BuildInitramfs(const ImageStoreOptions& options, const ImageRecipe& recipe,
                                   const ImageIngredients& ingredients,
                                   const std::vector<ImageFile>& extra);

// The initramfs of a `root: disk` recipe: busybox, the disk's /init, the
// modules that reach the disk, and the lab's files (with `extra`) as an inner
// cpio unpacked over the overlay. The same inputs give the same bytes.
Result<std::string> BuildDiskInitramfs(const ImageStoreOptions& options, const ImageRecipe& recipe,
                                       const ImageIngredients& ingredients,
                                       const std::vector<ImageFile>& extra);

}  // namespace patchlab::harness::internal
