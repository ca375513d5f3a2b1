#include "patchcore/internal/system_common.h"

#include "base/file_util.h"
#include "base/proc_stat.h"
#include "patchcore/attach_blocker.h"
#include "patchcore/internal/inherited_state.h"
#include "patchcore/patch_state.h"

namespace patchlab::patchcore::internal {

ModuleUsers FindModuleUsers(const std::string& build_id, const std::vector<ProcessInfo>& candidates,
                            ElfCache& files) {
  ModuleUsers out;
  ModuleScanner scanner(build_id, files);
  for (const ProcessInfo& p : candidates) {
    ++out.scanned;
    auto path = scanner.MappedPath(p);
    if (!path) {
      if (path.error().code() != ErrorCode::kTargetGone) {
        out.uninspected.push_back({p.pid, p.comm, path.error().ToString()});
      } else if (auto stat = ReadProcStat(p.pid);
                 stat && stat->start_ticks == p.start_time && HasEndedState(stat->state)) {
        out.ended.push_back({p.pid, p.comm, path.error().ToString()});
      }
      continue;
    }
    if (*path) out.users.push_back(p);
  }
  return out;
}

Result<Patcher> OpenFound(const ProcessInfo& p, ProcessOutcome& out, bool needs_ptrace) {
  out.pid = p.pid;
  out.comm = p.comm;
  auto blocker = KnownAttachBlocker(p.pid);
  if (blocker && (needs_ptrace || blocker->ended)) {
    out.result = blocker->ended ? Outcome::kVanished : Outcome::kRefused;
    out.reason = blocker->reason;
    return Fail(ErrorCode::kRefused, "{}", blocker->reason);
  }
  auto patcher = Patcher::Open(p.pid);
  if (!patcher) {
    SetFailure(patcher.error(), out);
    return std::unexpected(std::move(patcher.error()));
  }
  if (patcher->start_time() != p.start_time) {
    out.result = Outcome::kVanished;
    out.reason = fmt::format("pid {} exited and was reused by another process", p.pid);
    return Fail(ErrorCode::kTargetGone, "{}", out.reason);
  }
  return patcher;
}

bool MayRunPatch(const ProcessInfo& p, const std::string& id) {
  const auto file = StateRoot() / fmt::format("{}-{}", p.pid, p.start_time) / "state.json";
  if (auto text = ReadFile(file)) {
    auto state = ProcessState::FromJson(*text, file.string());
    if (state && state->FindPatch(id)) return true;
    if (state && !state->patches.empty()) return false;  // its own record, without `id`
  }
  auto maps = ProcessMaps::Read(p.pid);
  if (!maps) return false;
  auto memory = ProcessMemory::Open(p.pid);
  if (!memory) return false;
  auto inherited = FindInheritedState(p.pid, p.start_time, *maps, *memory);
  return inherited && *inherited && (*inherited)->state.FindPatch(id);
}

void SetFailure(const Error& e, ProcessOutcome& out) {
  out.reason = e.ToString();
  // A process killed while being worked on shows up as whatever step it
  // broke (a thread that never stopped: kTimeout), not always as gone.
  if (e.code() != ErrorCode::kTargetGone && HasEnded(out.pid)) {
    out.result = Outcome::kVanished;
    out.reason = fmt::format("pid {} exited meanwhile ({})", out.pid, e.ToString());
    return;
  }
  switch (e.code()) {
    case ErrorCode::kTargetGone:
      out.result = Outcome::kVanished;
      return;
    case ErrorCode::kRolledBack:
    case ErrorCode::kIo:
    case ErrorCode::kInternal:
    case ErrorCode::kInfra:
      out.result = Outcome::kRolledBack;
      return;
    default:
      out.result = Outcome::kRefused;
      if (e.sys_errno() == EPERM || e.sys_errno() == EACCES) {
        out.reason = AttachBlockerAfter(out.pid, e.sys_errno()) + " (" + e.ToString() + ")";
      }
  }
}

}  // namespace patchlab::patchcore::internal
