#include "harness/lab/internal/runner_cells.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <thread>

#include "base/file_util.h"
#include "base/log.h"
#include "harness/lab/internal/native_reference.h"
#include "harness/lab/internal/runner_cell.h"
#include "harness/lab/internal/runner_figures.h"
#include "metrics/stats.h"

namespace patchlab::harness::internal {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// The seed of a cell's ABBA order: fixed by the cell and the run, so a run is
// reproducible and different cells get different orders.
uint64_t CellSeed(const metrics::CellKey& key, int64_t run_id) {
  return std::hash<std::string>{}(key.ToString()) ^ (static_cast<uint64_t>(run_id) << 32);
}

// What the cell's machine showed, and which host it ran on (libvirt).
struct Observed {
  CellObservations obs;
  std::string machine_host;
};

// The measured sequence on a fresh machine; a machine failure gets one more
// chance on another fresh machine (artefacts of the retry under retry/).
Observed ObserveOnAMachine(const PlannedCell& pc, const CellContext& ctx,
                           const fs::path& artefacts) {
  Observed seen;
  for (int attempt = 0; attempt < 2; ++attempt) {
    fs::path dir = attempt == 0 ? artefacts : artefacts / "retry";
    seen.obs = CellObservations{};
    GuestSpec spec{pc.key.image, pc.key.cpu, pc.scenario->vcpus, pc.scenario->memory_mib, dir};
    spec.count_instructions = ctx.count_instructions;
    auto guest = ctx.factory->Start(spec);
    if (!guest) {
      seen.obs.infra_error = "starting the machine: " + guest.error().ToString();
    } else {
      seen.machine_host = (*guest)->Host();
      CellPlan cp{pc.scenario,
                  pc.built,
                  pc.patch,
                  pc.workload,
                  ctx.public_key,
                  RulesFor(*pc.scenario, *ctx.policy),
                  CellSeed(pc.key, ctx.run_id),
                  pc.key.image};
      seen.obs = RunCellSequence(**guest, cp, ctx.cancel);
      (void)(*guest)->Shutdown();
    }
    if (!seen.obs.infra_error || *ctx.cancel) break;
    Log("harness")->warn("{}: infrastructure failure ({}); {}", pc.key.ToString(),
                         *seen.obs.infra_error,
                         attempt == 0 ? "retrying on a fresh machine" : "giving up");
  }
  return seen;
}

// The load generator's latency percentiles, median over the windows of each
// kind: {"p50": {"unpatched": 1.2, "patched": 1.3}, ...}; null when none.
nlohmann::json LatencyJson(const CellObservations& obs) {
  nlohmann::json out;
  auto add = [&](const std::map<std::string, std::vector<double>>& by_name, const char* kind) {
    for (const auto& [name, values] : by_name) {
      if (!values.empty()) out[name][kind] = metrics::Median(values).value_or(0);
    }
  };
  add(obs.latency_unpatched_ms, "unpatched");
  add(obs.latency_patched_ms, "patched");
  return out;
}

// patch.processes: all, for figures.json; null otherwise.
nlohmann::json SystemWideJson(const CellObservations& obs) {
  if (!obs.system_wide) return nullptr;
  const SystemWideObservations& sw = *obs.system_wide;
  nlohmann::json unpatched = nlohmann::json::array();
  for (const auto& [pid, comm] : sw.unpatched) unpatched.push_back({{"pid", pid}, {"comm", comm}});
  return {{"most_patched", sw.most_patched},
          {"started_unpatched", sw.unpatched.size()},
          {"unpatched", unpatched},
          {"apply_wall_us", sw.wall_us}};
}

}  // namespace

std::string Slug(const std::string& s) {
  std::string out;
  for (char c : s)
    out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.') ? c : '_';
  return out;
}

