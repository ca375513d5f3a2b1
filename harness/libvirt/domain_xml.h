// DomainXml: the libvirt domain document of one lab VM.
//
// A transient domain that boots a reference image directly (kernel, initrd,
// command line; no disk, no network interface), machine `pc` with ACPI (without
// it the guest cannot power off and the domain stays running), no security
// label (the lab's files are plain files the daemon must reach as they are),
// the console on the first serial port into a file (or a pty the lab streams
// into its own file, for hosts that do not share the lab's folders), the guest agent's channel
// on the second serial port as a host pty (which the lab opens as a libvirt
// stream, device kAgentDevice: console_bridge.h), and an ISA panic device so a
// guest kernel panic becomes a libvirt "crashed" event. The lab process that
// owns the domain is named in its <metadata> (domain_owner.h).
// The guest keeps its state after a panic (on_crash=preserve) so the console
// can be read; the lab destroys it. Power-off and reboot end the domain.
//
// Thread-safety: pure functions.
#pragma once

#include <string>

namespace patchlab::harness {

// The alias libvirt gives the agent's serial port (the second one), for
// virDomainOpenConsole.
inline constexpr char kAgentDevice[] = "serial1";
inline constexpr char kConsoleDevice[] = "serial0";

struct DomainXmlSpec {
  std::string name;                  // unique on the host; the lab uses "patchlab-..."
  std::string domain_type = "qemu";  // "kvm" (hardware) or "qemu" (TCG)
  std::string machine = "pc";
  std::string cpu_model = "qemu64";  // a QEMU CPU model; "host" means host-passthrough
  int vcpus = 1;
  int memory_mib = 512;
  std::string kernel;  // paths as the daemon's host sees them
  std::string initrd;
  std::string cmdline;
  std::string console_log;  // file the first serial port writes; empty: a pty (streamed by the lab)
  std::string
      metadata;  // a <metadata> element, inserted as is (DomainOwner::MetadataXml); may be empty
  std::string emulator;  // empty: the host's default for the domain type
};

// The domain XML for `spec`. Text fields are XML-escaped. REQUIRES: name, kernel
// and initrd non-empty; vcpus and memory_mib > 0.
std::string BuildDomainXml(const DomainXmlSpec& spec);

// `text` with &, <, >, ' and " escaped for XML attributes and text.
std::string XmlEscape(const std::string& text);

}  // namespace patchlab::harness
