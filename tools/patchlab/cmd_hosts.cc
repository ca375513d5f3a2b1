// patchlab hosts check: can these libvirt hosts run the lab? One line per
// check and host, exit 0 when every host can, 1 when one cannot, 2 on usage
// errors, 3 when the lab's own image cannot be found.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "harness/libvirt/host_check.h"
#include "harness/vm/image_store.h"
#include "tools/patchlab/commands.h"

namespace patchlab::cli {
namespace {

struct HostsArgs {
  std::vector<std::string> uris;
  std::string image;
  std::string recipes;
  std::string kernel;
  std::string initrd;
  bool upload = false;
  bool no_probe = false;
  int probe_timeout_s = 15;
  std::string pool = "patchlab";
  std::string pool_dir = "/var/lib/libvirt/images/patchlab";
  bool json = false;
};

// The image to check for: a cached lab image by name, or explicit files.
Result<std::optional<harness::VmImage>> ImageToCheck(const HostsArgs& a) {
  if (!a.kernel.empty() || !a.initrd.empty()) {
    if (a.kernel.empty() || a.initrd.empty()) {
      return Fail(ErrorCode::kInvalidArgument, "--kernel and --initrd go together");
    }
    harness::VmImage i;
    i.name = std::filesystem::path(a.kernel).filename().string();
    i.kernel = a.kernel;
    i.initrd = a.initrd;
    i.kernel_args = {"console=ttyS0,115200", "panic=-1"};
    return std::optional<harness::VmImage>(i);
  }
  if (a.image.empty()) return std::optional<harness::VmImage>();
  harness::ImageStoreOptions o;
  if (!a.recipes.empty()) {
    o.recipes = a.recipes;
  } else if (const char* env = std::getenv("PATCHLAB_RECIPES"); env != nullptr && *env != '\0') {
    o.recipes = env;
  } else {
    o.recipes = "vm-images/images.yaml";
  }
  o.cache_dir = harness::DefaultCacheDir();
  harness::LabBinaries bins = harness::LocateLabBinaries();
  o.agent_binary = bins.agent;
  o.hotpatch_binary = bins.hotpatch;
  auto store = harness::ImageStore::Open(o);
  if (!store) return std::unexpected(store.error());
  auto cached = store->Cached(a.image);
  if (!cached) return std::unexpected(cached.error());
  if (!*cached) {
    return Fail(ErrorCode::kNotFound,
                "image {} is not built on this machine (run `patchlab images build {}`)", a.image,
                a.image);
  }
  return std::optional<harness::VmImage>(**cached);
}

int HostsCheck(const HostsArgs& a) {
  auto image = ImageToCheck(a);
  if (!image) {
    std::fprintf(stderr, "patchlab hosts check: %s\n", image.error().ToString().c_str());
    return image.error().code() == ErrorCode::kInvalidArgument ? 2 : 3;
  }
  harness::HostCheckOptions o;
  o.image = *image;
  o.force_upload = a.upload;
  o.probe_kvm = !a.no_probe;
  o.kvm_probe_timeout = std::chrono::seconds(a.probe_timeout_s);
  o.pool.name = a.pool;
  o.pool.dir = a.pool_dir;
  int rc = 0;
  nlohmann::json out = nlohmann::json::array();
  for (const auto& uri : a.uris) {
    harness::HostCheckReport r = harness::CheckHost(uri, o);
    bool usable = r.usable();
    if (!usable) rc = 1;
    if (a.json) {
      nlohmann::json h;
      h["uri"] = uri;
      h["usable"] = usable;
      h["checks"] = nlohmann::json::array();
      for (const auto& l : r.lines)
        h["checks"].push_back({{"check", l.check}, {"ok", l.ok}, {"detail", l.detail}});
      out.push_back(h);
      continue;
    }
    std::printf("host %s\n", uri.c_str());
    for (const auto& l : r.lines) {
      std::printf("  %-4s  %-11s  %s\n", l.ok ? "ok" : "FAIL", l.check.c_str(), l.detail.c_str());
    }
    std::printf("  => %s\n", usable ? "can run the lab" : "cannot run the lab");
  }
  if (a.json) std::printf("%s\n", out.dump(2).c_str());
  return rc;
}

}  // namespace

void RegisterHostsCommand(CLI::App& app, CommandContext& ctx) {
  CLI::App* hosts =
      app.add_subcommand("hosts", "libvirt hosts for fleet runs (patchlab run --backend libvirt)");
  hosts->require_subcommand(1);
  auto args = std::make_shared<HostsArgs>();
  CLI::App* check = hosts->add_subcommand(
      "check", "tell whether libvirt hosts can run the lab, one line per check");
  check->footer(
      "Checks: libvirt reachable, QEMU for x86_64 guests, the image present (local host) or\n"
      "uploadable (remote host or --upload), KVM or TCG. Exit codes: 0 every host can run the "
      "lab,\n"
      "1 some host cannot, 2 usage error, 3 the image to check is not built here.");
  check
      ->add_option("--connect,-c", args->uris,
                   "libvirt URI of a host (repeatable), e.g. qemu+ssh://host-a/system")
      ->required();
  check->add_option("--image", args->image,
                    "a lab image (built here) to place on each host and probe KVM with");
  check->add_option("--recipes", args->recipes,
                    "image recipes (default: $PATCHLAB_RECIPES or vm-images/images.yaml)");
  check->add_option("--kernel", args->kernel,
                    "an image's kernel file (with --initrd), instead of --image");
  check->add_option("--initrd", args->initrd, "an image's initramfs file (with --kernel)");
  check->add_flag("--upload", args->upload,
                  "upload the image into the host's pool even when the host is local");
  check->add_flag("--no-kvm-probe", args->no_probe, "do not boot a probe guest under KVM");
  check
      ->add_option("--kvm-probe-timeout", args->probe_timeout_s,
                   "seconds a KVM probe guest gets to reach its agent")
      ->check(CLI::Range(1, 600))
      ->capture_default_str();
  check->add_option("--pool", args->pool, "libvirt storage pool for uploaded images")
      ->capture_default_str();
  check
      ->add_option("--pool-dir", args->pool_dir,
                   "the pool's folder on each host (made when the pool is defined)")
      ->capture_default_str();
  check->add_flag("--json", args->json, "print one JSON list of hosts and checks");
  check->callback([&ctx, args] { ctx.exit_code = HostsCheck(*args); });
}

}  // namespace patchlab::cli
