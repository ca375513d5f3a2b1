#include "harness/libvirt/libvirt_backend.h"

#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cstdlib>
#include <map>
#include <mutex>
#include <thread>

#include "base/file_util.h"
#include "base/log.h"
#include "harness/libvirt/domain_owner.h"
#include "harness/libvirt/domain_xml.h"
#include "harness/libvirt/internal/libvirt_vm.h"
#include "harness/libvirt/internal/virt_ptr.h"

namespace patchlab::harness {

namespace fs = std::filesystem;
using libvirt_internal::LibvirtVm;
using libvirt_internal::VmPaths;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// One saved copy of a ready state: the file, and the domain name and file
// paths it was saved with (libvirt restores it under that name only).
struct StateCopy {
  std::string file;
  std::string domain;
  std::string console_log;
  bool in_use = false;
};

struct LibvirtBackend::Impl {
  LibvirtBackendOptions options;
  std::shared_ptr<LibvirtHost> host;
  std::atomic<uint64_t> counter{0};

  std::mutex mu;  // guards everything below
  std::optional<KvmProbe> probe;
  std::map<std::string, VmImage> placed;                 // by content hash + paths
  std::map<std::string, std::vector<StateCopy>> states;  // by ReadyState::file
  std::mutex place_mu;                                   // one upload at a time
};

namespace {

std::string Sanitize(const std::string& name) {
  std::string out;
  for (char c : name)
    out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') ? c : '-';
  return out.substr(0, 40);
}

std::string ConsoleTail(const fs::path& console) {
  auto text = ReadFile(console);
  if (!text || text->empty()) return "(console log empty)";
  constexpr size_t kTail = 1500;
  return text->size() > kTail ? "..." + text->substr(text->size() - kTail) : *text;
}

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  for (size_t pos = 0; (pos = text.find(from, pos)) != std::string::npos; pos += to.size()) {
    text.replace(pos, from.size(), to);
  }
  return text;
}

bool StreamConsole(const LibvirtBackend::Impl& impl) {
  return impl.options.console_log == ConsoleLogPlacement::kStreamed ||
         (impl.options.console_log == ConsoleLogPlacement::kAuto && !impl.host->local());
}

// Opens the agent's serial port of `domain` (created or restored paused) as a
// libvirt stream and puts an AgentClient on it; with `stream_console`, also
// the console's port into the console log.
Result<libvirt_internal::DomainStreams> OpenStreams(TransientDomain& domain, const VmPaths& paths,
                                                    const std::string& name, bool stream_console) {
  libvirt_internal::DomainStreams link;
  if (stream_console) {
    auto console =
        libvirt_internal::ConsoleBridge::OpenToFile(domain, kConsoleDevice, paths.console_log);
    if (!console) return std::unexpected(console.error());
    link.console = std::move(*console);
  }
  ScopedFd client_end;
  auto bridge = libvirt_internal::ConsoleBridge::Open(domain, kAgentDevice, &client_end);
  if (!bridge) return std::unexpected(bridge.error());
  link.bridge = std::move(*bridge);
  AgentClientOptions ao;
  ao.log_path = paths.agent_log;
  ao.name = fmt::format("vm {} agent", name);
  link.client = AgentClient::Adopt(std::move(client_end), ao);
  return link;
}

// Resumes a domain started paused with its agent channel open, and waits until
// the agent proves alive, giving up early when the domain stops. Nothing is
// sent before the domain runs (bytes sent to a paused or restoring guest's
// serial port may be lost).
Status AwaitAgent(TransientDomain& domain, libvirt_internal::DomainStreams& link,
                  Clock::time_point deadline, bool restored) {
  Clock::time_point resume_start = Clock::now();
  if (auto s = domain.Resume(); !s) return s;
  Clock::time_point resumed = Clock::now();
  AgentClient& agent = *link.client;
  auto closed_why = [&] {
    return link.bridge->closed() ? link.bridge->close_reason() : agent.close_reason();
  };
  if (restored) {
    // A restored agent said "ready" long ago; a reply proves it runs now.
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    auto hello = agent.Hello(std::max(left, milliseconds(1)));
    if (hello) {
      Log("libvirt")->debug(
          "{}: resume {} ms, first hello {} ms", domain.Where(),
          std::chrono::duration_cast<milliseconds>(resumed - resume_start).count(),
          std::chrono::duration_cast<milliseconds>(Clock::now() - resumed).count());
      return {};
    }
    if (agent.closed())
      return Fail(ErrorCode::kInfra, "{}: restored agent: channel closed: {}", domain.Where(),
                  closed_why());
    return Fail(ErrorCode::kInfra, "{}: restored agent: {}", domain.Where(),
                hello.error().ToString());
  }
  while (true) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left.count() <= 0)
      return Fail(ErrorCode::kInfra, "{}: no ready line from the agent in time", domain.Where());
    auto ready = agent.WaitReady(std::min(left, milliseconds(500)));
    if (ready) return {};
    if (ready.error().code() != ErrorCode::kTimeout) {
      return Fail(ErrorCode::kInfra, "{}: agent channel closed before the ready line: {}",
                  domain.Where(), closed_why());
    }
    if (!domain.Active())
      return Fail(ErrorCode::kInfra, "{}: stopped before its agent was ready", domain.Where());
  }
}

