// ApplySystem: the package applied to every process that maps its module,
// then (--follow) to every process that starts mapping it for a while.
#include <algorithm>
#include <set>
#include <thread>
#include <utility>

#include "base/log.h"
#include "patchcore/internal/run_concurrently.h"
#include "patchcore/internal/system_common.h"
#include "patchcore/prepared_package.h"
#include "patchcore/system_patcher.h"

namespace patchlab::patchcore {
namespace {

using Clock = std::chrono::steady_clock;
using internal::ModuleUsers;

ProcessOutcome ApplyOne(const PreparedPackage& prepared, const ProcessInfo& p,
                        const ApplyOptions& options) {
  ProcessOutcome out;
  auto patcher = internal::OpenFound(p, out);
  if (!patcher) return out;
  // A process forked from a patched one may run the patch already.
  auto adopted = patcher->AdoptInherited();
  if (!adopted) {
    internal::SetFailure(adopted.error(), out);
    return out;
  }
  out.inherited_from = *adopted;
  if (auto state = patcher->State(); state && state->FindPatch(prepared.manifest().id)) {
    out.result = Outcome::kApplied;
    out.reason = *adopted ? fmt::format("inherited from pid {} (fork); recorded", *adopted)
                          : "already live; nothing changed";
    return out;
  }
  auto r = patcher->Apply(prepared, options);
  if (!r) {
    internal::SetFailure(r.error(), out);
    return out;
  }
  out.result = Outcome::kApplied;
  out.changed = true;
  out.pause = r->pause;
  out.staging = r->staging;
  out.retries = r->retries;
  out.mapped_bytes = r->mapped_bytes;
  out.island_bytes = r->island_bytes;
  for (const std::string& w : r->warnings) out.reason += (out.reason.empty() ? "" : "; ") + w;
  return out;
}

// Every process of `users`, `jobs` at a time.
std::vector<ProcessOutcome> ApplyAll(const PreparedPackage& prepared,
                                     const std::vector<ProcessInfo>& users,
                                     const SystemOptions& options) {
  std::vector<ProcessOutcome> out(users.size());
  internal::RunConcurrently(users.size(), options.jobs, [&](size_t i) {
    out[i] = ApplyOne(prepared, users[i], options.apply);
  });
  return out;
}

// --all-or-nothing: when any process did not get the patch, the ones this
// run patched get it taken out again.
void RevertTheApplied(const std::string& id, SystemReport& report, const SystemOptions& options) {
  const int missing = report.Count(Outcome::kRefused) + report.Count(Outcome::kRolledBack) +
                      static_cast<int>(report.uninspected.size());
  if (!options.all_or_nothing || missing == 0) return;
  std::vector<ProcessOutcome*> applied;
  for (ProcessOutcome& o : report.processes) {
    if (o.result == Outcome::kApplied && o.changed) applied.push_back(&o);
  }
  internal::RunConcurrently(applied.size(), options.jobs, [&](size_t i) {
    ProcessOutcome& o = *applied[i];
    auto patcher = Patcher::Open(o.pid);
    auto reverted = patcher ? patcher->Revert(id, options.apply.timeout)
                            : Result<RevertReport>(std::unexpected(patcher.error()));
    if (!reverted) {
      o.reason = fmt::format("--all-or-nothing could not revert it: {}", reverted.error());
      return;
    }
    o.result = Outcome::kRolledBack;
    o.reason = fmt::format(
        "applied, then reverted: --all-or-nothing, and {} process(es) did not get the patch",
        missing);
  });
}

// Processes that start (or map the module) while following: the new pids
// at every poll, and every process not matched yet every 20th poll.
class Follower {
 public:
  Follower(const PreparedPackage& prepared, const SystemOptions& options, SystemReport& report)
      : prepared_(prepared), options_(options), report_(report) {}

  void Remember(const std::vector<ProcessInfo>& looked_at, const std::vector<ProcessInfo>& users) {
    for (const ProcessInfo& p : looked_at) seen_.insert({p.pid, p.start_time});
    for (const ProcessInfo& p : users) matched_.insert({p.pid, p.start_time});
  }

