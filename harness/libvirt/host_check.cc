#include "harness/libvirt/host_check.h"

#include <fmt/format.h>
#include <unistd.h>

#include "harness/libvirt/libvirt_backend.h"
#include "harness/libvirt/libvirt_host.h"

namespace patchlab::harness {

namespace {

std::string VersionString(unsigned long v) {
  return fmt::format("{}.{}.{}", v / 1000000, (v / 1000) % 1000, v % 1000);
}

}  // namespace

bool HostCheckReport::usable() const {
  for (const auto& l : lines) {
    if (l.fatal) return false;
  }
  return !lines.empty();
}

HostCheckReport CheckHost(const std::string& uri, const HostCheckOptions& options) {
  HostCheckReport report;
  report.uri = uri;
  auto host = LibvirtHost::Open(uri);
  if (!host) {
    report.lines.push_back({"libvirt", false, true, host.error().ToString()});
    return report;
  }
  unsigned long lib = 0;
  virConnectGetLibVersion((*host)->conn(), &lib);
  report.lines.push_back(
      {"libvirt", true, false,
       fmt::format("libvirt {} on {}", VersionString(lib), (*host)->hostname())});

  auto caps = (*host)->Capabilities();
  if (!caps) {
    report.lines.push_back({"qemu", false, true, caps.error().ToString()});
    return report;
  }
  if (!caps->x86_64_hvm) {
    report.lines.push_back(
        {"qemu", false, true,
         fmt::format("{} {} offers no x86_64 hvm guests (is qemu-system-x86 installed there?)",
                     caps->hypervisor, VersionString(caps->version))});
    return report;
  }
  report.lines.push_back(
      {"qemu", true, false,
       fmt::format("{} {}, x86_64 guests via {}", caps->hypervisor, VersionString(caps->version),
                   caps->emulator.empty() ? "(default emulator)" : caps->emulator)});

  bool upload = options.force_upload || !(*host)->local();
  if (!options.image) {
    if (!upload) {
      report.lines.push_back(
          {"image", true, false, "local host: images are read where the lab builds them"});
    } else if (auto s = EnsureImagePool(**host, options.pool); !s) {
      report.lines.push_back(
          {"image", false, true, "images cannot be uploaded: " + s.error().ToString()});
    } else {
      report.lines.push_back({"image", true, false,
                              fmt::format("storage pool {} ready in {}: images are uploaded there",
                                          options.pool.name, options.pool.dir)});
    }
  } else if (!upload) {
    bool present = ::access(options.image->kernel.c_str(), R_OK) == 0 &&
                   ::access(options.image->initrd.c_str(), R_OK) == 0;
    report.lines.push_back(
        {"image", present, !present,
         present ? fmt::format("{} present ({}, {})", options.image->name,
                               options.image->kernel.string(), options.image->initrd.string())
                 : fmt::format("{}: kernel or initrd missing ({}, {})", options.image->name,
                               options.image->kernel.string(), options.image->initrd.string())});
  } else {
    uint64_t sent = 0;
    auto placed = UploadImage(**host, options.pool, *options.image, &sent);
    if (!placed) {
      report.lines.push_back({"image", false, true, "upload failed: " + placed.error().ToString()});
    } else {
      report.lines.push_back(
          {"image", true, false,
           sent > 0 ? fmt::format("{} uploaded into pool {} ({} bytes, size verified)",
                                  options.image->name, options.pool.name, sent)
                    : fmt::format("{} already in pool {} ({})", options.image->name,
                                  options.pool.name, placed->kernel.parent_path().string())});
    }
  }

  if (!caps->kvm_listed) {
    report.lines.push_back(
        {"accelerator", true, false, "tcg: the host lists no kvm domain type (slower, works)"});
  } else if (!options.image || !options.probe_kvm) {
    report.lines.push_back({"accelerator", true, false,
                            "kvm listed (not probed: give an image to probe it); tcg otherwise"});
  } else {
    LibvirtBackendOptions bo;
    bo.uri = uri;
    bo.kvm_probe_timeout = options.kvm_probe_timeout;
    bo.placement = options.force_upload ? ImagePlacement::kUpload : ImagePlacement::kAuto;
    bo.pool = options.pool;
    auto backend = LibvirtBackend::OnHost(*host, bo);
    if (!backend) {
      report.lines.push_back({"accelerator", false, true, backend.error().ToString()});
    } else {
      KvmProbe probe = (*backend)->ChooseAccelerator(*options.image);
      report.lines.push_back({"accelerator", true, false,
                              probe.accelerator == Accelerator::kKvm
                                  ? "kvm: a probe guest reached its agent"
                                  : "tcg: kvm is listed but " + probe.reason + " (slower, works)"});
    }
  }
  return report;
}

}  // namespace patchlab::harness
