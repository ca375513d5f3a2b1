#include "base/process_table.h"

#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace patchlab {
namespace {

std::string ReadLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// The executable of `pid`, without the " (deleted)" the kernel appends when
// the file was replaced (a package upgrade): it is still the same program.
std::string ExeOf(pid_t pid) {
  char buf[4096];
  std::string link = "/proc/" + std::to_string(pid) + "/exe";
  ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
  if (n <= 0) return {};
  std::string exe(buf, static_cast<size_t>(n));
  constexpr std::string_view kDeleted = " (deleted)";
  if (exe.size() > kDeleted.size() && exe.ends_with(kDeleted)) exe.resize(exe.size() - 10);
  return exe;
}

// State, ppid and start time from /proc/PID/stat, counted from the last ')'
// (the command name may hold spaces and parentheses). False when gone.
bool ReadStat(pid_t pid, char* state, pid_t* ppid, uint64_t* start_ticks) {
  std::string stat = ReadLine("/proc/" + std::to_string(pid) + "/stat");
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream fields(stat.substr(close + 1));
  std::vector<std::string> tok;
  for (std::string t; fields >> t;) tok.push_back(t);
  // tok[0] is field 3 (state), tok[1] field 4 (ppid), tok[19] field 22 (starttime).
  if (tok.size() < 20) return false;
  *state = tok[0].empty() ? '?' : tok[0][0];
  *ppid = static_cast<pid_t>(std::strtol(tok[1].c_str(), nullptr, 10));
  *start_ticks = std::strtoull(tok[19].c_str(), nullptr, 10);
  return true;
}

// The process's CPU clock: the kernel allows reading any process's.
bool CpuNs(pid_t pid, uint64_t* ns) {
  clockid_t clock;
  if (::clock_getcpuclockid(pid, &clock) != 0) return false;
  timespec ts{};
  if (::clock_gettime(clock, &ts) != 0) return false;
  *ns = static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
  return true;
}

}  // namespace

std::vector<ProcessCpu> ProcessesRunning(const std::string& exe) {
  std::vector<ProcessCpu> out;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return out;
  while (dirent* e = ::readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    if (ExeOf(static_cast<pid_t>(pid)) != exe) continue;
    ProcessCpu p;
    p.pid = static_cast<pid_t>(pid);
    char state = '?';
    if (!ReadStat(p.pid, &state, &p.ppid, &p.start_ticks)) continue;
    if (state == 'Z' || state == 'X' || state == 'x') continue;
    if (!CpuNs(p.pid, &p.cpu_ns)) continue;
    p.comm = ReadLine("/proc/" + std::to_string(pid) + "/comm");
    out.push_back(std::move(p));
  }
  ::closedir(proc);
  std::sort(out.begin(), out.end(),
            [](const ProcessCpu& a, const ProcessCpu& b) { return a.pid < b.pid; });
  return out;
}

}  // namespace patchlab
