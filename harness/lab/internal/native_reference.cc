#include "harness/lab/internal/native_reference.h"

#include <chrono>
#include <thread>

#include "base/log.h"
#include "harness/lab/internal/runner_cell.h"
#include "harness/lab/internal/runner_figures.h"

namespace patchlab::harness::internal {

NativeReferences::NativeReferences(GuestFactory* host, std::filesystem::path out,
                                   std::filesystem::path public_key, const metrics::Policy* policy,
                                   const std::atomic<bool>* cancel)
    : host_(host),
      out_(std::move(out)),
      public_key_(std::move(public_key)),
      policy_(policy),
      cancel_(cancel) {}

NativeRun NativeReferences::Get(const PlannedCell& cell) {
  Key key{cell.key.scenario, cell.key.patch_id, cell.key.workload};
  std::promise<NativeRun> promise;
  std::shared_future<NativeRun> answer;
  bool mine = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = measured_.find(key);
    if (it == measured_.end()) {
      answer = promise.get_future().share();
      measured_.emplace(key, answer);
      mine = true;
    } else {
      answer = it->second;
    }
  }
  // Measured outside the lock: other keys go on meanwhile.
  if (mine) promise.set_value(Measure(cell));
  return answer.get();
}

NativeRun NativeReferences::Measure(const PlannedCell& pc) {
  NativeRun run;
  std::filesystem::path artefacts =
      out_ / Slug(pc.key.scenario) / Slug(pc.key.patch_id) / Slug("native-" + pc.key.workload);
  GuestSpec spec{"host", "host", pc.scenario->vcpus, pc.scenario->memory_mib, artefacts};
  auto guest = host_->Start(spec);
  if (!guest) {
    run.note = "starting on the host: " + guest.error().ToString();
    return run;
  }
  CellRules rules = RulesFor(*pc.scenario, *policy_);
  // A fixed seed of its own: the native order does not depend on which VM
  // cell happened to ask first.
  uint64_t seed = std::hash<std::string>{}("native " + pc.key.scenario + "/" + pc.key.patch_id +
                                           "/" + pc.key.workload);
  CellPlan plan{pc.scenario, pc.built, pc.patch, pc.workload, public_key_, rules, seed, "host"};
  Log("harness")->info("{}/{}: measuring the native reference on this host", pc.key.scenario,
                       pc.key.patch_id);
  auto start = std::chrono::steady_clock::now();
  CellObservations obs = RunCellSequence(**guest, plan, cancel_);
  (void)(*guest)->Shutdown();
  Log("harness")->info(
      "{}/{}: native reference measured in {:.1f} s", pc.key.scenario, pc.key.patch_id,
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  metrics::CellResult native;
  native.key = pc.key;
  ComputeFigures(obs, rules, native);
  if (!obs.infra_error) {
    unsigned cores = std::thread::hardware_concurrency();
    for (const Crash& c : obs.crashes) {
      run.crashes.push_back(
          {c.kind, fmt::format("native run on this host ({} cores): {}", cores, c.detail)});
    }
  }
  if (native.verdict == metrics::Verdict::kInfraError || native.TotalCrashes() > 0 ||
      !obs.problems.empty() || !native.cpu_overhead_pct) {
    std::string why = native.reasons.empty() ? "no CPU figure" : native.reasons.front();
    run.note =
        fmt::format("the native run gave no figure ({}; artefacts in {})", why, artefacts.string());
    return run;
  }
  run.figure = native.cpu_overhead_pct;
  return run;
}

bool WantsNativeReference(const PlannedCell& cell, const CellObservations& obs) {
  return cell.scenario->target.Built() && !obs.infra_error && obs.crashes.empty() &&
         obs.clock != metrics::CpuClock::kNativeCpuTime &&
         !PairedWindowCosts(obs.windows).unpatched.empty();
}

}  // namespace patchlab::harness::internal
