// A Debian system as a read-only disk (`root: disk` in a recipe): the ext4
// file the guest mounts as the lower layer of an overlay on tmpfs, and the
// kernel modules its small initramfs loads to reach it.
//
// Errors: a tool that fails (mkfs.ext4, modinfo) fails with its output; a
// module the kernel package has neither built in nor as a file fails with
// kNotFound naming it. Nothing half-written is left at the disk's path.
//
// Thread-safety: free functions; concurrent MakeRootDisk calls for one system
// each write a temporary file and the last rename wins (same content).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"

namespace patchlab::harness::internal {

// The ext4 image of `system_root`, made once beside it (SYSTEM/root.ext4) with
// owners and modes kept, no journal (nothing writes to it) and some room over
// the tree's size. Returns its path.
Result<std::filesystem::path> MakeRootDisk(const std::filesystem::path& system_root);

// A kernel module to load at boot: its file name and bytes.
struct BootModule {
  std::string name;  // "virtio_blk.ko"
  std::string bytes;
};

// The modules of the unpacked kernel package at `kernel_root` that `wanted`
// (names without .ko) need, dependencies first; those built into the kernel
// (modules.builtin) are left out.
Result<std::vector<BootModule>> BootModules(const std::filesystem::path& kernel_root,
                                            const std::vector<std::string>& wanted);

}  // namespace patchlab::harness::internal
