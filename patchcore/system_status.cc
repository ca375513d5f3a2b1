// StatusSystem: which processes run which patch stack, and which processes
// map a system-wide patch's module without running it.
#include <algorithm>
#include <map>
#include <set>

#include "patchcore/internal/inherited_state.h"
#include "patchcore/internal/system_common.h"
#include "patchcore/system_patcher.h"

namespace patchlab::patchcore {
namespace {

std::vector<ProcessInfo> Recorded(const std::vector<ProcessInfo>& processes) {
  std::set<std::pair<pid_t, uint64_t>> recorded;
  for (const RecordedProcess& r : LiveRecordedProcesses()) recorded.insert({r.pid, r.start_time});
  std::vector<ProcessInfo> out;
  for (const ProcessInfo& p : processes) {
    if (recorded.contains({p.pid, p.start_time})) out.push_back(p);
  }
  return out;
}

// The recorded stack of `p`; nullopt when it has none (or vanished).
std::optional<ProcessStack> RecordedStack(const ProcessInfo& p) {
  auto patcher = Patcher::Open(p.pid);
  if (!patcher || patcher->start_time() != p.start_time) return std::nullopt;
  auto state = patcher->State();
  const bool interrupted = patcher->HasPendingJournal();
  if (!state || (state->patches.empty() && !interrupted)) return std::nullopt;
  ProcessStack stack{.pid = p.pid, .comm = p.comm, .interrupted = interrupted};
  for (const PatchState& patch : state->patches) stack.patches.push_back(patch.id);
  return stack;
}

// The stack `p` inherited by fork without a record of its own, read only
// (apply and revert adopt it); nullopt when it shows none.
std::optional<ProcessStack> InheritedStack(const ProcessInfo& p) {
  auto maps = ProcessMaps::Read(p.pid);
  auto memory =
      maps ? ProcessMemory::Open(p.pid) : Result<ProcessMemory>(std::unexpected(maps.error()));
  if (!maps || !memory) return std::nullopt;
  auto found = internal::FindInheritedState(p.pid, p.start_time, *maps, *memory);
  ProcessStack stack{.pid = p.pid, .comm = p.comm};
  if (!found) {
    stack.note = found.error().ToString();
    return stack;
  }
  if (!*found) return std::nullopt;
  stack.inherited_from = (*found)->origin;
  for (const PatchState& patch : (*found)->state.patches) stack.patches.push_back(patch.id);
  return stack;
}

void AddUninspected(std::vector<UninspectedProcess> more, std::vector<UninspectedProcess>& to) {
  for (UninspectedProcess& u : more) {
    auto same = [&](const UninspectedProcess& v) { return v.pid == u.pid; };
    if (std::none_of(to.begin(), to.end(), same)) to.push_back(std::move(u));
  }
}

}  // namespace

Result<SystemStatus> StatusSystem(const ScanFilter& filter) {
  SystemStatus status;
  const auto processes = ListProcesses(filter);
  std::map<pid_t, size_t> stack_of;  // pid -> index in status.processes
  for (const ProcessInfo& p : Recorded(processes)) {
    if (auto stack = RecordedStack(p)) {
      stack_of[p.pid] = status.processes.size();
      status.processes.push_back(std::move(*stack));
    }
  }
  auto records = LoadSystemRecords();
  if (!records) return std::unexpected(std::move(records.error()));
  ElfCache files;
  for (const SystemRecord& record : *records) {
    SystemPatchStatus patch{.record = record};
    auto found = internal::FindModuleUsers(record.build_id, processes, files);
    AddUninspected(std::move(found.uninspected), status.uninspected);
    for (const ProcessInfo& p : found.users) {
      if (!stack_of.contains(p.pid)) {
        if (auto inherited = InheritedStack(p)) {
          stack_of[p.pid] = status.processes.size();
          status.processes.push_back(std::move(*inherited));
        }
      }
      auto at = stack_of.find(p.pid);
      const auto& ids =
          at == stack_of.end() ? std::vector<std::string>() : status.processes[at->second].patches;
      if (std::find(ids.begin(), ids.end(), record.id) != ids.end()) {
        ++patch.running;
      } else {
        patch.unpatched.push_back(p);
      }
    }
    status.patches.push_back(std::move(patch));
  }
  std::sort(status.processes.begin(), status.processes.end(),
            [](const ProcessStack& a, const ProcessStack& b) { return a.pid < b.pid; });
  return status;
}

}  // namespace patchlab::patchcore
