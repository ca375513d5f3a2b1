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
  ASSERT_TRUE(dom.has_value()) << dom.error().ToString();
  auto xml = (*dom)->XmlDesc();
  ASSERT_TRUE(xml.has_value()) << xml.error().ToString();
  // What libvirt's own parser kept of our document.
  EXPECT_NE(xml->find("<name>patchlab-xml-roundtrip</name>"), std::string::npos) << *xml;
  EXPECT_NE(xml->find("<memory unit='KiB'>393216</memory>"), std::string::npos) << *xml;
  EXPECT_NE(xml->find(">2</vcpu>"), std::string::npos) << *xml;
  EXPECT_NE(xml->find("machine='pc'"), std::string::npos) << *xml;
  EXPECT_NE(xml->find("<kernel>/images/vmlinuz</kernel>"), std::string::npos) << *xml;
  EXPECT_NE(xml->find("<initrd>/images/initrd.cpio</initrd>"), std::string::npos) << *xml;
  EXPECT_NE(xml->find("<cmdline>console=ttyS0 loglevel=7 print-fatal-signals=1</cmdline>"),
            std::string::npos)
      << *xml;
  EXPECT_NE(xml->find("<acpi/>"), std::string::npos) << *xml;
  EXPECT_NE(xml->find("<model fallback='forbid'>Nehalem</model>"), std::string::npos) << *xml;
  EXPECT_NE(xml->find("<source path='/out/cell/console.log' append='on'/>"), std::string::npos)
      << *xml;
  EXPECT_NE(xml->find("<serial type='pty'>"), std::string::npos) << *xml;
  EXPECT_NE(xml->find(kOwnerMetadataUri), std::string::npos) << *xml;
  EXPECT_NE(xml->find("<panic model='isa'"), std::string::npos) << *xml;
  EXPECT_NE(xml->find("<on_crash>preserve</on_crash>"), std::string::npos) << *xml;
  EXPECT_NE(xml->find("<on_reboot>destroy</on_reboot>"), std::string::npos) << *xml;
  EXPECT_EQ(xml->find("<interface"), std::string::npos) << *xml;
  EXPECT_EQ(xml->find("<disk"), std::string::npos) << *xml;
}

TEST(DomainXml, KvmTypeAndHostCpu) {
  DomainXmlSpec spec = SampleSpec("patchlab-kvm");
  spec.domain_type = "kvm";
  spec.cpu_model = "host";
  std::string xml = BuildDomainXml(spec);
  EXPECT_NE(xml.find("<domain type='kvm'>"), std::string::npos) << xml;
  EXPECT_NE(xml.find("<cpu mode='host-passthrough'/>"), std::string::npos) << xml;
}

TEST(DomainXml, NoConsoleLogMeansAPtyTheLabStreams) {
  DomainXmlSpec spec = SampleSpec("patchlab-pty-console");
  spec.console_log.clear();
  std::string xml = BuildDomainXml(spec);
  EXPECT_NE(xml.find("<serial type='pty'><target port='0'/></serial>"), std::string::npos) << xml;
  EXPECT_NE(xml.find("<serial type='pty'><target port='1'/></serial>"), std::string::npos) << xml;
  EXPECT_EQ(xml.find("type='file'"), std::string::npos) << xml;
}

TEST(DomainXml, EscapesTextAndAttributes) {
  DomainXmlSpec spec = SampleSpec("patchlab-esc");
  spec.cmdline = "a=<b> c='d' & e";
  spec.console_log = "/out/it's/console.log";
  std::string xml = BuildDomainXml(spec);
  EXPECT_NE(xml.find("a=&lt;b&gt; c=&apos;d&apos; &amp; e"), std::string::npos) << xml;
  EXPECT_NE(xml.find("/out/it&apos;s/console.log"), std::string::npos) << xml;
  auto host = TestHost();
  ASSERT_TRUE(host);
  auto dom = TransientDomain::Create(host, xml, spec.name);
  ASSERT_TRUE(dom.has_value()) << dom.error().ToString();
  auto back = (*dom)->XmlDesc();
  ASSERT_TRUE(back.has_value());
  EXPECT_NE(back->find("a=&lt;b&gt; c=&apos;d&apos; &amp; e"), std::string::npos) << *back;
}

