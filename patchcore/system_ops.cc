// RevertSystem, VerifySystem, RecoverSystem and StatusSystem: the recorded
// processes (and those that inherited a patch by fork), each on its own.
#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "base/log.h"
#include "patchcore/internal/inherited_state.h"
#include "patchcore/internal/run_concurrently.h"
#include "patchcore/internal/system_common.h"
#include "patchcore/system_patcher.h"

namespace patchlab::patchcore {
namespace {

using Clock = std::chrono::steady_clock;

std::chrono::microseconds Since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t);
}

// The processes of `filter` that have a live state folder.
std::vector<ProcessInfo> RecordedAmong(const std::vector<ProcessInfo>& processes) {
  std::set<std::pair<pid_t, uint64_t>> recorded;
  for (const RecordedProcess& r : LiveRecordedProcesses()) recorded.insert({r.pid, r.start_time});
  std::vector<ProcessInfo> out;
  for (const ProcessInfo& p : processes) {
    if (recorded.contains({p.pid, p.start_time})) out.push_back(p);
  }
  return out;
}

std::optional<SystemRecord> RecordOf(const std::string& id) {
  auto records = LoadSystemRecords();
  if (!records) {
    Log("patchcore")->warn("{}", records.error());
    return std::nullopt;
  }
  for (const SystemRecord& r : *records) {
    if (r.id == id) return r;
  }
  return std::nullopt;
}

// The recorded processes, and for a system-wide patch also those that map
// its module without a record (they may have inherited it by fork).
std::vector<ProcessInfo> RevertCandidates(const std::string& id, const ScanFilter& filter,
                                          SystemReport& report) {
  const auto processes = ListProcesses(filter);
  std::vector<ProcessInfo> out = RecordedAmong(processes);
  if (auto record = RecordOf(id)) {
    report.module = record->module;
    report.build_id = record->build_id;
    ElfCache files;
    auto found = internal::FindModuleUsers(record->build_id, processes, files);
    report.scanned = found.scanned;
    report.uninspected = std::move(found.uninspected);
    for (const ProcessInfo& p : found.users) {
      auto same = [&](const ProcessInfo& q) { return q.pid == p.pid; };
      if (std::none_of(out.begin(), out.end(), same)) out.push_back(p);
    }
  }
  return out;
}

// nullopt when `id` is not live in `p` (it is no target).
std::optional<ProcessOutcome> RevertOne(const ProcessInfo& p, const std::string& id,
                                        std::chrono::milliseconds timeout) {
  if (!internal::MayRunPatch(p, id)) return std::nullopt;
  ProcessOutcome out;
  auto patcher = internal::OpenFound(p, out);
  if (!patcher) return out;
  auto adopted = patcher->AdoptInherited();
  if (!adopted) {
    internal::SetFailure(adopted.error(), out);
    return out;
  }
  auto state = patcher->State();
  if (!state) {
    internal::SetFailure(state.error(), out);
    return out;
  }
  if (!state->FindPatch(id)) return std::nullopt;
  auto r = patcher->Revert(id, timeout);
  if (!r) {
    internal::SetFailure(r.error(), out);
    return out;
  }
  out.result = Outcome::kReverted;
  out.changed = true;
  out.pause = r->pause;
  out.retries = r->retries;
  out.inherited_from = *adopted;
  return out;
}

// Runs `one` on every process of `targets`, keeping the outcomes it returns.
template <typename Fn>
std::vector<ProcessOutcome> ForEach(const std::vector<ProcessInfo>& targets, int jobs, Fn one) {
  std::vector<std::optional<ProcessOutcome>> slots(targets.size());
  internal::RunConcurrently(targets.size(), jobs, [&](size_t i) { slots[i] = one(targets[i]); });
  std::vector<ProcessOutcome> out;
  for (auto& s : slots) {
    if (s) out.push_back(std::move(*s));
  }
  return out;
}

std::optional<ProcessOutcome> VerifyOne(const ProcessInfo& p) {
  ProcessOutcome out;
  auto patcher = internal::OpenFound(p, out, /*needs_ptrace=*/false);
  if (!patcher) return out;
  auto r = patcher->Verify();
  if (!r) {
    internal::SetFailure(r.error(), out);
    return out;
  }
  out.result = r->ok() ? Outcome::kVerified : Outcome::kMismatch;
  out.reason = r->ok() ? fmt::format("{} checks", r->checked)
                       : fmt::format("{}", fmt::join(r->mismatches, "; "));
  return out;
}

std::optional<ProcessOutcome> RecoverOne(const ProcessInfo& p, std::chrono::milliseconds timeout) {
  ProcessOutcome out;
  auto patcher = internal::OpenFound(p, out);
  if (!patcher) return out;
  if (!patcher->HasPendingJournal()) return std::nullopt;
  auto r = patcher->Recover(timeout);
  if (!r) {
    internal::SetFailure(r.error(), out);
    return out;
  }
  out.result = Outcome::kRecovered;
  out.changed = true;
  out.reason = r->action;
  return out;
}

}  // namespace

Result<SystemReport> RevertSystem(const std::string& id, const SystemOptions& options) {
  const auto started = Clock::now();
  SystemReport report{.patch_id = id};
  const auto targets = RevertCandidates(id, options.filter, report);
  report.processes = ForEach(targets, options.jobs, [&](const ProcessInfo& p) {
    return RevertOne(p, id, options.apply.timeout);
  });
  if (report.processes.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "patch {} is live in no process", id);
  }
  const bool still_live = report.Count(Outcome::kRefused) + report.Count(Outcome::kRolledBack) > 0;
  if (!still_live) {
    if (auto st = RemoveSystemRecord(id); !st) Log("patchcore")->warn("{}", st.error());
  }
  report.wall = Since(started);
  return report;
}

Result<SystemReport> VerifySystem(const SystemOptions& options) {
  const auto started = Clock::now();
  SystemReport report;
  const auto targets = RecordedAmong(ListProcesses(options.filter));
  report.scanned = targets.size();
  report.processes = ForEach(targets, options.jobs, VerifyOne);
  report.wall = Since(started);
  return report;
}

Result<SystemReport> RecoverSystem(const SystemOptions& options) {
  const auto started = Clock::now();
  SystemReport report;
  const auto targets = RecordedAmong(ListProcesses(options.filter));
  report.scanned = targets.size();
  report.processes = ForEach(targets, options.jobs, [&](const ProcessInfo& p) {
    return RecoverOne(p, options.apply.timeout);
  });
  report.wall = Since(started);
  return report;
}

}  // namespace patchlab::patchcore
