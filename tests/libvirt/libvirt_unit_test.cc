// Unit tests of the libvirt backend's pieces against libvirt's built-in test
// driver (test:///default: no daemon, real libvirt parsing and events).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "harness/libvirt/domain_owner.h"
#include "harness/libvirt/domain_xml.h"
#include "harness/libvirt/fleet_backend.h"
#include "harness/libvirt/host_check.h"
#include "harness/libvirt/libvirt_backend.h"
#include "harness/libvirt/libvirt_host.h"
#include "harness/libvirt/transient_domain.h"
#include "tests/support/status_matchers.h"

using ::testing::HasSubstr;
using ::testing::Not;

namespace patchlab::harness {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

constexpr char kTestUri[] = "test:///default";

DomainXmlSpec SampleSpec(const std::string& name) {
  DomainXmlSpec s;
  s.name = name;
  s.cpu_model = "Nehalem";
  s.vcpus = 2;
  s.memory_mib = 384;
  s.kernel = "/images/vmlinuz";
  s.initrd = "/images/initrd.cpio";
  s.cmdline = "console=ttyS0 loglevel=7 print-fatal-signals=1";
  s.console_log = "/out/cell/console.log";
  s.metadata = DomainOwner::Self().MetadataXml();
  return s;
}

std::shared_ptr<LibvirtHost> TestHost() {
  auto host = LibvirtHost::Open(kTestUri);
  EXPECT_TRUE(host.has_value()) << (host ? "" : host.error().ToString());
  return host ? *host : nullptr;
}

bool DomainExists(LibvirtHost& host, const std::string& name) {
  virDomainPtr d = virDomainLookupByName(host.conn(), name.c_str());
  if (d == nullptr) return false;
  virDomainFree(d);
  return true;
}

TEST(DomainXml, ParsedBackByLibvirtWithEveryDevice) {
  auto host = TestHost();
  ASSERT_TRUE(host);
  DomainXmlSpec spec = SampleSpec("patchlab-xml-roundtrip");
  auto dom = TransientDomain::Create(host, BuildDomainXml(spec), spec.name);
  ASSERT_OK(dom);
  auto xml = (*dom)->XmlDesc();
  ASSERT_OK(xml);
  // What libvirt's own parser kept of our document.
  EXPECT_THAT(*xml, HasSubstr("<name>patchlab-xml-roundtrip</name>")) << *xml;
  EXPECT_THAT(*xml, HasSubstr("<memory unit='KiB'>393216</memory>")) << *xml;
  EXPECT_THAT(*xml, HasSubstr(">2</vcpu>")) << *xml;
  EXPECT_THAT(*xml, HasSubstr("machine='pc'")) << *xml;
  EXPECT_THAT(*xml, HasSubstr("<kernel>/images/vmlinuz</kernel>")) << *xml;
  EXPECT_THAT(*xml, HasSubstr("<initrd>/images/initrd.cpio</initrd>")) << *xml;
  EXPECT_THAT(*xml, HasSubstr("<cmdline>console=ttyS0 loglevel=7 print-fatal-signals=1</cmdline>"))
      << *xml;
  EXPECT_THAT(*xml, HasSubstr("<acpi/>")) << *xml;
  EXPECT_THAT(*xml, HasSubstr("<model fallback='forbid'>Nehalem</model>")) << *xml;
  EXPECT_THAT(*xml, HasSubstr("<source path='/out/cell/console.log' append='on'/>")) << *xml;
  EXPECT_THAT(*xml, HasSubstr("<serial type='pty'>")) << *xml;
  EXPECT_THAT(*xml, HasSubstr(kOwnerMetadataUri)) << *xml;
  EXPECT_THAT(*xml, HasSubstr("<panic model='isa'")) << *xml;
  EXPECT_THAT(*xml, HasSubstr("<on_crash>preserve</on_crash>")) << *xml;
  EXPECT_THAT(*xml, HasSubstr("<on_reboot>destroy</on_reboot>")) << *xml;
  EXPECT_THAT(*xml, Not(HasSubstr("<interface"))) << *xml;
  EXPECT_THAT(*xml, Not(HasSubstr("<disk"))) << *xml;
}

TEST(DomainXml, KvmTypeAndHostCpu) {
  DomainXmlSpec spec = SampleSpec("patchlab-kvm");
  spec.domain_type = "kvm";
  spec.cpu_model = "host";
  std::string xml = BuildDomainXml(spec);
  EXPECT_THAT(xml, HasSubstr("<domain type='kvm'>")) << xml;
  EXPECT_THAT(xml, HasSubstr("<cpu mode='host-passthrough'/>")) << xml;
}

TEST(DomainXml, NoConsoleLogMeansAPtyTheLabStreams) {
  DomainXmlSpec spec = SampleSpec("patchlab-pty-console");
  spec.console_log.clear();
  std::string xml = BuildDomainXml(spec);
  EXPECT_THAT(xml, HasSubstr("<serial type='pty'><target port='0'/></serial>")) << xml;
  EXPECT_THAT(xml, HasSubstr("<serial type='pty'><target port='1'/></serial>")) << xml;
  EXPECT_THAT(xml, Not(HasSubstr("type='file'"))) << xml;
}

TEST(DomainXml, EscapesTextAndAttributes) {
  DomainXmlSpec spec = SampleSpec("patchlab-esc");
  spec.cmdline = "a=<b> c='d' & e";
  spec.console_log = "/out/it's/console.log";
  std::string xml = BuildDomainXml(spec);
  EXPECT_THAT(xml, HasSubstr("a=&lt;b&gt; c=&apos;d&apos; &amp; e")) << xml;
  EXPECT_THAT(xml, HasSubstr("/out/it&apos;s/console.log")) << xml;
  auto host = TestHost();
  ASSERT_TRUE(host);
  auto dom = TransientDomain::Create(host, xml, spec.name);
  ASSERT_OK(dom);
  auto back = (*dom)->XmlDesc();
  ASSERT_TRUE(back.has_value());
  EXPECT_THAT(*back, HasSubstr("a=&lt;b&gt; c=&apos;d&apos; &amp; e")) << *back;
}

TEST(TransientDomain, CreateThenDestroyLeavesNothing) {
  auto host = TestHost();
  ASSERT_TRUE(host);
  DomainXmlSpec spec = SampleSpec("patchlab-lifecycle");
  {
    auto dom = TransientDomain::Create(host, BuildDomainXml(spec), spec.name);
    ASSERT_OK(dom);
    EXPECT_TRUE((*dom)->Active());
    EXPECT_TRUE(DomainExists(*host, spec.name));
    auto stats = (*dom)->Stats();
    ASSERT_OK(stats);
    EXPECT_EQ(stats->state, "running");
    EXPECT_EQ(stats->memory_kib, 384u * 1024);
  }
  // Transient: once destroyed it is not even defined.
  EXPECT_FALSE(DomainExists(*host, spec.name));
}

TEST(TransientDomain, ExplicitDestroyIsIdempotent) {
  auto host = TestHost();
  ASSERT_TRUE(host);
  DomainXmlSpec spec = SampleSpec("patchlab-destroy-twice");
  auto dom = TransientDomain::Create(host, BuildDomainXml(spec), spec.name);
  ASSERT_TRUE(dom.has_value());
  EXPECT_TRUE((*dom)->Destroy().has_value());
  EXPECT_FALSE((*dom)->Active());
  EXPECT_TRUE((*dom)->Destroy().has_value());
  EXPECT_FALSE(DomainExists(*host, spec.name));
}

TEST(TransientDomain, LifecycleEventsAreDelivered) {
  auto host = TestHost();
  ASSERT_TRUE(host);
  DomainXmlSpec spec = SampleSpec("patchlab-events");
  auto dom = TransientDomain::Create(host, BuildDomainXml(spec), spec.name);
  ASSERT_TRUE(dom.has_value());
  ASSERT_TRUE((*dom)->Suspend().has_value());
  auto e = (*dom)->WaitEvent(milliseconds(10000));
  ASSERT_TRUE(e.has_value()) << "no event after suspend";
  EXPECT_EQ(e->kind, DomainEventKind::kSuspended) << e->detail;
  ASSERT_TRUE((*dom)->Resume().has_value());
  e = (*dom)->WaitEvent(milliseconds(10000));
  ASSERT_TRUE(e.has_value()) << "no event after resume";
  EXPECT_EQ(e->kind, DomainEventKind::kResumed) << e->detail;
  ASSERT_TRUE((*dom)->Destroy().has_value());
  e = (*dom)->WaitEvent(milliseconds(10000));
  ASSERT_TRUE(e.has_value()) << "no event after destroy";
  EXPECT_EQ(e->kind, DomainEventKind::kStopped);
  EXPECT_EQ(e->detail, "stopped/destroyed");
}

TEST(TransientDomain, SaveThenRestoreUnderTheSameName) {
  auto host = TestHost();
  ASSERT_TRUE(host);
  DomainXmlSpec spec = SampleSpec("patchlab-save");
  fs::path file =
      fs::temp_directory_path() / fmt::format("patchlab-libvirt-unit-{}.save", ::getpid());
  auto dom = TransientDomain::Create(host, BuildDomainXml(spec), spec.name);
  ASSERT_TRUE(dom.has_value());
  ASSERT_TRUE((*dom)->SaveTo(file.string()).has_value());
  EXPECT_FALSE((*dom)->Active());
  EXPECT_FALSE(DomainExists(*host, spec.name));
  auto restored = TransientDomain::Restore(host, file.string(), "", spec.name);
  ASSERT_OK(restored);
  EXPECT_TRUE((*restored)->Active());
  restored->reset();
  EXPECT_FALSE(DomainExists(*host, spec.name));
  fs::remove(file);
}

TEST(TransientDomain, RestoreOfAMissingFileNamesHostDomainAndFile) {
  auto host = TestHost();
  ASSERT_TRUE(host);
  auto restored = TransientDomain::Restore(host, "/nonexistent/state.save", "", "patchlab-none");
  ASSERT_FALSE(restored.has_value());
  std::string msg = restored.error().ToString();
  EXPECT_THAT(msg, HasSubstr(kTestUri)) << msg;
  EXPECT_THAT(msg, HasSubstr("patchlab-none")) << msg;
  EXPECT_THAT(msg, HasSubstr("/nonexistent/state.save")) << msg;
}

TEST(TransientDomain, BadXmlNamesHostAndDomain) {
  auto host = TestHost();
  ASSERT_TRUE(host);
  auto dom =
      TransientDomain::Create(host, "<domain type='qemu'><name>x</name>", "patchlab-bad-xml");
  ASSERT_FALSE(dom.has_value());
  EXPECT_EQ(dom.error().code(), ErrorCode::kInfra);
  std::string msg = dom.error().ToString();
  EXPECT_THAT(msg, HasSubstr("libvirt test:///default domain patchlab-bad-xml")) << msg;
}

TEST(TransientDomain, DuplicateNameIsRefused) {
  auto host = TestHost();
  ASSERT_TRUE(host);
  DomainXmlSpec spec = SampleSpec("patchlab-dup");
  auto first = TransientDomain::Create(host, BuildDomainXml(spec), spec.name);
  ASSERT_TRUE(first.has_value());
  auto second = TransientDomain::Create(host, BuildDomainXml(spec), spec.name);
  ASSERT_FALSE(second.has_value());
  // The failed create did not take the first one down with it.
  EXPECT_TRUE((*first)->Active());
}

TEST(LibvirtHost, UnreachableUriIsNamed) {
  std::string uri = "qemu+unix:///system?socket=/nonexistent/patchlab/libvirt-sock";
  auto host = LibvirtHost::Open(uri);
  ASSERT_FALSE(host.has_value());
  EXPECT_EQ(host.error().code(), ErrorCode::kInfra);
  EXPECT_THAT(host.error().ToString(), HasSubstr(uri)) << host.error().ToString();
}

TEST(LibvirtHost, UnknownDriverIsNamed) {
  auto host = LibvirtHost::Open("nosuchdriver:///x");
  ASSERT_FALSE(host.has_value());
  EXPECT_THAT(host.error().ToString(), HasSubstr("nosuchdriver:///x")) << host.error().ToString();
}

TEST(LibvirtHost, TestDriverCapabilities) {
  auto host = TestHost();
  ASSERT_TRUE(host);
  EXPECT_TRUE(host->alive());
  EXPECT_TRUE(host->local());
  auto caps = host->Capabilities();
  ASSERT_OK(caps);
  EXPECT_EQ(caps->hypervisor, "TEST");
  EXPECT_FALSE(caps->kvm_listed);
}

TEST(LibvirtHost, UriLocality) {
  EXPECT_TRUE(UriIsLocal("qemu:///system"));
  EXPECT_TRUE(UriIsLocal("qemu+unix:///system?socket=/tmp/s"));
  EXPECT_TRUE(UriIsLocal("test:///default"));
  EXPECT_TRUE(UriIsLocal("qemu+ssh://localhost/system"));
  EXPECT_FALSE(UriIsLocal("qemu+ssh://host-a/system"));
  EXPECT_FALSE(UriIsLocal("qemu+tls://10.0.0.7/system"));
}

TEST(HostCapabilities, ParsesKvmAndEmulator) {
  const char* xml =
      "<capabilities><host/>"
      "<guest><os_type>hvm</os_type><arch "
      "name='i686'><emulator>/usr/bin/qemu-system-i386</emulator>"
      "<domain type='qemu'/></arch></guest>"
      "<guest><os_type>hvm</os_type><arch name='x86_64'><wordsize>64</wordsize>"
      "<emulator>/usr/bin/qemu-system-x86_64</emulator><domain type='qemu'/><domain "
      "type='kvm'/></arch></guest>"
      "</capabilities>";
  HostCapabilities caps = ParseCapabilities(xml);
  EXPECT_TRUE(caps.x86_64_hvm);
  EXPECT_TRUE(caps.kvm_listed);
  EXPECT_EQ(caps.emulator, "/usr/bin/qemu-system-x86_64");
  HostCapabilities none = ParseCapabilities("<capabilities><host/></capabilities>");
  EXPECT_FALSE(none.x86_64_hvm);
  EXPECT_FALSE(none.kvm_listed);
}

// The test driver has no consoles, so the agent's port cannot be opened: Boot
// must fail with an infrastructure error naming host and domain, and leave no
// domain behind.
TEST(LibvirtBackend, FailedBootLeavesNoDomain) {
  LibvirtBackendOptions o;
  o.uri = kTestUri;
  o.accelerator = Accelerator::kTcg;
  o.require_x86_64 = false;  // the test driver offers i686 only
  auto backend = LibvirtBackend::Open(o);
  ASSERT_OK(backend);
  fs::path dir =
      fs::temp_directory_path() / fmt::format("patchlab-libvirt-unit-boot-{}", ::getpid());
  fs::create_directories(dir);
  fs::path kernel = dir / "vmlinuz";
  fs::path initrd = dir / "initrd";
  { std::ofstream(kernel) << "k"; }
  { std::ofstream(initrd) << "i"; }
  VmImage image{"unit", "0", kernel, initrd, {"console=ttyS0"}, {"qemu64"}, "hash"};
  VmSpec spec;
  spec.name = "unit-boot";
  spec.artefacts_dir = dir / "vm";
  spec.boot_timeout = milliseconds(1500);
  auto vm = (*backend)->Boot(image, spec);
  ASSERT_FALSE(vm.has_value());
  EXPECT_EQ(vm.error().code(), ErrorCode::kInfra);
  EXPECT_THAT(vm.error().ToString(),
              HasSubstr("libvirt test:///default domain patchlab-unit-boot-"))
      << vm.error().ToString();
  // Nothing named patchlab-unit-boot-* is left on the host.
  virDomainPtr* domains = nullptr;
  int n = virConnectListAllDomains((*backend)->host()->conn(), &domains, 0);
  ASSERT_GE(n, 0);
  for (int i = 0; i < n; ++i) {
    std::string name = virDomainGetName(domains[i]);
    EXPECT_THAT(name, Not(HasSubstr("patchlab-unit-boot-"))) << "leaked " << name;
    virDomainFree(domains[i]);
  }
  free(domains);
  // The domain XML stays beside the logs for a post-mortem.
  EXPECT_TRUE(fs::exists(spec.artefacts_dir / "domain.xml"));
  fs::remove_all(dir);
}

TEST(DomainOwner, SelfRoundTripsThroughTheMetadataElement) {
  DomainOwner self = DomainOwner::Self();
  EXPECT_EQ(self.pid, ::getpid());
  EXPECT_GT(self.start, 0u);
  EXPECT_FALSE(self.boot.empty());
  EXPECT_THAT(self.pidns, HasSubstr("pid:[")) << self.pidns;
  auto back = ParseOwner(self.MetadataXml());
  ASSERT_TRUE(back.has_value()) << self.MetadataXml();
  EXPECT_EQ(back->host, self.host);
  EXPECT_EQ(back->boot, self.boot);
  EXPECT_EQ(back->pidns, self.pidns);
  EXPECT_EQ(back->pid, self.pid);
  EXPECT_EQ(back->start, self.start);
  EXPECT_EQ(CheckOwner(self, self), OwnerState::kAlive);
  EXPECT_FALSE(ParseOwner("<domain><name>x</name></domain>").has_value());
  // As virDomainGetMetadata gives it back: the element alone, no namespace.
  auto bare =
      ParseOwner("<owner host=\"h\" boot=\"b\" pidns=\"pid:[1]\" pid=\"12\" start=\"34\"/>");
  ASSERT_TRUE(bare.has_value());
  EXPECT_EQ(bare->host, "h");
  EXPECT_EQ(bare->pid, 12);
  EXPECT_EQ(bare->start, 34u);
}

TEST(DomainOwner, WithOwnerReplacesOrAddsTheMetadata) {
  DomainOwner other = DomainOwner::Self();
  other.pid = 1;
  other.start = 7;
  std::string saved =
      "<domain>\n  <name>d</name>\n  <metadata>\n    <x:y xmlns:x='u'/>\n  </metadata>\n</domain>";
  std::string replaced = WithOwner(saved, other);
  EXPECT_THAT(replaced, Not(HasSubstr("xmlns:x='u'"))) << replaced;
  auto owner = ParseOwner(replaced);
  ASSERT_TRUE(owner.has_value()) << replaced;
  EXPECT_EQ(owner->pid, 1);
  EXPECT_EQ(owner->start, 7u);
  std::string added = WithOwner("<domain>\n  <name>d</name>\n</domain>", other);
  EXPECT_THAT(added, HasSubstr("</name>\n  <metadata>")) << added;
  EXPECT_TRUE(ParseOwner(added).has_value());
}

// Domains of dead owners go, the others stay: a live owner (this process), a
// lab on another machine, a domain that is not the lab's.
TEST(DomainOwner, OnlyDomainsOfDeadOwnersAreDestroyed) {
  auto host = TestHost();
  ASSERT_TRUE(host);
  DomainOwner self = DomainOwner::Self();
  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ASSERT_GT(child, 0);
  ::waitpid(child, nullptr,
            0);  // gone: its pid names no process (or a later one with another start)
  DomainOwner exited = self;
  exited.pid = child;
  DomainOwner reused = self;  // this pid, but not this process's start time
  reused.start = self.start + 1;
  DomainOwner rebooted = self;
  rebooted.boot = "00000000-0000-0000-0000-000000000000";
  DomainOwner elsewhere = self;
  elsewhere.host = self.host + "-other-lab";
  elsewhere.pid = child;
  EXPECT_EQ(CheckOwner(exited, self), OwnerState::kDead);
  EXPECT_EQ(CheckOwner(reused, self), OwnerState::kDead);
  EXPECT_EQ(CheckOwner(rebooted, self), OwnerState::kDead);
  EXPECT_EQ(CheckOwner(elsewhere, self), OwnerState::kUnknown);

  std::vector<std::unique_ptr<TransientDomain>> keep;
  auto make = [&](const std::string& name, const std::string& metadata) {
    DomainXmlSpec spec = SampleSpec(name);
    spec.metadata = metadata;
    auto dom = TransientDomain::Create(host, BuildDomainXml(spec), name);
    EXPECT_OK(dom);
    if (dom) keep.push_back(std::move(*dom));
  };
  make("patchlab-owner-live", self.MetadataXml());
  make("patchlab-owner-exited", exited.MetadataXml());
  make("patchlab-owner-reused", reused.MetadataXml());
  make("patchlab-owner-rebooted", rebooted.MetadataXml());
  make("patchlab-owner-elsewhere", elsewhere.MetadataXml());
  make("patchlab-owner-none", "");
  ASSERT_EQ(keep.size(), 6u);

  auto destroyed = DestroyDomainsOfDeadOwners(*host);
  ASSERT_OK(destroyed);
  std::set<std::string> gone(destroyed->begin(), destroyed->end());
  EXPECT_EQ(gone, (std::set<std::string>{"patchlab-owner-exited", "patchlab-owner-reused",
                                         "patchlab-owner-rebooted"}));
  EXPECT_TRUE(keep[0]->Active());
  EXPECT_FALSE(keep[1]->Active());
  EXPECT_FALSE(keep[2]->Active());
  EXPECT_FALSE(keep[3]->Active());
  EXPECT_TRUE(keep[4]->Active());
  EXPECT_TRUE(keep[5]->Active());
}

TEST(FleetBackend, UnreachableHostsAreLeftOutAndNamed) {
  FleetOptions o;
  o.uris = {kTestUri, "qemu+unix:///system?socket=/nonexistent/fleet-sock"};
  o.per_host = 2;
  o.backend.accelerator = Accelerator::kTcg;
  o.backend.require_x86_64 = false;  // the test driver offers i686 only
  auto fleet = FleetBackend::Open(o);
  ASSERT_OK(fleet);
  auto hosts = (*fleet)->Hosts();
  ASSERT_EQ(hosts.size(), 2u);
  EXPECT_TRUE(hosts[0].alive);
  EXPECT_FALSE(hosts[1].alive);
  EXPECT_THAT(hosts[1].reason, HasSubstr("/nonexistent/fleet-sock")) << hosts[1].reason;
  EXPECT_EQ((*fleet)->capacity(), 2);
}

TEST(FleetBackend, NoReachableHostFailsNamingEach) {
  FleetOptions o;
  o.uris = {"qemu+unix:///system?socket=/nonexistent/a",
            "qemu+unix:///system?socket=/nonexistent/b"};
  auto fleet = FleetBackend::Open(o);
  ASSERT_FALSE(fleet.has_value());
  EXPECT_EQ(fleet.error().code(), ErrorCode::kInfra);
  EXPECT_THAT(fleet.error().ToString(), HasSubstr("/nonexistent/a"));
  EXPECT_THAT(fleet.error().ToString(), HasSubstr("/nonexistent/b"));
}

TEST(FleetBackend, BadOptionsAreUsageErrors) {
  FleetOptions none;
  auto a = FleetBackend::Open(none);
  ASSERT_FALSE(a.has_value());
  EXPECT_EQ(a.error().code(), ErrorCode::kInvalidArgument);
  FleetOptions zero;
  zero.uris = {kTestUri};
  zero.per_host = 0;
  auto b = FleetBackend::Open(zero);
  ASSERT_FALSE(b.has_value());
  EXPECT_EQ(b.error().code(), ErrorCode::kInvalidArgument);
}

TEST(HostCheck, UnreachableHostIsFatalWithTheUri) {
  HostCheckReport r = CheckHost("qemu+unix:///system?socket=/nonexistent/check", {});
  EXPECT_FALSE(r.usable());
  ASSERT_EQ(r.lines.size(), 1u);
  EXPECT_EQ(r.lines[0].check, "libvirt");
  EXPECT_TRUE(r.lines[0].fatal);
  EXPECT_THAT(r.lines[0].detail, HasSubstr("/nonexistent/check"));
}

}  // namespace
}  // namespace patchlab::harness
