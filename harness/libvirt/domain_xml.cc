#include "harness/libvirt/domain_xml.h"

#include <fmt/format.h>

#include <cstdlib>

#include "base/log.h"

namespace patchlab::harness {

std::string XmlEscape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '\'':
        out += "&apos;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string BuildDomainXml(const DomainXmlSpec& s) {
  if (s.name.empty() || s.kernel.empty() || s.initrd.empty() || s.vcpus <= 0 || s.memory_mib <= 0) {
    Log("libvirt")->critical("BuildDomainXml: incomplete spec for '{}'", s.name);
    std::abort();
  }
  std::string cpu;
  if (s.cpu_model == "host") {
    cpu = "  <cpu mode='host-passthrough'/>\n";
  } else {
    // check='none': under TCG the model is emulated whatever the host CPU is.
    cpu = fmt::format(
        "  <cpu mode='custom' match='exact' check='none'><model "
        "fallback='forbid'>{}</model></cpu>\n",
        XmlEscape(s.cpu_model));
  }
  std::string emulator =
      s.emulator.empty() ? "" : fmt::format("    <emulator>{}</emulator>\n", XmlEscape(s.emulator));
  return fmt::format(
      "<domain type='{type}'>\n"
      "  <name>{name}</name>\n"
      "{metadata}"
      "  <memory unit='MiB'>{mem}</memory>\n"
      "  <vcpu>{vcpus}</vcpu>\n"
      "  <os>\n"
      "    <type arch='x86_64' machine='{machine}'>hvm</type>\n"
      "    <kernel>{kernel}</kernel>\n"
      "    <initrd>{initrd}</initrd>\n"
      "    <cmdline>{cmdline}</cmdline>\n"
      "  </os>\n"
      "  <features><acpi/></features>\n"
      "{cpu}"
      "  <on_poweroff>destroy</on_poweroff>\n"
      "  <on_reboot>destroy</on_reboot>\n"
      "  <on_crash>preserve</on_crash>\n"
      "  <devices>\n"
      "{emulator}"
      "{console}"
      "    <serial type='pty'><target port='1'/></serial>\n"
      "    <panic model='isa'/>\n"
      "    <memballoon model='none'/>\n"
      "  </devices>\n"
      "  <seclabel type='none'/>\n"
      "</domain>\n",
      fmt::arg("type", XmlEscape(s.domain_type)), fmt::arg("name", XmlEscape(s.name)),
      fmt::arg("mem", s.memory_mib), fmt::arg("vcpus", s.vcpus),
      fmt::arg("machine", XmlEscape(s.machine)), fmt::arg("kernel", XmlEscape(s.kernel)),
      fmt::arg("initrd", XmlEscape(s.initrd)), fmt::arg("cmdline", XmlEscape(s.cmdline)),
      fmt::arg("cpu", cpu), fmt::arg("emulator", emulator),
      fmt::arg("console",
               s.console_log.empty()
                   ? std::string("    <serial type='pty'><target port='0'/></serial>\n")
                   : fmt::format("    <serial type='file'><source path='{}' append='on'/><target "
                                 "port='0'/></serial>\n",
                                 XmlEscape(s.console_log))),
      fmt::arg("metadata", s.metadata.empty() ? "" : "  " + s.metadata + "\n"));
}

}  // namespace patchlab::harness
