// The cells of a run once they are planned: one cell run on a machine (with
// one retry on a fresh machine after an infrastructure failure), its figures,
// expectation and figures.json; and the pool that runs a batch of cells on
// `jobs` threads, records each finished cell and reports progress.
//
// Thread-safety: RunCell may run concurrently for distinct cells. A CellPool
// belongs to the thread that calls RunBatch; its workers and the progress
// callback run on threads of its own, the callback serialized.
#pragma once

#include <atomic>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "harness/lab/internal/runner_build.h"
#include "harness/lab/internal/runner_guest.h"
#include "harness/lab/runner.h"
#include "harness/lab/scenario.h"
#include "metrics/compat_db.h"
#include "metrics/policy.h"

namespace patchlab::harness::internal {

class NativeReferences;  // native_reference.h

// One cell of the matrix and what it is made of.
struct PlannedCell {
  const Scenario* scenario = nullptr;
  const BuiltScenario* built = nullptr;
  const BuiltPatch* patch = nullptr;
  const WorkloadSpec* workload = nullptr;
  metrics::CellKey key;
  // Set when the cell cannot say anything of the patch and no machine is
  // started: the cell is recorded as an infra-error with this reason (a
  // library patch packed against another build than the image's).
  std::string refused;
};

// What every cell of one run shares. The pointers outlive the run's cells.
struct CellContext {
  GuestFactory* factory = nullptr;
  metrics::CompatDb* db = nullptr;
  int64_t run_id = 0;
  std::filesystem::path out;         // artefacts root (absolute)
  std::filesystem::path public_key;  // what the machine verifies packages with
  const std::map<std::string, metrics::SemanticVerdict>* semantic = nullptr;  // by patch id
  const std::atomic<bool>* cancel = nullptr;
  // The policy cells are judged under (a scenario's limits only tighten it).
  const metrics::Policy* policy = nullptr;
  // Machines count guest instructions for the CPU figures (QEMU under TCG).
  bool count_instructions = false;
  // Measures each VM cell's target and patch natively for the cross-check
  // (native_reference.h); null: no cross-check (the host backend, or asked off).
  NativeReferences* native = nullptr;
};

// A name made safe for a folder: every character but [A-Za-z0-9.-] becomes '_'.
std::string Slug(const std::string& s);

struct CellRun {
  CellOutcome outcome;
  bool interrupted = false;  // stopped by the run's cancel: not to be recorded
};

// Runs `cell` and returns its outcome, its artefacts (figures.json beside the
// machine's logs) under out/SCENARIO/PATCH/IMAGE-CPU-WORKLOAD/. Never fails: a
// machine that fails twice makes an infra-error outcome. Does not record.
CellRun RunCell(const PlannedCell& cell, const CellContext& ctx);

class CellPool {
 public:
  CellPool(const std::vector<PlannedCell>& plan, const CellContext& ctx, int jobs,
           const std::function<void(const RunProgress&)>& progress);

  // Plans `cells` (indices into the plan) in the database, then runs them on
  // up to `jobs` threads, recording each finished cell unless the run was
  // cancelled under it. Fails only when planning them fails.
  Status RunBatch(std::vector<size_t> cells);
  // With rings, cells of later rings are never planned: the total shrinks to
  // the cells done.
  void CountOnlyDone();
  // The finished cells, in plan order.
  std::vector<CellOutcome> TakeOutcomes();

 private:
  void Work();
  // Records a finished cell and reports it. REQUIRES: mu_ held.
  void Finish(size_t index, CellOutcome outcome, bool interrupted);

  const std::vector<PlannedCell>& plan_;
  const CellContext& ctx_;
  int jobs_;
  const std::function<void(const RunProgress&)>& progress_;
  std::chrono::steady_clock::time_point started_;

  std::mutex mu_;
  std::vector<size_t> batch_;  // indices into plan_ of the cells to run now
  size_t next_ = 0;            // the next of batch_ to start
  RunProgress state_;
  std::vector<std::optional<CellOutcome>> outcomes_;  // by plan index
};

}  // namespace patchlab::harness::internal
