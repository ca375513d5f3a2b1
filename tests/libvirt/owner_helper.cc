// A lab process that dies without cleaning up, for LibvirtVmTest: it boots a
// VM on the libvirt host URI, saves its ready state (so the VM now runs as a
// restored domain, which libvirt does not autodestroy), prints the domain's
// name and waits to be killed.
//
//   libvirt_owner_helper URI DIR KERNEL INITRD [KERNEL_ARG...]
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "harness/libvirt/libvirt_backend.h"

using namespace patchlab::harness;  // NOLINT: a test helper's main

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s URI DIR KERNEL INITRD [KERNEL_ARG...]\n", argv[0]);
    return 2;
  }
  LibvirtBackendOptions o;
  o.uri = argv[1];
  o.accelerator = Accelerator::kTcg;
  auto backend = LibvirtBackend::Open(o);
  if (!backend) {
    std::fprintf(stderr, "helper: %s\n", backend.error().ToString().c_str());
    return 1;
  }
  std::string dir = argv[2];
  VmImage image{
      "helper",   "?",     argv[3], argv[4], std::vector<std::string>(argv + 5, argv + argc),
      {"qemu64"}, "helper"};
  VmSpec spec;
  spec.name = "orphan";
  spec.memory_mib = 512;  // the image's own: its initramfs (~80 MB) unpacks into RAM
  spec.artefacts_dir = dir + "/orphan";
  spec.boot_timeout = std::chrono::milliseconds(90000);
  auto vm = (*backend)->Boot(image, spec);
  if (!vm) {
    std::fprintf(stderr, "helper: %s\n", vm.error().ToString().c_str());
    return 1;
  }
  auto state = (*backend)->SaveReady(**vm, dir + "/orphan.state");
  if (!state) {
    std::fprintf(stderr, "helper: %s\n", state.error().ToString().c_str());
    return 1;
  }
  std::printf("%s\n", AsLibvirtVm(**vm)->DomainName().c_str());
  std::fflush(stdout);
  while (true) ::pause();  // SIGKILL ends us, with the restored domain running
}