// Boots `placed` (paths valid on the host) as a new domain.
Result<std::unique_ptr<LibvirtVm>> BootOn(const std::shared_ptr<LibvirtBackend::Impl>& impl,
                                          const VmImage& image, const VmImage& placed,
                                          const VmSpec& spec, Accelerator accel) {
  if (auto s = MakeDirs(spec.artefacts_dir); !s) return std::unexpected(s.error());
  std::string name =
      fmt::format("patchlab-{}-{}-{}", Sanitize(spec.name), ::getpid(), impl->counter++);
  VmPaths paths{fs::absolute(spec.artefacts_dir / "console.log"),
                fs::absolute(spec.artefacts_dir / "agent.log")};
  std::error_code ec;
  fs::remove(paths.console_log, ec);

  DomainXmlSpec x;
  x.name = name;
  x.domain_type = accel == Accelerator::kKvm ? "kvm" : "qemu";
  x.machine = impl->options.machine;
  x.cpu_model = spec.cpu_model;
  x.vcpus = spec.smp;
  x.memory_mib = spec.memory_mib;
  x.kernel = placed.kernel.string();
  x.initrd = placed.initrd.string();
  std::string cmdline;
  for (const auto& a : image.kernel_args) cmdline += (cmdline.empty() ? "" : " ") + a;
  for (const auto& a : spec.extra_kernel_args) cmdline += (cmdline.empty() ? "" : " ") + a;
  x.cmdline = cmdline;
  if (!StreamConsole(*impl)) x.console_log = paths.console_log.string();
  x.metadata = DomainOwner::Self().MetadataXml();
  std::string xml = BuildDomainXml(x);
  (void)WriteFileAtomic(spec.artefacts_dir / "domain.xml", xml);

  Clock::time_point deadline = Clock::now() + spec.boot_timeout;
  // Paused until the agent's port is open: what the guest writes before is lost.
  auto domain = TransientDomain::Create(impl->host, xml, name, StartState::kPaused);
  if (!domain) return std::unexpected(domain.error());
  auto agent = OpenStreams(**domain, paths, spec.name, StreamConsole(*impl));
  if (!agent) return std::unexpected(agent.error());
  if (auto s = AwaitAgent(**domain, *agent, deadline, false); !s) {
    // The domain is destroyed with its owner on return; the logs stay.
    return Fail(ErrorCode::kInfra, "{}\nconsole tail:\n{}", s.error().ToString(),
                ConsoleTail(paths.console_log));
  }
  return std::make_unique<LibvirtVm>(std::move(*domain), std::move(*agent), image, spec, accel,
                                     paths, impl->options.heartbeat_threshold, nullptr);
}

