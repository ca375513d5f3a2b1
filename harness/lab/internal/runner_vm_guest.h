// The QEMU backend of the runner: each cell's machine is a VM of a reference
// image (harness/vm/image_store.h, harness/vm/qemu_backend.h) reached through its
// guest agent. The first cell of an image/CPU/size boots it and saves the
// ready state; later cells restore from that state (about 0.2 s instead of a
// 2.5 s boot), falling back to a boot when a restore fails.
//
// Thread-safety: the factory may start VMs from several threads.
#pragma once

#include <filesystem>
#include <memory>

#include "harness/lab/internal/runner_guest.h"
#include "harness/vm/vm_backend.h"

namespace patchlab::harness::internal {

// Opens the image store on `recipes` (vm-images/images.yaml) with the lab's
// binaries found beside this program; saved states go under `state_dir`.
// Fails (kInfra/kParse) when the recipes or the guest agent binary are missing.
Result<std::unique_ptr<GuestFactory>> MakeVmGuestFactory(const std::filesystem::path& recipes,
                                                         const std::filesystem::path& state_dir);
// As above, with VMs run by `backend` (e.g. the libvirt fleet) instead of QEMU directly.
Result<std::unique_ptr<GuestFactory>> MakeVmGuestFactory(const std::filesystem::path& recipes,
                                                         const std::filesystem::path& state_dir,
                                                         std::unique_ptr<VmBackend> backend);

}  // namespace patchlab::harness::internal
