// ImageStore: reference VM images built from Debian packages, cached by content.
//
// vm-images/images.yaml lists the recipes (vm-images/README.md documents the
// fields). Building one fetches its kernel package with `apt-get download`
// (resolving a meta package such as linux-image-cloud-amd64 to the versioned
// package it depends on), unpacks it with `dpkg -x`, and writes a newc cpio
// initramfs holding busybox-static, /init, the guest agent, `hotpatch` (those
// two without their debug info) and the recipe's extra files, each with its
// `ldd` closure of real Debian libraries.
// The result lives under CACHE/images/HASH/ where HASH covers every input, so a
// second build with the same inputs returns at once and yields identical files.
//
// A recipe with `system:` makes a real Debian system with mmdebstrap instead
// (harness/vm/internal/debian_system.h) and packs all of it, plus the same /init,
// agent and hotpatch, into the initramfs: the guest's root is that system.
//
// Per-run files (scenario workloads, patch packages) go into an overlay: a
// small cpio that MakeOverlay writes and ComposeInitrd appends to the base
// initramfs (Linux unpacks concatenated cpio archives in order), so the base
// stays cached and shared.
//
// Errors: a bad recipe fails with kParse naming images.yaml:LINE:COL; a package
// the archive cannot provide fails with kNotFound naming the package and what
// apt said; a missing host file fails with kNotFound naming it. Nothing is left
// half-written in the cache (each build goes to a temporary folder, renamed at
// the end).
//
// Thread-safety: distinct ImageStore objects may build concurrently; the cache
// tolerates concurrent builds of the same image (last rename wins, same content).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "harness/vm/vm_backend.h"

namespace patchlab::harness {

// A real Debian system as the guest's root (vm-images/README.md): made by
// mmdebstrap from `packages` (installed with their dependencies and maintainer
// scripts), booted from the initramfs with the agent as PID 1.
//
// How that system reaches the guest (`root:`): packed into the initramfs, or
// as a read-only ext4 disk (virtio) under an overlay on tmpfs, which a small
// initramfs mounts before handing over (vm-images/README.md has the figures).
enum class SystemRoot { kInitramfs, kDisk };
struct SystemRecipe {
  std::string suite = "bookworm";
  std::vector<std::string> packages;
  SystemRoot root = SystemRoot::kInitramfs;
};

struct ImageRecipe {
  std::string name;
  std::string description;
  std::string kernel_package;            // versioned or meta package name
  std::vector<std::string> packages;     // extra Debian packages unpacked into the root
  std::vector<std::string> libraries;    // host libraries to include (with closure), e.g. libz.so.1
  std::vector<std::string> cpus;         // default CPU models
  std::vector<std::string> kernel_args;  // added after the lab's defaults
  int memory_mib = 512;
  // Set: the root is a Debian system (packages/libraries then add to it);
  // unset: the small busybox userland.
  std::optional<SystemRecipe> system;
  std::string where;  // "images.yaml:12:5", for messages
};

// Reads a recipe file. Fails with kParse / kNotFound naming file:line:col.
Result<std::vector<ImageRecipe>> LoadImageRecipes(const std::filesystem::path& yaml_path);
// The same from text, with `name` used in messages as the file name.
Result<std::vector<ImageRecipe>> ParseImageRecipes(const std::string& text,
                                                   const std::string& name);

// A file to put into an image or overlay.
struct ImageFile {
  std::filesystem::path host_path;  // must exist
  std::string guest_path;           // absolute path in the guest
  mode_t mode = 0755;
  bool with_libraries = false;  // also add its ldd closure at the same paths
};

struct ImageStoreOptions {
  std::filesystem::path recipes;          // vm-images/images.yaml
  std::filesystem::path cache_dir;        // default: $PATCHLAB_CACHE or /var/cache/patchlab
  std::filesystem::path agent_binary;     // patchlab-agent (static); required
  std::filesystem::path hotpatch_binary;  // optional: included when the file exists
  std::filesystem::path busybox = "/bin/busybox";  // from busybox-static
};

// Where a lab program finds its sibling binaries: next to /proc/self/exe in a build
// tree (harness/patchlab-agent, tools/hotpatch/hotpatch) or in PATH. Empty paths for
// those not found.
struct LabBinaries {
  std::filesystem::path agent;
  std::filesystem::path hotpatch;
};
LabBinaries LocateLabBinaries();

// The root file system of image `name` when its recipe has `system:` (made
// with mmdebstrap if not cached yet), nullopt for a busybox image. The lab
// packs a patch of a program or library of a Debian-system image against the
// image's own file: its build-id is the one the guest runs.
Result<std::optional<std::filesystem::path>> SystemRootOf(const std::filesystem::path& recipes,
                                                          const std::string& name,
                                                          const std::filesystem::path& cache_dir);

// The default cache directory: $PATCHLAB_CACHE, else /var/cache/patchlab.
std::filesystem::path DefaultCacheDir();

class ImageStore {
 public:
  // Loads the recipes. Fails on a bad recipe file or a missing agent binary.
  static Result<ImageStore> Open(ImageStoreOptions options);

  const std::vector<ImageRecipe>& recipes() const { return recipes_; }
  Result<ImageRecipe> Recipe(const std::string& name) const;  // kNotFound listing the names

  // Builds (or finds in the cache) the image `name`, with `extra` files added to
  // its base initramfs. Returns its kernel and initramfs paths.
  Result<VmImage> Build(const std::string& name, const std::vector<ImageFile>& extra = {});
  // The cached image `name` if a build of its current inputs exists, without
  // building or fetching anything (nullopt otherwise).
  Result<std::optional<VmImage>> Cached(const std::string& name);

  // Writes a cpio holding `files` (and their closures) under CACHE/overlays/, named
  // by content; returns its path.
  Result<std::filesystem::path> MakeOverlay(const std::vector<ImageFile>& files);
  // Returns `base` with its initrd replaced by base initrd + overlay, composed
  // under CACHE/composed/ by content.
  Result<VmImage> ComposeInitrd(const VmImage& base, const std::filesystem::path& overlay);

  const ImageStoreOptions& options() const { return options_; }

 private:
  ImageStore(ImageStoreOptions options, std::vector<ImageRecipe> recipes)
      : options_(std::move(options)), recipes_(std::move(recipes)) {}
  ImageStoreOptions options_;
  std::vector<ImageRecipe> recipes_;
};

}  // namespace patchlab::harness
