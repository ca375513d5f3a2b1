// HostCheck: can this libvirt host run the lab? One line per check, for
// `patchlab hosts check`.
//
// Checks, in order: libvirt reachable (and its version); QEMU present for
// x86_64 guests (the capabilities' emulator); the image present (a local host
// reads it where it is) or uploadable (a remote host, or --upload: sent into
// the storage pool, verified by size and named by content); the accelerator
// (KVM when listed and a probe boot reaches the agent, else TCG, which the lab
// runs on, only slower). A host can run the lab when no check is fatal.
//
// Thread-safety: CheckHost may run concurrently for distinct URIs.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "harness/libvirt/image_upload.h"
#include "harness/vm/vm_backend.h"

namespace patchlab::harness {

struct HostCheckLine {
  std::string check;  // "libvirt", "qemu", "image", "accelerator"
  bool ok = false;
  bool fatal = false;  // !ok and the lab cannot run there
  std::string detail;  // "libvirt 9.0.0 on host-a", "no x86_64 hvm guest in the capabilities"
};

struct HostCheckReport {
  std::string uri;
  std::vector<HostCheckLine> lines;
  bool usable() const;
};

struct HostCheckOptions {
  std::optional<VmImage> image;  // nullopt: only check that the pool can take one
  bool force_upload = false;     // upload even to a local host
  bool probe_kvm = true;         // needs an image
  std::chrono::milliseconds kvm_probe_timeout{15000};
  ImagePoolSpec pool;
};

HostCheckReport CheckHost(const std::string& uri, const HostCheckOptions& options);

}  // namespace patchlab::harness
