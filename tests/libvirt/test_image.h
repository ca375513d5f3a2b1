// The image the libvirt tests and benchmark boot: the lab's reference image
// from the image store (debian12-cloud), or, when the store cannot build it
// here, a minimal image of the same shape (the Debian cloud kernel,
// busybox-static, the pvpanic modules and the lab's guest agent on ttyS1),
// cached under CACHE/libvirt-test/.
//
// Thread-safety: LabImage builds once per process; call it from one thread.
#pragma once

#include <filesystem>

#include "base/error.h"
#include "harness/vm/vm_backend.h"

namespace patchlab::testing {

// `source_dir`: the repository (for vm-images/images.yaml); `agent_binary`:
// the built patchlab-agent. Fails (for a skip) when neither image can be made.
Result<harness::VmImage> LabImage(const std::filesystem::path& source_dir,
                                  const std::filesystem::path& agent_binary);

}  // namespace patchlab::testing