// The image as the host sees it: as is, or uploaded once per content.
Result<VmImage> Place(LibvirtBackend::Impl& impl, const VmImage& image) {
  bool upload = impl.options.placement == ImagePlacement::kUpload ||
                (impl.options.placement == ImagePlacement::kAuto && !impl.host->local());
  if (!upload) {
    VmImage direct = image;
    direct.kernel = fs::absolute(image.kernel);
    direct.initrd = fs::absolute(image.initrd);
    return direct;
  }
  std::string key = image.content_hash + "|" + image.kernel.string() + "|" + image.initrd.string();
  std::lock_guard lock(impl.place_mu);
  {
    std::lock_guard l(impl.mu);
    if (auto it = impl.placed.find(key); it != impl.placed.end()) return it->second;
  }
  uint64_t sent = 0;
  auto placed = UploadImage(*impl.host, impl.options.pool, image, &sent);
  if (!placed) return std::unexpected(placed.error());
  Log("libvirt")->info("libvirt {}: image {} in pool {} ({} bytes sent)", impl.host->uri(),
                       image.name, impl.options.pool.name, sent);
  std::lock_guard l(impl.mu);
  impl.placed[key] = *placed;
  return *placed;
}

KvmProbe Probe(const std::shared_ptr<LibvirtBackend::Impl>& impl, const VmImage& image) {
  {
    std::lock_guard lock(impl->mu);
    if (impl->probe) return *impl->probe;
  }
  KvmProbe result;
  if (impl->options.accelerator) {
    result.accelerator = *impl->options.accelerator;
    result.reason = "forced";
  } else {
    auto caps = impl->host->Capabilities();
    if (!caps || !caps->kvm_listed) {
      result.reason =
          caps ? "the host's capabilities list no kvm domain type" : caps.error().ToString();
    } else if (auto placed = Place(*impl, image); !placed) {
      result.reason = "cannot place the image for the probe: " + placed.error().ToString();
    } else {
      VmSpec probe_spec;
      probe_spec.name = "kvm-probe";
      probe_spec.memory_mib = 512;  // the bundled images' initramfs needs it to unpack
      probe_spec.boot_timeout = impl->options.kvm_probe_timeout;
      probe_spec.artefacts_dir =
          fs::temp_directory_path() / fmt::format("patchlab-kvm-probe-{}", ::getpid());
      auto vm = BootOn(impl, image, *placed, probe_spec, Accelerator::kKvm);
      if (vm) {
        result.accelerator = Accelerator::kKvm;
        result.reason = "ok";
      } else {
        result.reason = fmt::format("a KVM guest did not reach its agent within {} ms",
                                    impl->options.kvm_probe_timeout.count());
      }
      vm = Fail(ErrorCode::kInternal, "probe done");  // destroys the probe domain now
      std::error_code ec;
      fs::remove_all(probe_spec.artefacts_dir, ec);
    }
  }
  Log("libvirt")->info("libvirt {}: accelerator {} ({})", impl->host->uri(),
                       AcceleratorName(result.accelerator), result.reason);
  std::lock_guard lock(impl->mu);
  if (!impl->probe) impl->probe = result;
  return *impl->probe;
}

// A ready state restores only into the machine it was saved from, on a live host.
Status CheckRestorable(const LibvirtBackend::Impl& impl, const ReadyState& state,
                       const VmSpec& spec) {
  if (state.backend != "libvirt") {
    return Fail(ErrorCode::kInvalidArgument,
                "ready state {} was made by the {} backend, not libvirt", state.file.string(),
                state.backend);
  }
  if (spec.cpu_model != state.spec.cpu_model || spec.smp != state.spec.smp ||
      spec.memory_mib != state.spec.memory_mib) {
    return Fail(ErrorCode::kInvalidArgument,
                "ready state {} is {} x{} {} MiB; asked for {} x{} {} MiB", state.file.string(),
                state.spec.cpu_model, state.spec.smp, state.spec.memory_mib, spec.cpu_model,
                spec.smp, spec.memory_mib);
  }
  if (!impl.host->alive()) {
    return Fail(ErrorCode::kInfra, "libvirt {}: host dropped out: {}", impl.host->uri(),
                impl.host->close_reason());
  }
  return {};
}

