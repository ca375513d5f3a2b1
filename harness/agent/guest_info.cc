#include "harness/agent/guest_info.h"

#include <fcntl.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "harness/protocol/agent_protocol.h"

namespace patchlab::agent {
namespace {

std::string ReadSmallFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
  size_t start = s.find_first_not_of(" \t");
  return start == std::string::npos ? std::string() : s.substr(start);
}

// "Pss:     123 kB" -> 123, for a key in smaps_rollup / status files.
uint64_t KibField(const std::string& text, const std::string& key) {
  size_t at = 0;
  while ((at = text.find(key, at)) != std::string::npos) {
    if (at == 0 || text[at - 1] == '\n')
      return std::strtoull(text.c_str() + at + key.size(), nullptr, 10);
    at += key.size();
  }
  return 0;
}

}  // namespace

double UptimeSeconds() { return std::strtod(ReadSmallFile("/proc/uptime").c_str(), nullptr); }

nlohmann::json ReadHello() {
  nlohmann::json out;
  utsname uts{};
  ::uname(&uts);
  out["agent_version"] = std::string(harness::agent_protocol::kAgentVersion);
  out["kernel"] = uts.release;
  out["machine"] = uts.machine;
  std::string cpuinfo = ReadSmallFile("/proc/cpuinfo");
  std::string model;
  if (size_t at = cpuinfo.find("model name"); at != std::string::npos) {
    size_t colon = cpuinfo.find(':', at);
    size_t eol = cpuinfo.find('\n', at);
    if (colon != std::string::npos && colon < eol)
      model = Trim(cpuinfo.substr(colon + 1, eol - colon - 1));
  }
  out["cpu_model"] = model;
  out["ncpus"] = static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN));
  out["uptime_s"] = UptimeSeconds();
  out["boot_id"] = Trim(ReadSmallFile("/proc/sys/kernel/random/boot_id"));
  return out;
}

bool ReadSample(pid_t pid, nlohmann::json* out, std::string* error) {
  std::string stat = ReadSmallFile("/proc/" + std::to_string(pid) + "/stat");
  size_t paren = stat.rfind(')');
  if (stat.empty() || paren == std::string::npos) {
    *error = "no process " + std::to_string(pid);
    return false;
  }
  // Fields after "(comm)": state is field 3, utime 14, stime 15 (proc(5)).
  std::istringstream fields(stat.substr(paren + 1));
  std::vector<std::string> tok;
  for (std::string t; fields >> t;) tok.push_back(t);
  if (tok.size() < 13) {
    *error = "short /proc/" + std::to_string(pid) + "/stat";
    return false;
  }
  uint64_t utime = std::strtoull(tok[11].c_str(), nullptr, 10);
  uint64_t stime = std::strtoull(tok[12].c_str(), nullptr, 10);
  long tck = ::sysconf(_SC_CLK_TCK);
  std::string rollup = ReadSmallFile("/proc/" + std::to_string(pid) + "/smaps_rollup");
  nlohmann::json& o = *out;
  o["pid"] = pid;
  o["utime_ticks"] = utime;
  o["stime_ticks"] = stime;
  o["clk_tck"] = tck;
  o["utime_s"] = static_cast<double>(utime) / static_cast<double>(tck);
  o["stime_s"] = static_cast<double>(stime) / static_cast<double>(tck);
  o["rss_kib"] = KibField(rollup, "Rss:");
  o["pss_kib"] = KibField(rollup, "Pss:");
  o["private_dirty_kib"] = KibField(rollup, "Private_Dirty:");
  double load[3] = {0, 0, 0};
  std::istringstream loadavg(ReadSmallFile("/proc/loadavg"));
  loadavg >> load[0] >> load[1] >> load[2];
  o["load1"] = load[0];
  o["load5"] = load[1];
  o["load15"] = load[2];
  o["uptime_s"] = UptimeSeconds();
  return true;
}

bool ReadKernelLog(const std::string& kmsg_path, uint64_t since, nlohmann::json* lines,
                   uint64_t* mark, std::string* error) {
  // A fresh open starts at the oldest record still buffered; reading until
  // EAGAIN gives everything up to now. One read() returns one record.
  int fd = ::open(kmsg_path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    *error = "open " + kmsg_path + ": " + std::strerror(errno);
    return false;
  }
  *mark = since;
  std::vector<char> buf(16384);
  while (true) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EPIPE) continue;  // records overwritten while reading: skip on
      if (errno == EINTR) continue;
      break;  // EAGAIN: no more records (or a file that ended)
    }
    if (n == 0) break;
    std::string rec(buf.data(), static_cast<size_t>(n));
    // "PRIVAL,SEQ,USEC,FLAGS[,...];TEXT\n" followed by " KEY=VALUE" continuation lines.
    size_t semi = rec.find(';');
    if (semi == std::string::npos) continue;
    unsigned long long prival = 0, seq = 0, usec = 0;
    if (std::sscanf(rec.c_str(), "%llu,%llu,%llu", &prival, &seq, &usec) != 3) continue;
    if (seq > *mark) *mark = seq;
    if (seq <= since || lines == nullptr) continue;
    std::string text = rec.substr(semi + 1);
    if (size_t nl = text.find('\n'); nl != std::string::npos) text.resize(nl);
    lines->push_back({{"seq", seq}, {"level", prival & 7}, {"usec", usec}, {"text", text}});
  }
  ::close(fd);
  return true;
}

}  // namespace patchlab::agent
