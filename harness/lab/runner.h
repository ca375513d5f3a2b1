// Runner: runs scenarios as a matrix of cells (scenario x patch x image x CPU
// model x workload) and records every cell in the compatibility database.
//
// Before any machine starts it builds every scenario's target and patches with
// the host compiler, packs and signs each patch with the lab's own key (made
// on first use, kept outside the repository), and runs each patch's semantic
// check when the scenario has a `semantic:` section. Then each cell: start a
// machine (QEMU VM booted once per image/CPU and restored from its saved ready
// state for the next cells, or the host itself), run the measured sequence
// (internal/runner_cell.h), compute figures and verdict, check the scenario's
// `expect:`, keep artefacts under out/SCENARIO/PATCH/IMAGE-CPU-WORKLOAD/, and
// record the cell in one transaction. A cell whose machine failed is retried
// once on a fresh machine, then recorded as infra-error; the matrix goes on.
// Interrupted (Cancel()), the run is marked incomplete with every finished
// cell kept; `--resume RUN` runs only the cells still missing.
//
// Thread-safety: Run() runs up to `jobs` cells at once on its own threads;
// Cancel() may be called from any thread (e.g. a signal-watching one).
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "harness/lab/scenario.h"
#include "metrics/cell_result.h"
#include "metrics/policy.h"

namespace patchlab::harness {

enum class RunnerBackend {
  kQemu,     // reference images in QEMU VMs (the lab's normal mode)
  kHost,     // this host's own processes: no image or CPU variation
  kLibvirt,  // reference images in libvirt domains on the `connect` hosts (docs/fleet.md)
};

struct RunnerOptions {
  std::filesystem::path db = "patchlab.db";
  std::filesystem::path out = "out";
  int jobs = 1;
  std::vector<std::string> images;  // only these images (empty: each scenario's, else every image)
  std::vector<std::string> cpus;    // only these CPU models (empty: each scenario's or image's)
  std::optional<int64_t> resume;    // finish this run instead of starting one
  RunnerBackend backend = RunnerBackend::kQemu;
  std::filesystem::path hotpatch;  // the host's hotpatch (pack, keygen; apply on the host backend)
  std::filesystem::path key_dir;   // the lab's signing key; empty: DefaultKeyDir()
  std::filesystem::path recipes;   // vm-images/images.yaml (QEMU backend)
  std::vector<std::string> connect;  // libvirt backend: one URI per host
  int per_host = 1;                  // libvirt backend: VMs at once on each host
  std::string cc = "cc";
  std::string label;  // stored with the run ("nightly", ...)
  std::string args;   // the command line, stored with the run
  // Rollout rings (`patchlab run --rings`): run the policy's rings in order and
  // stop a patch before the next ring when the gate rejects it on this one.
  bool rings = false;
  // The policy cells are judged under (and rings gated by); null: the
  // built-in default. REQUIRES: set when rings is true.
  const metrics::Policy* policy = nullptr;
  // Measure each VM cell's target and patch natively on this host too, for the
  // cross-check of its CPU figure (metrics/cpu_cross_check.h; needs root, as
  // the host backend does). Ignored by the host backend, which is native.
  bool native_check = true;
};

// One finished cell as the runner saw it.
struct CellOutcome {
  metrics::CellResult result;
  bool overhead_flagged = false;
  bool met_expectation = false;
  std::vector<std::string> unmet;  // why the expectation was not met
  // A real application's load generator: percentile -> {unpatched, patched}
  // medians in ms (figures.json); null when it printed none.
  nlohmann::json latency_ms;
  // patch.processes: all: {"most_patched", "started_unpatched", "unpatched":
  // [{"pid", "comm"}], "apply_wall_us"}; null otherwise.
  nlohmann::json system_wide;
};

// Every figure of a finished cell, its verdict, reasons and artefacts folder:
// what figures.json beside the cell's logs and `patchlab run --json` hold.
nlohmann::json CellOutcomeJson(const CellOutcome& cell);

struct RunProgress {
  int total = 0;
  int done = 0;
  int running = 0;
  int failed = 0;     // done and not meeting expectation (infra errors included)
  double eta_s = -1;  // < 0: unknown yet
  const CellOutcome* finished = nullptr;  // the cell just finished, if any
};

struct RunReport {
  int64_t run_id = 0;
  std::vector<CellOutcome> cells;  // in matrix order
  bool cancelled = false;
  std::vector<std::string> ring_stops;  // with rings: patches stopped, and why
  // 0 every cell met its expectation; 1 some cell ran and did not; 3 only
  // infrastructure failures kept cells from meeting it.
  int ExitCode() const;
};

class Runner {
 public:
  explicit Runner(RunnerOptions options);

  // Runs `scenarios`. Fails (recording nothing) when a scenario does not build
  // (kInvalidArgument, naming the file and the compiler's first error), the
  // database cannot be opened, or no image is available; fails with kInfra
  // when the lab's own tools (hotpatch, the image store) are broken. Once
  // cells run, their failures are figures in the report, not errors.
  // `progress` (may be empty) is called from the runner's threads, serialized.
  Result<RunReport> Run(const std::vector<Scenario>& scenarios,
                        const std::function<void(const RunProgress&)>& progress);

  // Stops starting cells. Cells running stop at their next step and are left
  // unrecorded, so that `--resume` measures them again; the run is marked
  // incomplete. Async-signal-safe (one atomic store).
  void Cancel() { cancel_ = true; }

 private:
  RunnerOptions options_;
  std::atomic<bool> cancel_{false};
};

}  // namespace patchlab::harness