// A copy of the state `key` that no VM runs from, marked in use; nullopt when
// every copy is in use. `copies_made` says how many copies there are.
std::optional<StateCopy> ClaimCopy(LibvirtBackend::Impl& impl, const std::string& key,
                                   size_t& copies_made) {
  std::lock_guard lock(impl.mu);
  auto& copies = impl.states[key];
  copies_made = copies.size();
  for (auto& c : copies) {
    if (!c.in_use) {
      c.in_use = true;
      return c;
    }
  }
  return std::nullopt;
}

// Frees the copy (by its file) of the state `key` once its VM is gone.
using CopyRelease = std::function<void(const std::string& file)>;
CopyRelease ReleaseOf(const std::shared_ptr<LibvirtBackend::Impl>& impl, const std::string& key) {
  return [weak = std::weak_ptr<LibvirtBackend::Impl>(impl), key](const std::string& file) {
    if (auto impl = weak.lock()) {
      std::lock_guard lock(impl->mu);
      for (auto& c : impl->states[key]) {
        if (c.file == file) c.in_use = false;
      }
    }
  };
}

// The domain XML to restore `copy` with: its console log moved to this VM's
// artefacts, and owned by this lab process (the copy may have been saved by
// an earlier one; domain_owner.h).
Result<std::string> RestoreXml(const LibvirtBackend::Impl& impl, const StateCopy& copy,
                               const VmPaths& paths) {
  std::string saved_xml = libvirt_internal::TakeString(virDomainSaveImageGetXMLDesc(
      impl.host->conn(), copy.file.c_str(), VIR_DOMAIN_SAVE_IMAGE_XML_SECURE));
  if (saved_xml.empty()) {
    return libvirt_internal::FailVirt(
        ErrorCode::kInfra,
        fmt::format("libvirt {}: reading the saved state {}", impl.host->uri(), copy.file));
  }
  std::string xml = Replace(saved_xml, "'" + XmlEscape(copy.console_log) + "'",
                            "'" + XmlEscape(paths.console_log.string()) + "'");
  return WithOwner(xml, DomainOwner::Self());
}

// Restores the claimed `copy` as a VM of `spec` and waits for its agent.
// Releases the copy on failure, and when the VM is gone on success.
Result<std::unique_ptr<Vm>> RestoreCopy(const std::shared_ptr<LibvirtBackend::Impl>& impl,
                                        const StateCopy& copy, const ReadyState& state,
                                        const VmSpec& spec, const CopyRelease& release) {
  auto fail = [&](Error e) -> Result<std::unique_ptr<Vm>> {
    release(copy.file);
    return std::unexpected(std::move(e));
  };
  if (auto s = MakeDirs(spec.artefacts_dir); !s) return fail(s.error());
  VmPaths paths{fs::absolute(spec.artefacts_dir / "console.log"),
                fs::absolute(spec.artefacts_dir / "agent.log")};
  std::error_code ec;
  fs::remove(paths.console_log, ec);
  Clock::time_point t_start = Clock::now();
  auto xml = RestoreXml(*impl, copy, paths);
  if (!xml) return fail(xml.error());
  (void)WriteFileAtomic(spec.artefacts_dir / "domain.xml", *xml);
  Clock::time_point deadline = Clock::now() + spec.boot_timeout;
  Clock::time_point t_xml = Clock::now();
  auto domain =
      TransientDomain::Restore(impl->host, copy.file, *xml, copy.domain, StartState::kPaused);
  if (!domain) return fail(domain.error());
  Clock::time_point t_restored = Clock::now();
  auto agent = OpenStreams(**domain, paths, spec.name, StreamConsole(*impl));
  Log("libvirt")->debug(
      "{}: saved xml {} ms, virDomainRestoreFlags {} ms, streams {} ms", (*domain)->Where(),
      std::chrono::duration_cast<milliseconds>(t_xml - t_start).count(),
      std::chrono::duration_cast<milliseconds>(t_restored - t_xml).count(),
      std::chrono::duration_cast<milliseconds>(Clock::now() - t_restored).count());
  Status ready =
      agent ? AwaitAgent(**domain, *agent, deadline, true) : Status(std::unexpected(agent.error()));
  if (!ready) {
    if (agent) agent->Reset();
    domain->reset();
    return fail(
        Error(ErrorCode::kInfra, fmt::format("{}\nconsole tail:\n{}", ready.error().ToString(),
                                             ConsoleTail(paths.console_log))));
  }
  KvmProbe accel = Probe(impl, state.image);
  std::string file = copy.file;
  return std::unique_ptr<Vm>(std::make_unique<LibvirtVm>(
      std::move(*domain), std::move(*agent), state.image, spec, accel.accelerator, paths,
      impl->options.heartbeat_threshold, [release, file] { release(file); }));
}

}  // namespace

