// DomainOwner: which lab process a libvirt domain belongs to, written into the
// domain's <metadata>, so that domains a killed lab left running are found and
// destroyed the next time a lab connects to that host.
//
// libvirt destroys a domain created with VIR_DOMAIN_START_AUTODESTROY when its
// creator's connection goes, but it has no such flag for a restored domain, and
// the lab restores most of its VMs. So every domain the lab starts carries
//
//   <metadata><patchlab:owner xmlns:patchlab="https://patchlab.dev/xmlns/owner/1"
//       host="HOSTNAME" boot="BOOT_ID" pidns="pid:[N]" pid="PID" start="TICKS"/></metadata>
//
// naming the lab machine (host name, boot id, PID namespace) and the process
// (pid and its start time, so a reused pid is not taken for the owner). An
// owner is dead when it was on this machine (same host name and PID
// namespace) and either the machine rebooted since (another boot id) or no
// process with that pid and start time runs. Domains of other machines' labs
// are never touched: their liveness cannot be seen from here.
//
// Thread-safety: functions are thread-safe.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "harness/libvirt/libvirt_host.h"

namespace patchlab::harness {

inline constexpr char kOwnerMetadataUri[] = "https://patchlab.dev/xmlns/owner/1";

struct DomainOwner {
  std::string host;   // gethostname()
  std::string boot;   // /proc/sys/kernel/random/boot_id
  std::string pidns;  // readlink /proc/self/ns/pid
  long pid = 0;
  unsigned long long start =
      0;  // process start time, clock ticks after boot (/proc/PID/stat field 22)

  // This process.
  static DomainOwner Self();
  // The <metadata> element for a domain owned by this owner.
  std::string MetadataXml() const;
};

// Reads the owner back from a domain's XML, or from the element alone as
// virDomainGetMetadata returns it ("<owner host=... />", no namespace).
// nullopt when there is none.
std::optional<DomainOwner> ParseOwner(const std::string& xml);

// `xml` (a domain or saved-state description) with its <metadata> replaced by
// `owner`'s (added after <name> when it has none).
std::string WithOwner(const std::string& xml, const DomainOwner& owner);

enum class OwnerState { kAlive, kDead, kUnknown };
// Whether `owner` still runs, as seen from `self`'s machine.
OwnerState CheckOwner(const DomainOwner& owner, const DomainOwner& self);

// Destroys every running domain on `host` that carries an owner in state kDead
// and returns their names. Domains without an owner, of live owners or of
// other machines' labs are left alone. kInfra naming the URI when the domains
// cannot be listed; a domain that cannot be destroyed is logged and skipped.
Result<std::vector<std::string>> DestroyDomainsOfDeadOwners(LibvirtHost& host);

}  // namespace patchlab::harness
