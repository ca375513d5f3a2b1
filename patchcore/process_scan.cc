#include "patchcore/process_scan.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <set>

#include "base/file_util.h"
#include "base/proc_stat.h"
#include "patchcore/attach_blocker.h"
#include "patchcore/process_maps.h"

namespace patchlab::patchcore {
namespace {

std::vector<pid_t> AllPids() {
  std::vector<pid_t> pids;
  DIR* d = ::opendir("/proc");
  if (!d) return pids;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    pids.push_back(static_cast<pid_t>(std::atoi(e->d_name)));
  }
  ::closedir(d);
  std::sort(pids.begin(), pids.end());
  return pids;
}

// Whether `pid` descends from `ancestor` (is a child, grandchild, ...).
bool Descends(pid_t pid, pid_t ancestor, const std::map<pid_t, pid_t>& parent_of) {
  for (int depth = 0; pid > 0 && depth < 4096; ++depth) {
    auto it = parent_of.find(pid);
    if (it == parent_of.end()) return false;
    pid = it->second;
    if (pid == ancestor) return true;
  }
  return false;
}

}  // namespace

std::vector<ProcessInfo> ListProcesses(const ScanFilter& filter) {
  const pid_t self = ::getpid();
  std::vector<ProcessInfo> all;
  std::map<pid_t, pid_t> parent_of;
  for (pid_t pid : AllPids()) {
    if (pid == self) continue;
    auto stat = ReadProcStat(pid);
    if (!stat) continue;  // gone meanwhile
    parent_of[pid] = stat->ppid;
    all.push_back({pid, stat->start_ticks, stat->ppid, stat->comm});
  }
  if (filter.descendants_of) {
    std::erase_if(all, [&](const ProcessInfo& p) {
      return !Descends(p.pid, *filter.descendants_of, parent_of);
    });
  }
  return all;
}

Result<std::optional<std::string>> ModuleScanner::MappedPath(const ProcessInfo& p) {
  // A mapping can go between reading the maps and opening its file (a
  // library unloaded, a staged patch object unmapped by a rollback): that is
  // not the process ending, so the maps are read again, a few times.
  constexpr int kPasses = 3;
  for (int pass = 1;; ++pass) {
    auto found = ScanOnce(p);
    if (found || found.error().code() != ErrorCode::kTargetGone) return found;
    if (HasEnded(p.pid)) return found;  // gone, or a zombie: no re-read helps
    if (pass == kPasses) {
      return Fail(ErrorCode::kIo, "pid {}: its mappings changed in each of {} reads ({})", p.pid,
                  kPasses, found.error().ToString());
    }
  }
}

Result<std::optional<std::string>> ModuleScanner::ScanOnce(const ProcessInfo& p) {
  auto text = ReadFile(fmt::format("/proc/{}/maps", p.pid));
  if (!text) {
    const int err = text.error().sys_errno();
    if (err == EACCES || err == EPERM) {
      return Fail(ErrorCode::kRefused, "cannot read the mappings of pid {}: {}", p.pid,
                  AttachBlockerAfter(p.pid, err));
    }
    if (err == ENOENT || err == ESRCH) return Fail(ErrorCode::kTargetGone, "pid {} is gone", p.pid);
    return std::unexpected(std::move(text.error()));
  }
  auto maps = ProcessMaps::Parse(*text, fmt::format("/proc/{}/maps", p.pid));
  if (!maps) return std::unexpected(std::move(maps.error()));
  if (maps->entries().empty() && HasEnded(p.pid)) {
    // Kernel threads have no mappings either, but they run on.
    return Fail(ErrorCode::kTargetGone, "pid {} has exited (its parent has not reaped it yet)",
                p.pid);
  }
  std::optional<Error> unreadable;
  for (const MapEntry& e : maps->entries()) {
    if (!e.exec || !e.is_file()) continue;
    auto [it, fresh] = known_.try_emplace({e.dev, e.inode}, false);
    if (fresh) {
      auto id = files_.BuildId(p.pid, e);
      if (!id) {
        known_.erase(it);  // ask again in the next process that maps it
        const ErrorCode code = id.error().code();
        // The file went away under us (ENOENT between stat and open included).
        if (code == ErrorCode::kTargetGone || code == ErrorCode::kNotFound) {
          return Fail(ErrorCode::kTargetGone, "{}", id.error().ToString());
        }
        // Not an ELF file (kParse) cannot be the module; anything else hides
        // whether it is.
        if (code != ErrorCode::kParse && !unreadable) unreadable = std::move(id.error());
        continue;
      }
      it->second = *id == build_id_;
    }
    if (it->second) return std::optional<std::string>(e.path);
  }
  if (unreadable) {
    return Fail(ErrorCode::kIo, "cannot tell whether pid {} maps the module: {}", p.pid,
                unreadable->ToString());
  }
  return std::optional<std::string>();
}

}  // namespace patchlab::patchcore
