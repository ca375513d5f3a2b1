#include "harness/libvirt/domain_owner.h"

#include <fmt/format.h>
#include <limits.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "base/log.h"
#include "base/proc_stat.h"
#include "harness/libvirt/domain_xml.h"
#include "harness/libvirt/internal/virt_ptr.h"

namespace patchlab::harness {

namespace {

using libvirt_internal::LastVirError;
using libvirt_internal::TakeString;

std::string FirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// The start time of /proc/PID/stat; 0 when the process does not exist.
unsigned long long StartTicks(long pid) {
  auto stat = ReadProcStat(static_cast<pid_t>(pid));
  return stat ? stat->start_ticks : 0;
}

// The value of attribute `name` in the first element of `xml` that has it
// (either quote style, as libvirt writes double and we write single quotes).
std::optional<std::string> Attribute(const std::string& xml, size_t from, const std::string& name) {
  for (char quote : {'"', '\''}) {
    std::string key = " " + name + "=" + quote;
    size_t pos = xml.find(key, from);
    if (pos == std::string::npos) continue;
    size_t start = pos + key.size();
    size_t end = xml.find(quote, start);
    if (end == std::string::npos) continue;
    return xml.substr(start, end - start);
  }
  return std::nullopt;
}

}  // namespace

DomainOwner DomainOwner::Self() {
  static const DomainOwner self = [] {
    DomainOwner o;
    char name[HOST_NAME_MAX + 1] = {};
    if (::gethostname(name, sizeof name - 1) == 0) o.host = name;
    o.boot = FirstLine("/proc/sys/kernel/random/boot_id");
    char ns[128] = {};
    ssize_t n = ::readlink("/proc/self/ns/pid", ns, sizeof ns - 1);
    if (n > 0) o.pidns.assign(ns, static_cast<size_t>(n));
    o.pid = ::getpid();
    o.start = StartTicks(o.pid);
    return o;
  }();
  return self;
}

std::string DomainOwner::MetadataXml() const {
  return fmt::format(
      "<metadata><patchlab:owner xmlns:patchlab='{}' host='{}' boot='{}' pidns='{}' pid='{}' "
      "start='{}'/>"
      "</metadata>",
      kOwnerMetadataUri, XmlEscape(host), XmlEscape(boot), XmlEscape(pidns), pid, start);
}

std::optional<DomainOwner> ParseOwner(const std::string& xml) {
  // In a domain document the element is found by its namespace; alone (as
  // virDomainGetMetadata returns it) it is "<owner .../>" without one.
  size_t uri = xml.find(kOwnerMetadataUri);
  size_t begin = uri != std::string::npos ? xml.rfind('<', uri) : xml.find("<owner ");
  if (begin == std::string::npos) return std::nullopt;
  size_t end = xml.find('>', uri != std::string::npos ? uri : begin);
  if (end == std::string::npos) return std::nullopt;
  std::string element = xml.substr(begin, end - begin);
  DomainOwner o;
  auto host = Attribute(element, 0, "host");
  auto boot = Attribute(element, 0, "boot");
  auto pidns = Attribute(element, 0, "pidns");
  auto pid = Attribute(element, 0, "pid");
  auto start = Attribute(element, 0, "start");
  if (!host || !boot || !pidns || !pid || !start) return std::nullopt;
  o.host = *host;
  o.boot = *boot;
  o.pidns = *pidns;
  o.pid = std::strtol(pid->c_str(), nullptr, 10);
  o.start = std::strtoull(start->c_str(), nullptr, 10);
  if (o.pid <= 0) return std::nullopt;
  return o;
}

std::string WithOwner(const std::string& xml, const DomainOwner& owner) {
  std::string metadata = owner.MetadataXml();
  size_t begin = xml.find("<metadata>");
  if (begin != std::string::npos) {
    size_t end = xml.find("</metadata>", begin);
    if (end != std::string::npos) {
      return xml.substr(0, begin) + metadata + xml.substr(end + std::string("</metadata>").size());
    }
  }
  size_t name_end = xml.find("</name>");
  if (name_end == std::string::npos) return xml;
  name_end += std::string("</name>").size();
  return xml.substr(0, name_end) + "\n  " + metadata + xml.substr(name_end);
}

OwnerState CheckOwner(const DomainOwner& owner, const DomainOwner& self) {
  // Another machine's lab (or another PID namespace here): its processes are
  // not ours to see.
  if (owner.host != self.host || owner.pidns != self.pidns) return OwnerState::kUnknown;
  if (owner.boot != self.boot) return OwnerState::kDead;  // this machine rebooted since
  unsigned long long start = StartTicks(owner.pid);
  return start != 0 && start == owner.start ? OwnerState::kAlive : OwnerState::kDead;
}

Result<std::vector<std::string>> DestroyDomainsOfDeadOwners(LibvirtHost& host) {
  virDomainPtr* domains = nullptr;
  int n = virConnectListAllDomains(host.conn(), &domains, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
  if (n < 0) {
    return Fail(ErrorCode::kInfra, "libvirt {}: listing domains to find leftovers of dead labs: {}",
                host.uri(), LastVirError());
  }
  std::vector<libvirt_internal::DomainPtr> owned;
  owned.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) owned.emplace_back(domains[i]);
  free(domains);  // NOLINT: libvirt's allocator is malloc
  DomainOwner self = DomainOwner::Self();
  std::vector<std::string> destroyed;
  for (auto& dom : owned) {
    const char* name_c = virDomainGetName(dom.get());
    std::string name = name_c != nullptr ? name_c : "?";
    std::string element = TakeString(
        virDomainGetMetadata(dom.get(), VIR_DOMAIN_METADATA_ELEMENT, kOwnerMetadataUri, 0));
    if (element.empty()) continue;  // not the lab's (or made before owners were recorded)
    auto owner = ParseOwner(element);
    if (!owner || CheckOwner(*owner, self) != OwnerState::kDead) continue;
    if (virDomainDestroy(dom.get()) < 0) {
      Log("libvirt")->warn(
          "libvirt {} domain {}: left by dead lab process {} on {}, but cannot be destroyed: {}",
          host.uri(), name, owner->pid, owner->host, LastVirError());
      continue;
    }
    Log("libvirt")->warn(
        "libvirt {} domain {}: destroyed, left running by lab process {} on {}, which is gone",
        host.uri(), name, owner->pid, owner->host);
    destroyed.push_back(name);
  }
  return destroyed;
}

}  // namespace patchlab::harness