TEST(TransientDomain, CreateThenDestroyLeavesNothing) {
  auto host = TestHost();
  ASSERT_TRUE(host);
  DomainXmlSpec spec = SampleSpec("patchlab-lifecycle");
  {
    auto dom = TransientDomain::Create(host, BuildDomainXml(spec), spec.name);
    ASSERT_TRUE(dom.has_value()) << dom.error().ToString();
    EXPECT_TRUE((*dom)->Active());
    EXPECT_TRUE(DomainExists(*host, spec.name));
    auto stats = (*dom)->Stats();
    ASSERT_TRUE(stats.has_value()) << stats.error().ToString();
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
  ASSERT_TRUE(restored.has_value()) << restored.error().ToString();
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
  EXPECT_NE(msg.find(kTestUri), std::string::npos) << msg;
  EXPECT_NE(msg.find("patchlab-none"), std::string::npos) << msg;
  EXPECT_NE(msg.find("/nonexistent/state.save"), std::string::npos) << msg;
}

TEST(TransientDomain, BadXmlNamesHostAndDomain) {
  auto host = TestHost();
  ASSERT_TRUE(host);
  auto dom =
      TransientDomain::Create(host, "<domain type='qemu'><name>x</name>", "patchlab-bad-xml");
  ASSERT_FALSE(dom.has_value());
  EXPECT_EQ(dom.error().code(), ErrorCode::kInfra);
  std::string msg = dom.error().ToString();
  EXPECT_NE(msg.find("libvirt test:///default domain patchlab-bad-xml"), std::string::npos) << msg;
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
  EXPECT_NE(host.error().ToString().find(uri), std::string::npos) << host.error().ToString();
}

TEST(LibvirtHost, UnknownDriverIsNamed) {
  auto host = LibvirtHost::Open("nosuchdriver:///x");
  ASSERT_FALSE(host.has_value());
  EXPECT_NE(host.error().ToString().find("nosuchdriver:///x"), std::string::npos)
      << host.error().ToString();
}

TEST(LibvirtHost, TestDriverCapabilities) {
  auto host = TestHost();
  ASSERT_TRUE(host);
  EXPECT_TRUE(host->alive());
  EXPECT_TRUE(host->local());
  auto caps = host->Capabilities();
  ASSERT_TRUE(caps.has_value()) << caps.error().ToString();
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
  ASSERT_TRUE(backend.has_value()) << backend.error().ToString();
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
  EXPECT_NE(vm.error().ToString().find("libvirt test:///default domain patchlab-unit-boot-"),
            std::string::npos)
      << vm.error().ToString();
  // Nothing named patchlab-unit-boot-* is left on the host.
  virDomainPtr* domains = nullptr;
  int n = virConnectListAllDomains((*backend)->host()->conn(), &domains, 0);
  ASSERT_GE(n, 0);
  for (int i = 0; i < n; ++i) {
    std::string name = virDomainGetName(domains[i]);
    EXPECT_EQ(name.find("patchlab-unit-boot-"), std::string::npos) << "leaked " << name;
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
  EXPECT_NE(self.pidns.find("pid:["), std::string::npos) << self.pidns;
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
  EXPECT_EQ(replaced.find("xmlns:x='u'"), std::string::npos) << replaced;
  auto owner = ParseOwner(replaced);
  ASSERT_TRUE(owner.has_value()) << replaced;
  EXPECT_EQ(owner->pid, 1);
  EXPECT_EQ(owner->start, 7u);
  std::string added = WithOwner("<domain>\n  <name>d</name>\n</domain>", other);
  EXPECT_NE(added.find("</name>\n  <metadata>"), std::string::npos) << added;
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
    EXPECT_TRUE(dom.has_value()) << dom.error().ToString();
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
  ASSERT_TRUE(destroyed.has_value()) << destroyed.error().ToString();
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
  ASSERT_TRUE(fleet.has_value()) << fleet.error().ToString();
  auto hosts = (*fleet)->Hosts();
  ASSERT_EQ(hosts.size(), 2u);
  EXPECT_TRUE(hosts[0].alive);
  EXPECT_FALSE(hosts[1].alive);
  EXPECT_NE(hosts[1].reason.find("/nonexistent/fleet-sock"), std::string::npos) << hosts[1].reason;
  EXPECT_EQ((*fleet)->capacity(), 2);
}

TEST(FleetBackend, NoReachableHostFailsNamingEach) {
  FleetOptions o;
  o.uris = {"qemu+unix:///system?socket=/nonexistent/a",
            "qemu+unix:///system?socket=/nonexistent/b"};
  auto fleet = FleetBackend::Open(o);
  ASSERT_FALSE(fleet.has_value());
  EXPECT_EQ(fleet.error().code(), ErrorCode::kInfra);
  EXPECT_NE(fleet.error().ToString().find("/nonexistent/a"), std::string::npos);
  EXPECT_NE(fleet.error().ToString().find("/nonexistent/b"), std::string::npos);
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
  EXPECT_NE(r.lines[0].detail.find("/nonexistent/check"), std::string::npos);
}

}  // namespace
}  // namespace patchlab::harness
