#include "harness/lab/runner.h"

#include <algorithm>
#include <map>
#include <set>

#include "base/file_util.h"
#include "base/log.h"
#include "emulator/checker.h"
#include "harness/lab/internal/native_reference.h"
#include "harness/lab/internal/runner_build.h"
#include "harness/lab/internal/runner_cells.h"
#include "harness/lab/internal/runner_host_guest.h"
#include "harness/lab/internal/runner_vm_guest.h"
#include "harness/libvirt/fleet_backend.h"
#include "harness/vm/image_store.h"
#include "metrics/compat_db.h"
#include "metrics/gate.h"

namespace patchlab::harness {
namespace {

namespace fs = std::filesystem;
using internal::BuiltPatch;
using internal::BuiltScenario;
using internal::PlannedCell;

using BuiltScenarios = std::vector<std::unique_ptr<BuiltScenario>>;

// What the semantic checks found, before any machine starts.
struct SemanticResults {
  std::map<std::string, metrics::SemanticVerdict> verdicts;  // by patch id
  std::vector<metrics::SemanticFinding> findings;
};

// A real application's patch is packed against the file its image runs: the
// root of the scenario's first image when that is a Debian system, or without
// `images:` the first Debian-system image of the recipes (where such a
// scenario runs; an image's packages may be newer than the host's, with other
// build-ids). Empty: the host's.
Result<fs::path> ModuleRoot(const Scenario& s, const RunnerOptions& options) {
  if (s.target.Built() || options.backend == RunnerBackend::kHost) return fs::path();
  std::vector<std::string> images = s.images;
  if (images.empty()) {
    auto recipes = LoadImageRecipes(options.recipes);
    if (!recipes) return std::unexpected(std::move(recipes.error()).AddContext(s.file.string()));
    for (const ImageRecipe& r : *recipes) {
      if (r.system) images.push_back(r.name);
    }
  }
  if (images.empty()) return fs::path();
  auto root = SystemRootOf(options.recipes, images.front(), DefaultCacheDir());
  if (!root) return std::unexpected(std::move(root.error()).AddContext(s.file.string()));
  return root->value_or(fs::path());
}

// Why a real application's library patch cannot run on `image` (another
// build of the library than it was packed against), or "".
std::string BuildMismatchOn(const Scenario& s, const BuiltPatch& patch, const std::string& image,
                            const RunnerOptions& options) {
  if (s.target.Built() || options.backend == RunnerBackend::kHost) return "";
  auto root = SystemRootOf(options.recipes, image, DefaultCacheDir());
  if (!root || !*root) return "";  // not a Debian system: the image's own check applies
  return internal::LibraryBuildMismatch(patch, **root, image);
}

// Every scenario's target and patches, built and signed with the lab's key;
// by scenario index. A scenario that does not build fails the run here.
Result<BuiltScenarios> BuildScenarios(const std::vector<Scenario>& scenarios, const fs::path& out,
                                      const internal::LabKey& key, const RunnerOptions& options) {
  BuiltScenarios built;
  for (const Scenario& s : scenarios) {
    Log("harness")->info("building {} ({} patch{})", s.name, s.patches.size(),
                         s.patches.size() == 1 ? "" : "es");
    auto module_root = ModuleRoot(s, options);
    if (!module_root) return std::unexpected(module_root.error());
    auto b = internal::BuildScenario(s, out / internal::Slug(s.name) / "build", key,
                                     options.hotpatch, options.cc, *module_root);
    if (!b) return std::unexpected(b.error());
    built.push_back(std::make_unique<BuiltScenario>(std::move(*b)));
  }
  return built;
}

metrics::SemanticVerdict ToSemanticVerdict(emulator::Verdict verdict) {
  if (emulator::VerdictExitCode(verdict) == 1) return metrics::SemanticVerdict::kFail;
  if (verdict == emulator::Verdict::kInconclusive) return metrics::SemanticVerdict::kInconclusive;
  return metrics::SemanticVerdict::kPass;
}

// The semantic check of one built patch: its own semantic: section, else the
// scenario's when that names its object; its report lands beside the build.
Status CheckPatch(const Scenario& s, const BuiltScenario& built, const BuiltPatch& p,
                  const fs::path& out, SemanticResults& results) {
  const emulator::CheckOptions* section = SemanticOf(s, *p.spec);
  if (section == nullptr) return {};
  emulator::CheckOptions check = *section;
  bool names_object = fs::path(check.new_fn.elf).filename() == p.object.filename();
  // The scenario's section is for the one patch whose object it names; a
  // patch's own is for that patch, whichever ELF its `new` names.
  if (!p.spec->semantic && !names_object) return {};
  if (names_object) check.new_fn.elf = p.object.string();
  if (fs::path(check.old_fn.elf).filename() == s.target.program)
    check.old_fn.elf = built.program.string();
  Log("harness")->info("semantic check of {} ({} inputs)", p.spec->id, check.inputs);
  auto result = emulator::RunCheck(check);
  if (!result) {
    return std::unexpected(
        std::move(result.error())
            .AddContext(fmt::format("{}: semantic check of {}", s.file.string(), p.spec->id)));
  }
  results.verdicts[p.spec->id] = ToSemanticVerdict(result->verdict);
  (void)WriteFileAtomic(out / internal::Slug(s.name) / "build" / (p.spec->id + ".semantic.json"),
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
    results.findings.push_back(std::move(f));
  }
  return {};
}

// The semantic checks, still before any machine: one per patch with its own
// semantic: section or whose object the scenario's names.
Result<SemanticResults> RunSemanticChecks(const std::vector<Scenario>& scenarios,
                                          const BuiltScenarios& built, const fs::path& out) {
  SemanticResults results;
  for (size_t si = 0; si < scenarios.size(); ++si) {
    for (const BuiltPatch& p : built[si]->patches) {
      if (auto s = CheckPatch(scenarios[si], *built[si], p, out, results); !s)
        return std::unexpected(s.error());
    }
  }
  return results;
}

// The machines the cells run on: this host, a libvirt fleet, or QEMU here.
Result<std::unique_ptr<internal::GuestFactory>> MakeGuestFactory(const RunnerOptions& options,
                                                                 const fs::path& out) {
  if (options.backend == RunnerBackend::kHost)
    return std::make_unique<internal::HostGuestFactory>(options.hotpatch);
  if (options.backend == RunnerBackend::kLibvirt) {
    // The fleet: VMs spread over the --connect hosts (docs/fleet.md).
    auto fleet = MakeLibvirtBackend(options.connect, options.per_host);
    if (!fleet) return std::unexpected(Error(ErrorCode::kInfra, fleet.error().ToString()));
    return internal::MakeVmGuestFactory(options.recipes, out / "vm-states", std::move(*fleet));
  }
  return internal::MakeVmGuestFactory(options.recipes, out / "vm-states");
}

// The images a scenario runs on: its own, else every image that is a default
// for its kind of target (GuestFactory::DefaultFor), kept to --images.
std::vector<std::string> ScenarioImages(const Scenario& s, const RunnerOptions& options,
                                        internal::GuestFactory& factory) {
  std::vector<std::string> images = s.images;
  if (images.empty()) {
    for (const std::string& i : factory.Images()) {
      if (factory.DefaultFor(i, s.target.Built())) images.push_back(i);
    }
  }
  if (options.images.empty()) return images;
  std::vector<std::string> kept;
  for (const auto& i : images) {
    if (std::find(options.images.begin(), options.images.end(), i) != options.images.end())
      kept.push_back(i);
  }
  return kept;
}

// The CPU models of one image: --cpus, else the scenario's, else the image's.
std::vector<std::string> ImageCpus(const Scenario& s, const std::string& image,
                                   const RunnerOptions& options, internal::GuestFactory& factory) {
  if (options.backend == RunnerBackend::kHost) return {"host"};
  if (!options.cpus.empty()) return options.cpus;
  if (!s.cpus.empty()) return s.cpus;
  return factory.DefaultCpus(image);
}

// The matrix: scenario x patch x image x CPU model x workload. Fails naming
// the scenario file on an image the lab does not know, and on an empty matrix.
Result<std::vector<PlannedCell>> PlanMatrix(const std::vector<Scenario>& scenarios,
                                            const BuiltScenarios& built,
                                            const RunnerOptions& options,
                                            internal::GuestFactory& factory) {
  std::vector<PlannedCell> plan;
  std::set<std::string> known_images;
  for (const auto& i : factory.Images()) known_images.insert(i);
  for (size_t si = 0; si < scenarios.size(); ++si) {
    const Scenario& s = scenarios[si];
    for (const auto& image : ScenarioImages(s, options, factory)) {
      if (!known_images.contains(image)) {
        return Fail(ErrorCode::kInvalidArgument, "{}: image '{}' is not one the lab knows ({})",
                    s.file.string(), image, fmt::join(known_images, ", "));
      }
      std::vector<std::string> cpus = ImageCpus(s, image, options, factory);
      for (const auto& patch : built[si]->patches) {
        std::string refused = BuildMismatchOn(s, patch, image, options);
        for (const auto& cpu : cpus) {
          for (const auto& w : s.workloads) {
            plan.push_back({&s,
                            built[si].get(),
                            &patch,
                            &w,
                            {s.name, patch.spec->id, image, cpu, w.name},
                            refused});
          }
        }
      }
    }
  }
  if (plan.empty())
    return Fail(ErrorCode::kInvalidArgument, "the matrix is empty (check --images and --cpus)");
  return plan;
}

// Starts the run in the database (or resumes it, keeping only the cells it
// still misses in `plan`) and returns its id.
Result<int64_t> BeginOrResumeRun(metrics::CompatDb& db, const RunnerOptions& options,
                                 std::vector<PlannedCell>& plan) {
  if (!options.resume) {
    metrics::RunInfo info;
    info.label = options.label;
    info.args = options.args;
    return db.BeginRun(info);
  }
  int64_t run_id = *options.resume;
  if (auto s = db.ResumeRun(run_id); !s) return std::unexpected(s.error());
  auto missing = db.MissingCells(run_id);
  if (!missing) return std::unexpected(missing.error());
  std::set<metrics::CellKey> want(missing->begin(), missing->end());
  std::erase_if(plan, [&](const PlannedCell& c) { return !want.contains(c.key); });
  Log("harness")->info("resuming run {}: {} cells missing", run_id, plan.size());
  return run_id;
}

// What the run uses, recorded before its cells: the patches, the semantic
// findings, the images.
Status RecordRunInputs(metrics::CompatDb& db, int64_t run_id, const BuiltScenarios& built,
                       const internal::LabKey& key, SemanticResults& semantic,
                       const std::vector<PlannedCell>& plan, internal::GuestFactory& factory) {
  for (const auto& b : built) {
    for (const auto& p : b->patches) {
      metrics::PatchInfo info{p.spec->id, static_cast<int>(p.spec->seq), p.target_build_id,
                              p.package_sha256, key.public_key.string()};
      if (auto s = db.RecordPatch(info); !s) return s;
    }
  }
  for (auto& f : semantic.findings) f.run_id = run_id;
  if (!semantic.findings.empty()) {
    if (auto s = db.RecordFindings(run_id, semantic.findings); !s) return s;
  }
  std::set<std::string> images_used;
  for (const auto& c : plan) images_used.insert(c.key.image);
  for (const auto& image : images_used) {
    metrics::ImageInfo info;
    info.name = image;
    if (auto detail = factory.Describe(image)) {
      info.kernel_version = detail->first;
      info.content_hash = detail->second;
    }
    if (auto s = db.RecordImage(info); !s) return s;
  }
  return {};
}

// The cells of one ring that are still to run: not run on an earlier ring,
// not of a stopped patch. Marks them done and collects their patches.
std::vector<size_t> RingCells(const metrics::Ring& ring, const std::vector<PlannedCell>& plan,
                              const std::set<std::string>& stopped, std::vector<bool>& done,
                              std::set<std::string>& patches) {
  std::vector<size_t> cells;
  for (size_t i = 0; i < plan.size(); ++i) {
    if (done[i] || stopped.contains(plan[i].key.patch_id) || !ring.Contains(plan[i].key.image))
      continue;
    cells.push_back(i);
    done[i] = true;
    patches.insert(plan[i].key.patch_id);
  }
  return cells;
}

Status RunAllCells(const std::vector<PlannedCell>& plan, internal::CellPool& pool) {
  std::vector<size_t> all(plan.size());
  for (size_t i = 0; i < plan.size(); ++i) all[i] = i;
  return pool.RunBatch(std::move(all));
}

// Rollout rings: each ring's cells, then the gate on that ring for every
// patch in it; a patch that does not ship goes no further.
Status RunRings(const RunnerOptions& options, const std::atomic<bool>& cancel,
                const std::vector<PlannedCell>& plan, internal::CellPool& pool,
                metrics::CompatDb& db, RunReport& report) {
  std::set<std::string> stopped;
  std::vector<bool> done(plan.size(), false);
  for (const metrics::Ring& ring : options.policy->rings) {
    if (cancel) break;
    std::set<std::string> patches;
    std::vector<size_t> cells = RingCells(ring, plan, stopped, done, patches);
    Log("harness")->info("ring {}: {} cells", ring.name, cells.size());
    if (auto s = pool.RunBatch(std::move(cells)); !s) return s;
    for (const auto& patch : patches) {
      auto decision = metrics::EvaluateRing(db, patch, ring.name, *options.policy);
      if (!decision) return std::unexpected(decision.error());
      if (decision->outcome != metrics::GateOutcome::kShip) {
        stopped.insert(patch);
        report.ring_stops.push_back(
            fmt::format("{}: stopped after ring {}: {}", patch, ring.name, decision->Explain()));
      }
    }
  }
  pool.CountOnlyDone();  // cells of later rings were never planned
  return {};
}

}  // namespace

nlohmann::json CellOutcomeJson(const CellOutcome& c) {
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
  auto opt = [](const std::optional<double>& v) {
    return v ? nlohmann::json(*v) : nlohmann::json();
  };
  if (r.cpu_overhead_pct) {
    j["cpu_overhead_pct"] = r.cpu_overhead_pct->value;
    j["cpu_overhead_interval_pct"] = {r.cpu_overhead_pct->low, r.cpu_overhead_pct->high};
    j["cpu_pairs"] = r.cpu_overhead_pct->samples;
  } else {
    j["cpu_overhead_pct"] = nullptr;
  }
  j["cpu_clock"] = metrics::CpuClockName(r.cpu_clock);
  j["cpu_outcome"] =
      r.cpu_outcome ? nlohmann::json(metrics::OverheadOutcomeName(*r.cpu_outcome)) : nullptr;
  j["cpu_limit_pct"] = opt(r.cpu_limit_pct);
  // The other figure beside the judged one (the native cross-check).
  if (r.cpu_reference_pct) {
    j["cpu_reference_pct"] = r.cpu_reference_pct->value;
    j["cpu_reference_interval_pct"] = {r.cpu_reference_pct->low, r.cpu_reference_pct->high};
    j["cpu_reference_pairs"] = r.cpu_reference_pct->samples;
    j["cpu_reference_clock"] = metrics::CpuClockName(r.cpu_reference_clock);
  } else {
    j["cpu_reference_pct"] = nullptr;
  }
  j["overhead_flagged"] = c.overhead_flagged;
  nlohmann::json windows = nlohmann::json::array();
  for (const auto& w : r.cpu_windows) {
    windows.push_back({{"patched", w.patched}, {"cost", w.cost}, {"work", w.work}});
  }
  j["cpu_windows"] = windows;
  if (r.host_load) {
    j["host_load"] = {{"load1", r.host_load->load1},
                      {"busy_pct", r.host_load->busy_pct},
                      {"steal_pct", r.host_load->steal_pct}};
  }
  j["mem_overhead_kib"] = opt(r.mem_overhead_kib);
  j["patch_mapped_kib"] = opt(r.patch_mapped_kib);
  j["island_kib"] = opt(r.island_kib);
  j["semantic"] = metrics::SemanticVerdictName(r.semantic);
  j["duration_ms"] = r.duration_ms;
  j["artefacts"] = r.artefacts;
  j["reasons"] = r.reasons;
  j["unmet"] = c.unmet;
  j["application"] = r.application;
  if (!c.latency_ms.is_null()) j["latency_ms"] = c.latency_ms;
  if (!c.system_wide.is_null()) j["system_wide"] = c.system_wide;
  return j;
}

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

Result<RunReport> Runner::Run(const std::vector<Scenario>& scenarios,
                              const std::function<void(const RunProgress&)>& progress) {
  if (scenarios.empty()) return Fail(ErrorCode::kInvalidArgument, "no scenario to run");
  // Cells are judged under the policy the gate will use (a scenario's limits
  // only tighten it), so a run and `patchlab gate` cannot disagree.
  const metrics::Policy& policy =
      options_.policy != nullptr ? *options_.policy : metrics::DefaultPolicy();
  if (auto s = MakeDirs(options_.out); !s) return std::unexpected(s.error());
  fs::path out = fs::absolute(options_.out);

  // 1. Everything on the host first: a scenario that does not build must fail
  //    the run before any VM boots or anything is recorded.
  fs::path key_dir = options_.key_dir.empty() ? internal::DefaultKeyDir() : options_.key_dir;
  auto key = internal::EnsureLabKey(key_dir, options_.hotpatch);
  if (!key) return std::unexpected(key.error());
  auto built = BuildScenarios(scenarios, out, *key, options_);
  if (!built) return std::unexpected(built.error());
  auto semantic = RunSemanticChecks(scenarios, *built, out);
  if (!semantic) return std::unexpected(semantic.error());

  // 2. The machines, and the matrix of cells on them.
  auto factory = MakeGuestFactory(options_, out);
  if (!factory) return std::unexpected(factory.error());
  auto plan = PlanMatrix(scenarios, *built, options_, **factory);
  if (!plan) return std::unexpected(plan.error());

  // 3. The database: the run, its plan, the patches and images it uses.
  auto db = metrics::CompatDb::Open(options_.db);
  if (!db) return std::unexpected(db.error());
  RunReport report;
  auto run_id = BeginOrResumeRun(*db, options_, *plan);
  if (!run_id) return std::unexpected(run_id.error());
  report.run_id = *run_id;
  if (auto s = RecordRunInputs(*db, report.run_id, *built, *key, *semantic, *plan, **factory); !s)
    return std::unexpected(s.error());

  // 4. The cells, `jobs` at a time, all at once or ring by ring.
  internal::CellContext ctx{factory->get(),      &*db,     report.run_id, out, key->public_key,
                            &semantic->verdicts, &cancel_, &policy};
  // Under TCG, CPU figures count guest instructions: host load cannot move them.
  ctx.count_instructions = options_.backend == RunnerBackend::kQemu;
  // The same targets and patches measured natively beside the VMs' figures.
  internal::HostGuestFactory host(options_.hotpatch);
  std::optional<internal::NativeReferences> native;
  if (options_.backend != RunnerBackend::kHost && options_.native_check) {
    native.emplace(&host, out, key->public_key, &policy, &cancel_);
    ctx.native = &*native;
  }
  internal::CellPool pool(*plan, ctx, options_.jobs, progress);
  Status ran = options_.rings ? RunRings(options_, cancel_, *plan, pool, *db, report)
                              : RunAllCells(*plan, pool);
  if (!ran) return std::unexpected(ran.error());

  // 5. The report, and the run closed (or left to resume).
  report.cells = pool.TakeOutcomes();
  report.cancelled = cancel_;
  Status finished = cancel_ ? db->MarkIncomplete(report.run_id, "interrupted; resume with --resume")
                            : db->FinishRun(report.run_id, metrics::RunStatus::kComplete);
  if (!finished)
    Log("harness")->error("closing run {}: {}", report.run_id, finished.error().ToString());
  return report;
}

}  // namespace patchlab::harness