LibvirtBackend::LibvirtBackend(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
LibvirtBackend::~LibvirtBackend() = default;

Result<std::unique_ptr<LibvirtBackend>> LibvirtBackend::Open(LibvirtBackendOptions options) {
  auto host = LibvirtHost::Open(options.uri, options.host);
  if (!host) return std::unexpected(host.error());
  return OnHost(std::move(*host), std::move(options));
}

Result<std::unique_ptr<LibvirtBackend>> LibvirtBackend::OnHost(std::shared_ptr<LibvirtHost> host,
                                                               LibvirtBackendOptions options) {
  auto caps = host->Capabilities();
  if (!caps) return std::unexpected(caps.error());
  if (!caps->x86_64_hvm && options.require_x86_64) {
    return Fail(ErrorCode::kInfra,
                "libvirt {}: the host cannot run x86_64 hvm guests (no QEMU for x86_64?)",
                host->uri());
  }
  options.uri = host->uri();
  // Domains a killed lab process left running hold memory and CPU on the host
  // until someone destroys them: this is the first chance.
  if (auto stale = DestroyDomainsOfDeadOwners(*host); !stale) {
    Log("libvirt")->warn("{}", stale.error().ToString());
  } else if (!stale->empty()) {
    Log("libvirt")->warn("libvirt {}: destroyed {} domain(s) left by dead lab processes: {}",
                         host->uri(), stale->size(), fmt::join(*stale, ", "));
  }
  auto impl = std::make_shared<Impl>();
  impl->options = std::move(options);
  impl->host = std::move(host);
  return std::unique_ptr<LibvirtBackend>(new LibvirtBackend(std::move(impl)));
}

const std::shared_ptr<LibvirtHost>& LibvirtBackend::host() const { return impl_->host; }
const LibvirtBackendOptions& LibvirtBackend::options() const { return impl_->options; }

KvmProbe LibvirtBackend::ChooseAccelerator(const VmImage& image) { return Probe(impl_, image); }

Result<std::unique_ptr<Vm>> LibvirtBackend::Boot(const VmImage& image, const VmSpec& spec) {
  // Domains are kernel + initramfs only (domain_xml.h): an image whose root is
  // a disk (`root: disk`) runs on the qemu backend.
  if (!image.root_disk.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "image {} has its root on a disk (root: disk); the libvirt backend boots "
                "initramfs images only: use --backend qemu, or root: initramfs",
                image.name);
  }
  if (!impl_->host->alive()) {
    return Fail(ErrorCode::kInfra, "libvirt {}: host dropped out: {}", impl_->host->uri(),
                impl_->host->close_reason());
  }
  KvmProbe accel = Probe(impl_, image);
  auto placed = Place(*impl_, image);
  if (!placed) return std::unexpected(Error(ErrorCode::kInfra, placed.error().ToString()));
  auto vm = BootOn(impl_, image, *placed, spec, accel.accelerator);
  if (!vm) return std::unexpected(vm.error());
  return std::unique_ptr<Vm>(std::move(*vm));
}

