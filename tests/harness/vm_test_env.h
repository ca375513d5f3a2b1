// Shared setup of the VM suites: the image store over the bundled recipes, in
// the lab's cache ($PATCHLAB_CACHE or /var/cache/patchlab), and skips for a
// machine that cannot run them.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "base/elf_file.h"
#include "base/subprocess.h"
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

// The bytes of `member` ("usr/bin/hotpatch") of the cpio archive `archive`,
// read back by GNU cpio. Fails when cpio fails or the archive has no such file.
inline Result<std::string> CpioMember(const std::filesystem::path& archive,
                                      const std::string& member) {
  SubprocessOptions o;
  o.argv = {"cpio", "-i", "--quiet", "--to-stdout", "-F", archive.string(), member};
  auto r = RunSubprocess(std::move(o));
  if (!r) return std::unexpected(r.error());
  if (!r->status.Success() || r->stdout_data.empty())
    return Fail(ErrorCode::kNotFound, "{} has no {}: {}", archive.string(), member, r->stderr_data);
  return r->stdout_data;
}

// Empty when the ELF file `bytes` (the image's copy of `host`) has no debug
// section and the same build-id as `host`; else what is wrong.
inline std::string DebugInfoLeft(const std::string& bytes, const std::filesystem::path& host) {
  auto elf = ElfFile::FromBytes(bytes, host);
  if (!elf) return elf.error().ToString();
  auto original = ElfFile::Open(host);
  if (!original) return original.error().ToString();
  for (const ElfSection& s : elf->sections()) {
    if (s.name.starts_with(".debug_")) return "the image's " + host.string() + " has " + s.name;
  }
  if (elf->build_id() != original->build_id())
    return "the image's build-id differs from the host's";
  return {};
}

}  // namespace patchlab::harness::testing