  void Run() {
    const auto deadline = Clock::now() + options_.follow;
    for (int poll = 1; Clock::now() < deadline; ++poll) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      std::this_thread::sleep_for(std::min(left, std::chrono::milliseconds(100)));
      Poll(poll % 20 == 0);
    }
  }

 private:
  void Poll(bool everyone) {
    std::vector<ProcessInfo> fresh;
    for (const ProcessInfo& p : ListProcesses(options_.filter)) {
      const std::pair<pid_t, uint64_t> key{p.pid, p.start_time};
      if (matched_.contains(key) || (!everyone && seen_.contains(key))) continue;
      fresh.push_back(p);
    }
    ModuleUsers found =
        internal::FindModuleUsers(prepared_.manifest().target_build_id, fresh, prepared_.files());
    Remember(fresh, found.users);
    for (auto outcome : ApplyAll(prepared_, found.users, options_)) {
      outcome.followed = true;
      if (options_.on_followed) options_.on_followed(outcome);
      report_.processes.push_back(std::move(outcome));
    }
  }

  const PreparedPackage& prepared_;
  const SystemOptions& options_;
  SystemReport& report_;
  std::set<std::pair<pid_t, uint64_t>> seen_, matched_;
};

void SaveRecordIfLive(const PreparedPackage& prepared, const SystemReport& report) {
  if (report.Count(Outcome::kApplied) == 0) return;
  const Manifest& m = prepared.manifest();
  SystemRecord record{m.id, m.seq, m.target_file, m.target_build_id, prepared.package().sha256};
  if (auto st = SaveSystemRecord(record); !st) {
    Log("patchcore")->warn("the system record of {} was not saved: {}", m.id, st.error());
  }
}

}  // namespace

Result<SystemReport> ApplySystem(const PatchPackage& package, const SystemOptions& options) {
  const auto started = Clock::now();
  auto prepared = PreparedPackage::Prepare(package, options.apply);
  if (!prepared) return std::unexpected(std::move(prepared.error()));
  const Manifest& m = prepared->manifest();
  SystemReport report{.patch_id = m.id, .module = m.target_file, .build_id = m.target_build_id};
  const auto candidates = ListProcesses(options.filter);
  ModuleUsers found = internal::FindModuleUsers(m.target_build_id, candidates, prepared->files());
  report.uninspected = std::move(found.uninspected);
  report.scanned = found.scanned;
  if (found.users.empty() && report.uninspected.empty() && options.follow.count() == 0) {
    return Fail(ErrorCode::kRefused, "no process maps {} with build-id {} ({} processes looked at)",
                m.target_file, m.target_build_id, report.scanned);
  }
  report.processes = ApplyAll(*prepared, found.users, options);
  for (const UninspectedProcess& z : found.ended) {
    report.processes.push_back(
        {.pid = z.pid, .comm = z.comm, .result = Outcome::kVanished, .reason = z.reason});
  }
  RevertTheApplied(m.id, report, options);
  if (options.follow.count() > 0) {
    Follower follower(*prepared, options, report);
    follower.Remember(candidates, found.users);
    follower.Run();
    if (report.processes.empty() && report.uninspected.empty()) {
      return Fail(ErrorCode::kRefused, "no process mapped {} with build-id {} within {} ms",
                  m.target_file, m.target_build_id, options.follow.count());
    }
  }
  SaveRecordIfLive(*prepared, report);
  report.wall = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started);
  return report;
}

int SystemReport::Count(Outcome outcome) const {
  return static_cast<int>(
      std::count_if(processes.begin(), processes.end(),
                    [&](const ProcessOutcome& p) { return p.result == outcome; }));
}

std::string_view OutcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kApplied:
      return "applied";
    case Outcome::kReverted:
      return "reverted";
    case Outcome::kVerified:
      return "ok";
    case Outcome::kRecovered:
      return "recovered";
    case Outcome::kRefused:
      return "refused";
    case Outcome::kRolledBack:
      return "rolled-back";
    case Outcome::kVanished:
      return "vanished";
    case Outcome::kMismatch:
      return "mismatch";
  }
  return "?";
}

}  // namespace patchlab::patchcore
