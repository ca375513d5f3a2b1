#include "harness/lab/runner.h"

#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "base/file_util.h"
#include "base/log.h"
#include "emulator/checker.h"
#include "harness/lab/internal/runner_build.h"
#include "harness/lab/internal/runner_cell.h"
#include "harness/lab/internal/runner_figures.h"
#include "harness/lab/internal/runner_host_guest.h"
#include "harness/lab/internal/runner_vm_guest.h"
#include "harness/libvirt/fleet_backend.h"
#include "harness/vm/image_store.h"
#include "metrics/compat_db.h"
#include "metrics/gate.h"
#include "metrics/stats.h"

namespace patchlab::harness {
namespace {

namespace fs = std::filesystem;
using internal::BuiltPatch;
using internal::BuiltScenario;
using Clock = std::chrono::steady_clock;

struct PlannedCell {
  const Scenario* scenario;
  const BuiltScenario* built;
  const BuiltPatch* patch;
  const WorkloadSpec* workload;
  metrics::CellKey key;
};

std::string Slug(const std::string& s) {
  std::string out;
  for (char c : s)
    out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.') ? c : '_';
  return out;
}

nlohmann::json FiguresJson(const CellOutcome& c) {
  const metrics::CellResult& r = c.result;
  nlohmann::json j;
  j["scenario"] = r.key.scenario;
  j["patch_id"] = r.key.patch_id;
  j["image"] = r.key.image;
  j["cpu"] = r.key.cpu;
  j["workload"] = r.key.workload;
  j["verdict"] = metrics::VerdictName(r.verdict);
  j["met_expectation"] = c.met_expectation;
  j["apply"] = metrics::ApplyResultName(r.apply);
  j["apply_reason"] = r.apply_reason;
  j["crashes"] = r.TotalCrashes();
  nlohmann::json kinds = nlohmann::json::object();
  for (const auto& [kind, n] : r.crashes) kinds[std::string(metrics::CrashKindName(kind))] = n;
  j["crashes_by_kind"] = kinds;
  j["pause_us"] = r.pause_median_us ? nlohmann::json(*r.pause_median_us) : nlohmann::json();
  j["pauses_us"] = r.pause_us;
  if (r.cpu_overhead_pct) {
    j["cpu_overhead_pct"] = r.cpu_overhead_pct->value;
    j["cpu_overhead_interval_pct"] = {r.cpu_overhead_pct->low, r.cpu_overhead_pct->high};
  } else {
    j["cpu_overhead_pct"] = nullptr;
  }
  j["overhead_flagged"] = c.overhead_flagged;
  j["mem_overhead_kib"] =
      r.mem_overhead_kib ? nlohmann::json(*r.mem_overhead_kib) : nlohmann::json();
  j["semantic"] = metrics::SemanticVerdictName(r.semantic);
  j["duration_ms"] = r.duration_ms;
  j["artefacts"] = r.artefacts;
  j["reasons"] = r.reasons;
  j["unmet"] = c.unmet;
  j["application"] = r.application;
  if (!c.latency_ms.is_null()) j["latency_ms"] = c.latency_ms;
  return j;
}

// The load generator's latency percentiles, median over the windows of each
// kind: {"p50": {"unpatched": 1.2, "patched": 1.3}, ...}; null when none.
nlohmann::json LatencyJson(const internal::CellObservations& obs) {
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

}  // namespace

int RunReport::ExitCode() const {
  bool unmet = false, infra = false;
  for (const auto& c : cells) {
    if (c.met_expectation) continue;
    if (c.result.verdict == metrics::Verdict::kInfraError) {
      infra = true;
    } else {
      unmet = true;
    }
  }
  if (unmet) return 1;
  if (infra || cancelled) return 3;
  return 0;
}

Runner::Runner(RunnerOptions options) : options_(std::move(options)) {}

// A real application's patch is packed against the file its image runs: the
// root of the scenario's first image when that is a Debian system (an image's
// packages may be newer than the host's, with other build-ids).
Result<fs::path> Runner::ModuleRoot(const Scenario& s) const {
  if (s.target.Built() || s.images.empty() || options_.backend == RunnerBackend::kHost) {
    return fs::path();
  }
  auto root = SystemRootOf(options_.recipes, s.images.front(), DefaultCacheDir());
  if (!root) return std::unexpected(std::move(root.error()).AddContext(s.file.string()));
  return root->value_or(fs::path());
}

Result<RunReport> Runner::Run(const std::vector<Scenario>& scenarios,
                              const std::function<void(const RunProgress&)>& progress) {
  auto log = Log("harness");
  if (scenarios.empty()) return Fail(ErrorCode::kInvalidArgument, "no scenario to run");
  if (auto s = MakeDirs(options_.out); !s) return std::unexpected(s.error());
  fs::path out = fs::absolute(options_.out);

  // 1. Everything on the host first: a scenario that does not build must fail
  //    the run before any VM boots or anything is recorded.
  fs::path key_dir = options_.key_dir.empty() ? internal::DefaultKeyDir() : options_.key_dir;
  auto key = internal::EnsureLabKey(key_dir, options_.hotpatch);
  if (!key) return std::unexpected(key.error());
  std::vector<std::unique_ptr<BuiltScenario>> built;
  for (const Scenario& s : scenarios) {
    log->info("building {} ({} patch{})", s.name, s.patches.size(),
              s.patches.size() == 1 ? "" : "es");
    auto module_root = ModuleRoot(s);
    if (!module_root) return std::unexpected(module_root.error());
    auto b = internal::BuildScenario(s, out / Slug(s.name) / "build", *key, options_.hotpatch,
                                     options_.cc, *module_root);
    if (!b) return std::unexpected(b.error());
    built.push_back(std::make_unique<BuiltScenario>(std::move(*b)));
  }

  // The semantic checks, still before any machine: one per patch whose object
  // the scenario's semantic: section names.
  std::map<std::string, metrics::SemanticVerdict> semantic;
  std::vector<metrics::SemanticFinding> findings;
  for (size_t si = 0; si < scenarios.size(); ++si) {
    const Scenario& s = scenarios[si];
    if (!s.semantic) continue;
    for (const BuiltPatch& p : built[si]->patches) {
      emulator::CheckOptions check = *s.semantic;
      if (fs::path(check.new_fn.elf).filename() != p.object.filename()) continue;
      check.new_fn.elf = p.object.string();
      if (fs::path(check.old_fn.elf).filename() == s.target.program)
        check.old_fn.elf = built[si]->program.string();
      log->info("semantic check of {} ({} inputs)", p.spec->id, check.inputs);
      auto result = emulator::RunCheck(check);
      if (!result) {
        return std::unexpected(
            std::move(result.error())
                .AddContext(fmt::format("{}: semantic check of {}", s.file.string(), p.spec->id)));
      }
      metrics::SemanticVerdict v = metrics::SemanticVerdict::kPass;
      if (result->verdict == emulator::Verdict::kInconclusive)
        v = metrics::SemanticVerdict::kInconclusive;
      if (emulator::VerdictExitCode(result->verdict) == 1) v = metrics::SemanticVerdict::kFail;
      semantic[p.spec->id] = v;
      (void)WriteFileAtomic(out / Slug(s.name) / "build" / (p.spec->id + ".semantic.json"),
                            emulator::FormatJson(*result) + "\n");
      for (const auto& c : result->counterexamples) {
        metrics::SemanticFinding f;
        f.scenario = s.name;
        f.patch_id = p.spec->id;
        f.function = check.old_fn.symbol;
        f.kind = c.kind;
        f.input = c.input_text;
        f.old_result = c.old_result;
        f.new_result = c.new_result;
        f.detail = c.detail;
        findings.push_back(std::move(f));
      }
    }
  }

  // 2. The machines.
  std::unique_ptr<internal::GuestFactory> factory;
  if (options_.backend == RunnerBackend::kHost) {
    factory = std::make_unique<internal::HostGuestFactory>(options_.hotpatch);
  } else if (options_.backend == RunnerBackend::kLibvirt) {
    // The fleet: VMs spread over the --connect hosts (docs/fleet.md).
    auto fleet = MakeLibvirtBackend(options_.connect, options_.per_host);
    if (!fleet) return std::unexpected(Error(ErrorCode::kInfra, fleet.error().ToString()));
    auto f = internal::MakeVmGuestFactory(options_.recipes, out / "vm-states", std::move(*fleet));
    if (!f) return std::unexpected(f.error());
    factory = std::move(*f);
  } else {
    auto f = internal::MakeVmGuestFactory(options_.recipes, out / "vm-states");
    if (!f) return std::unexpected(f.error());
    factory = std::move(*f);
  }

  // 3. The matrix.
  std::vector<PlannedCell> plan;
  std::set<std::string> known_images;
  for (const auto& i : factory->Images()) known_images.insert(i);
  for (size_t si = 0; si < scenarios.size(); ++si) {
    const Scenario& s = scenarios[si];
    std::vector<std::string> images = s.images;
    if (images.empty()) {
      for (const std::string& i : factory->Images()) {
        if (factory->DefaultFor(i, s.target.Built())) images.push_back(i);
      }
    }
    if (!options_.images.empty()) {
      std::vector<std::string> kept;
      for (const auto& i : images) {
        if (std::find(options_.images.begin(), options_.images.end(), i) != options_.images.end())
          kept.push_back(i);
      }
      images = kept;
    }
    for (const auto& image : images) {
      if (!known_images.contains(image)) {
        return Fail(ErrorCode::kInvalidArgument, "{}: image '{}' is not one the lab knows ({})",
                    s.file.string(), image, fmt::join(known_images, ", "));
      }
      std::vector<std::string> cpus = !options_.cpus.empty() ? options_.cpus
                                      : !s.cpus.empty()      ? s.cpus
                                                             : factory->DefaultCpus(image);
      if (options_.backend == RunnerBackend::kHost) cpus = {"host"};
      for (const auto& patch : built[si]->patches) {
        for (const auto& cpu : cpus) {
          for (const auto& w : s.workloads) {
            plan.push_back(
                {&s, built[si].get(), &patch, &w, {s.name, patch.spec->id, image, cpu, w.name}});
          }
        }
      }
    }
  }
  if (plan.empty())
    return Fail(ErrorCode::kInvalidArgument, "the matrix is empty (check --images and --cpus)");

  // 4. The database: the run, its plan, the patches and images it uses.
  auto db = metrics::CompatDb::Open(options_.db);
  if (!db) return std::unexpected(db.error());
  RunReport report;
  if (options_.resume) {
    if (auto s = db->ResumeRun(*options_.resume); !s) return std::unexpected(s.error());
    report.run_id = *options_.resume;
    auto missing = db->MissingCells(report.run_id);
    if (!missing) return std::unexpected(missing.error());
    std::set<metrics::CellKey> want(missing->begin(), missing->end());
    std::erase_if(plan, [&](const PlannedCell& c) { return !want.contains(c.key); });
    log->info("resuming run {}: {} cells missing", report.run_id, plan.size());
  } else {
    metrics::RunInfo info;
    info.label = options_.label;
    info.args = options_.args;
    auto id = db->BeginRun(info);
    if (!id) return std::unexpected(id.error());
    report.run_id = *id;
  }
  for (const auto& b : built) {
    for (const auto& p : b->patches) {
      metrics::PatchInfo info{p.spec->id, static_cast<int>(p.spec->seq), p.target_build_id,
                              p.package_sha256, key->public_key.string()};
      if (auto s = db->RecordPatch(info); !s) return std::unexpected(s.error());
    }
  }
  for (auto& f : findings) f.run_id = report.run_id;
  if (!findings.empty()) {
    if (auto s = db->RecordFindings(report.run_id, findings); !s) return std::unexpected(s.error());
  }
  std::set<std::string> images_used;
  for (const auto& c : plan) images_used.insert(c.key.image);
  for (const auto& image : images_used) {
    metrics::ImageInfo info;
    info.name = image;
    if (auto detail = factory->Describe(image)) {
      info.kernel_version = detail->first;
      info.content_hash = detail->second;
    }
    if (auto s = db->RecordImage(info); !s) return std::unexpected(s.error());
  }

  // 5. The cells, `jobs` at a time.
  std::mutex mu;
  std::vector<size_t> batch;  // indices into plan of the cells to run now
  size_t next = 0;
  RunProgress state;
  state.total = static_cast<int>(plan.size());
  std::vector<std::optional<CellOutcome>> outcomes(plan.size());
  Clock::time_point started = Clock::now();
  auto worker = [&]() {
    while (true) {
      size_t index;
      {
        std::lock_guard<std::mutex> lock(mu);
        if (next >= batch.size() || cancel_) return;
        index = batch[next++];
        ++state.running;
        if (progress) progress(state);
      }
      const PlannedCell& pc = plan[index];
      fs::path artefacts = out / Slug(pc.key.scenario) / Slug(pc.key.patch_id) /
                           Slug(pc.key.image + "-" + pc.key.cpu + "-" + pc.key.workload);
      CellOutcome outcome;
      Clock::time_point cell_start = Clock::now();
      internal::CellObservations obs;
      std::string machine_host;  // the libvirt host the cell's last machine ran on
      // A machine failure gets one more chance on a fresh machine.
      for (int attempt = 0; attempt < 2; ++attempt) {
        fs::path dir = attempt == 0 ? artefacts : artefacts / "retry";
        obs = internal::CellObservations{};
        internal::GuestSpec spec{pc.key.image, pc.key.cpu, pc.scenario->vcpus,
                                 pc.scenario->memory_mib, dir};
        auto guest = factory->Start(spec);
        if (!guest) {
          obs.infra_error = "starting the machine: " + guest.error().ToString();
        } else {
          machine_host = (*guest)->Host();
          internal::CellPlan cp{pc.scenario, pc.built,        pc.patch,
                                pc.workload, key->public_key, pc.key.image};
          obs = internal::RunCellSequence(**guest, cp, &cancel_);
          (void)(*guest)->Shutdown();
        }
        if (!obs.infra_error || cancel_) break;
        log->warn("{}: infrastructure failure ({}); {}", pc.key.ToString(), *obs.infra_error,
                  attempt == 0 ? "retrying on a fresh machine" : "giving up");
      }
      if (auto it = semantic.find(pc.key.patch_id); it != semantic.end()) obs.semantic = it->second;
      outcome.result.run_id = report.run_id;
      outcome.result.key = pc.key;
      outcome.result.patch_seq = static_cast<int>(pc.patch->spec->seq);
      outcome.result.artefacts = artefacts.string();
      if (!machine_host.empty()) outcome.result.host = machine_host;
      outcome.result.application = obs.application;
      outcome.latency_ms = LatencyJson(obs);
      for (const auto& [name, content] : obs.artefacts) {
        (void)MakeDirs(artefacts);
        (void)WriteFileAtomic(artefacts / name, content);
      }
      internal::ComputeFigures(obs, pc.scenario->limits, outcome.result, outcome.overhead_flagged);
      outcome.result.duration_ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - cell_start).count();
      outcome.met_expectation = internal::MetExpectation(outcome.result, outcome.overhead_flagged,
                                                         pc.scenario->expect, outcome.unmet);
      outcome.result.met_expectation = outcome.met_expectation;
      (void)MakeDirs(artefacts);
      (void)WriteFileAtomic(artefacts / "figures.json", FiguresJson(outcome).dump(2) + "\n");

      std::lock_guard<std::mutex> lock(mu);
      --state.running;
      bool interrupted = cancel_ && obs.infra_error && *obs.infra_error == "cancelled";
      if (!interrupted) {
        // Recorded under the lock: the database serializes anyway, and the
        // progress line must not claim a cell the database does not hold.
        if (auto s = db->RecordCell(outcome.result); !s) {
          log->error("{}: recording the cell failed: {}", pc.key.ToString(), s.error().ToString());
          outcome.unmet.push_back("not recorded: " + s.error().ToString());
          outcome.met_expectation = false;
        }
        ++state.done;
        if (!outcome.met_expectation) ++state.failed;
      }
      double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
      state.eta_s = state.done > 0 ? elapsed / state.done * (state.total - state.done) : -1;
      outcomes[index] = std::move(outcome);
      state.finished = &*outcomes[index];
      if (progress && !interrupted) progress(state);
      state.finished = nullptr;
    }
  };
  // Plans `cells` in the database, then runs them on `jobs` threads.
  auto run_batch = [&](std::vector<size_t> cells) -> Status {
    std::vector<metrics::CellKey> keys;
    for (size_t i : cells) keys.push_back(plan[i].key);
    if (auto s = db->PlanCells(report.run_id, keys); !s) return s;
    batch = std::move(cells);
    next = 0;
    int jobs = std::max(1, std::min(options_.jobs, static_cast<int>(batch.size())));
    std::vector<std::thread> threads;
    for (int i = 0; i < jobs; ++i) threads.emplace_back(worker);
    for (auto& t : threads) t.join();
    return {};
  };
  if (!options_.rings) {
    std::vector<size_t> all(plan.size());
    for (size_t i = 0; i < plan.size(); ++i) all[i] = i;
    if (auto s = run_batch(std::move(all)); !s) return std::unexpected(s.error());
  } else {
    // Rollout rings: each ring's cells, then the gate on that ring for every
    // patch in it; a patch that does not ship goes no further.
    std::set<std::string> stopped;
    std::vector<bool> done(plan.size(), false);
    for (const metrics::Ring& ring : options_.policy->rings) {
      if (cancel_) break;
      std::vector<size_t> cells;
      std::set<std::string> patches;
      for (size_t i = 0; i < plan.size(); ++i) {
        if (done[i] || stopped.contains(plan[i].key.patch_id) || !ring.Contains(plan[i].key.image))
          continue;
        cells.push_back(i);
        done[i] = true;
        patches.insert(plan[i].key.patch_id);
      }
      log->info("ring {}: {} cells", ring.name, cells.size());
      if (auto s = run_batch(std::move(cells)); !s) return std::unexpected(s.error());
      for (const auto& patch : patches) {
        auto decision = metrics::EvaluateRing(*db, patch, ring.name, *options_.policy);
        if (!decision) return std::unexpected(decision.error());
        if (decision->outcome != metrics::GateOutcome::kShip) {
          stopped.insert(patch);
          report.ring_stops.push_back(
              fmt::format("{}: stopped after ring {}: {}", patch, ring.name, decision->Explain()));
        }
      }
    }
    state.total = state.done;  // cells of later rings were never planned
  }

  for (auto& o : outcomes) {
    if (o) report.cells.push_back(std::move(*o));
  }
  report.cancelled = cancel_;
  Status finished = cancel_ ? db->MarkIncomplete(report.run_id, "interrupted; resume with --resume")
                            : db->FinishRun(report.run_id, metrics::RunStatus::kComplete);
  if (!finished) log->error("closing run {}: {}", report.run_id, finished.error().ToString());
  return report;
}

}  // namespace patchlab::harness
