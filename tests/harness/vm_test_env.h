// Shared setup of the VM suites: the image store over the bundled recipes, in
// the lab's cache ($PATCHLAB_CACHE or /var/cache/patchlab), and skips for a
// machine that cannot run them.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "harness/vm/image_store.h"

namespace patchlab::harness::testing {

inline std::string MissingVmPrerequisite() {
  for (const char* tool :
       {"/usr/bin/qemu-system-x86_64", "/usr/bin/apt-get", "/usr/bin/dpkg", "/bin/busybox"}) {
    if (::access(tool, X_OK) != 0) return std::string(tool) + " is not installed (bash ci/setup)";
  }
  if (::geteuid() != 0) return "apt-get download into the lab cache needs root";
  return {};
}

inline ImageStoreOptions StoreOptions() {
  ImageStoreOptions o;
  o.recipes = std::filesystem::path(PATCHLAB_SOURCE_DIR) / "vm-images/images.yaml";
  o.cache_dir = DefaultCacheDir();
  o.agent_binary = PATCHLAB_AGENT_BINARY;
  o.hotpatch_binary = LocateLabBinaries().hotpatch;
  return o;
}

}  // namespace patchlab::harness::testing