Result<ReadyState> LibvirtBackend::SaveReady(Vm& vm_base, const fs::path& file) {
  auto* vm = dynamic_cast<LibvirtVm*>(&vm_base);
  if (vm == nullptr)
    return Fail(ErrorCode::kInvalidArgument, "SaveReady: {} is not a libvirt VM",
                vm_base.Describe());
  TransientDomain& domain = vm->domain();
  std::string name = domain.name();
  std::string where = domain.Where();
  auto xml = domain.XmlDesc();
  if (!xml) return std::unexpected(xml.error());
  std::string saved = fs::absolute(file).string();
  if (auto s = MakeDirs(fs::path(saved).parent_path()); !s) return std::unexpected(s.error());
  std::error_code ec;
  fs::remove(saved, ec);

  // The agent connection ends with the saved QEMU; the restored one listens anew.
  vm->DropAgent();
  if (auto s = domain.SaveTo(saved); !s) return std::unexpected(s.error());
  Clock::time_point deadline = Clock::now() + vm->spec().boot_timeout;
  auto restored = TransientDomain::Restore(impl_->host, saved, "", name, StartState::kPaused);
  if (!restored) return std::unexpected(restored.error());
  auto agent = OpenStreams(**restored, vm->paths(), vm->spec().name, StreamConsole(*impl_));
  if (!agent) return std::unexpected(agent.error());
  if (auto s = AwaitAgent(**restored, *agent, deadline, true); !s)
    return std::unexpected(s.error());
  vm->ReplaceAfterSave(std::move(*restored), std::move(*agent));

  ReadyState state{"libvirt", saved, vm->image(), vm->spec()};
  {
    std::lock_guard lock(impl_->mu);
    auto& copies = impl_->states[saved];
    std::erase_if(copies, [&](const StateCopy& c) { return c.file == saved; });
    copies.push_back({saved, name, vm->paths().console_log.string(), true});
  }
  std::weak_ptr<Impl> weak = impl_;
  vm->SetOnRelease([weak, saved] {
    if (auto impl = weak.lock()) {
      std::lock_guard lock(impl->mu);
      for (auto& c : impl->states[saved]) {
        if (c.file == saved) c.in_use = false;
      }
    }
  });
  Log("libvirt")->debug("{}: ready state saved to {}", where, saved);
  return state;
}

Result<std::unique_ptr<Vm>> LibvirtBackend::RestoreReady(const ReadyState& state,
                                                         const VmSpec& spec) {
  if (auto s = CheckRestorable(*impl_, state, spec); !s) return std::unexpected(s.error());
  std::string key = state.file.string();
  size_t copies_made = 0;
  std::optional<StateCopy> copy = ClaimCopy(*impl_, key, copies_made);
  CopyRelease release = ReleaseOf(impl_, key);
  if (copy) return RestoreCopy(impl_, *copy, state, spec, release);

  // Every copy runs (or this host has none yet): a fresh VM becomes one more.
  auto vm = Boot(state.image, spec);
  if (!vm) return vm;
  std::string file = fmt::format("{}.{}", key, copies_made);
  auto saved = SaveReady(**vm, file);
  if (!saved) return std::unexpected(saved.error());
  std::lock_guard lock(impl_->mu);
  auto& copies = impl_->states[key];
  for (auto& c : impl_->states[file]) copies.push_back(c);
  impl_->states.erase(file);
  dynamic_cast<LibvirtVm&>(**vm).SetOnRelease([release, file] { release(file); });
  return vm;
}

LibvirtVmInfo* AsLibvirtVm(Vm& vm) { return dynamic_cast<LibvirtVmInfo*>(&vm); }

}  // namespace patchlab::harness