CellRun RunCell(const PlannedCell& pc, const CellContext& ctx) {
  fs::path artefacts = ctx.out / Slug(pc.key.scenario) / Slug(pc.key.patch_id) /
                       Slug(pc.key.image + "-" + pc.key.cpu + "-" + pc.key.workload);
  Clock::time_point cell_start = Clock::now();
  Observed seen;
  if (pc.refused.empty()) {
    seen = ObserveOnAMachine(pc, ctx, artefacts);
  } else {
    seen.obs.infra_error = pc.refused;
  }
  if (auto it = ctx.semantic->find(pc.key.patch_id); it != ctx.semantic->end())
    seen.obs.semantic = it->second;
  // The native cross-check, before the figures: it decides which is judged.
  // Its time is the patch's, shared by its cells: not counted in this cell's.
  Clock::duration native_time{};
  if (ctx.native != nullptr && WantsNativeReference(pc, seen.obs)) {
    Clock::time_point native_start = Clock::now();
    NativeRun native = ctx.native->Get(pc);
    native_time = Clock::now() - native_start;
    seen.obs.native_reference = native.figure;
    seen.obs.native_reference_note = native.note;
    for (const Crash& c : native.crashes) seen.obs.crashes.push_back(c);
    if (!native.note.empty())
      Log("harness")->warn("{}: native cross-check: {}", pc.key.ToString(), native.note);
  }

  CellRun run;
  // A cell stopped by Cancel() is left unrecorded, so that `--resume` measures it again.
  run.interrupted = *ctx.cancel && seen.obs.infra_error && *seen.obs.infra_error == "cancelled";
  CellOutcome& outcome = run.outcome;
  metrics::CellResult& r = outcome.result;
  r.run_id = ctx.run_id;
  r.key = pc.key;
  r.patch_seq = static_cast<int>(pc.patch->spec->seq);
  r.artefacts = artefacts.string();
  if (!seen.machine_host.empty()) r.host = seen.machine_host;
  // A real application's: what ran, its generator's latencies, outputs kept.
  r.application = seen.obs.application;
  outcome.latency_ms = LatencyJson(seen.obs);
  outcome.system_wide = SystemWideJson(seen.obs);
  if (!seen.obs.artefacts.empty()) (void)MakeDirs(artefacts);
  for (const auto& [name, content] : seen.obs.artefacts)
    (void)WriteFileAtomic(artefacts / name, content);
  ComputeFigures(seen.obs, RulesFor(*pc.scenario, *ctx.policy), r);
  outcome.overhead_flagged = OverheadFlagged(r);
  r.duration_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - cell_start - native_time)
          .count();
  outcome.met_expectation =
      MetExpectation(r, ExpectOf(*pc.scenario, *pc.patch->spec), outcome.unmet);
  r.met_expectation = outcome.met_expectation;
  (void)MakeDirs(artefacts);
  (void)WriteFileAtomic(artefacts / "figures.json", CellOutcomeJson(outcome).dump(2) + "\n");
  return run;
}

CellPool::CellPool(const std::vector<PlannedCell>& plan, const CellContext& ctx, int jobs,
                   const std::function<void(const RunProgress&)>& progress)
    : plan_(plan),
      ctx_(ctx),
      jobs_(jobs),
      progress_(progress),
      started_(Clock::now()),
      outcomes_(plan.size()) {
  state_.total = static_cast<int>(plan.size());
}

Status CellPool::RunBatch(std::vector<size_t> cells) {
  std::vector<metrics::CellKey> keys;
  keys.reserve(cells.size());
  for (size_t i : cells) keys.push_back(plan_[i].key);
  if (auto s = ctx_.db->PlanCells(ctx_.run_id, keys); !s) return s;
  batch_ = std::move(cells);
  next_ = 0;
  int jobs = std::max(1, std::min(jobs_, static_cast<int>(batch_.size())));
  std::vector<std::thread> threads;
  threads.reserve(jobs);
  for (int i = 0; i < jobs; ++i) threads.emplace_back([this] { Work(); });
  for (auto& t : threads) t.join();
  return {};
}

void CellPool::CountOnlyDone() {
  std::lock_guard<std::mutex> lock(mu_);
  state_.total = state_.done;
}

std::vector<CellOutcome> CellPool::TakeOutcomes() {
  std::vector<CellOutcome> out;
  for (auto& o : outcomes_) {
    if (o) out.push_back(std::move(*o));
  }
  return out;
}

void CellPool::Work() {
  while (true) {
    size_t index;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (next_ >= batch_.size() || *ctx_.cancel) return;
      index = batch_[next_++];
      ++state_.running;
      if (progress_) progress_(state_);
    }
    CellRun run = RunCell(plan_[index], ctx_);
    std::lock_guard<std::mutex> lock(mu_);
    --state_.running;
    Finish(index, std::move(run.outcome), run.interrupted);
  }
}

void CellPool::Finish(size_t index, CellOutcome outcome, bool interrupted) {
  const metrics::CellKey& key = plan_[index].key;
  if (!interrupted) {
    // Recorded under the lock: the database serializes anyway, and the
    // progress line must not claim a cell the database does not hold.
    if (auto s = ctx_.db->RecordCell(outcome.result); !s) {
      Log("harness")->error("{}: recording the cell failed: {}", key.ToString(),
                            s.error().ToString());
      outcome.unmet.push_back("not recorded: " + s.error().ToString());
      outcome.met_expectation = false;
    }
    ++state_.done;
    if (!outcome.met_expectation) ++state_.failed;
  }
  double elapsed = std::chrono::duration<double>(Clock::now() - started_).count();
  state_.eta_s = state_.done > 0 ? elapsed / state_.done * (state_.total - state_.done) : -1;
  outcomes_[index] = std::move(outcome);
  state_.finished = &*outcomes_[index];
  if (progress_ && !interrupted) progress_(state_);
  state_.finished = nullptr;
}

}  // namespace patchlab::harness::internal
