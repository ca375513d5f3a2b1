// The native reference of a VM cell's CPU figure: the same target, patch and
// workload measured on the lab host's own processes (the host backend, CPU
// time, the same ABBA windows, statistics and stopping rule), once per
// scenario x patch x workload and run, whatever the number of images and CPU
// models the VM cells cover. ComputeFigures sets it beside the VM's figure,
// or judges it instead when the two disagree (metrics/cpu_cross_check.h).
//
// Only a target the lab builds runs natively (a real application lives in its
// image). The native run repeats the cell's apply/revert cycles on this
// host's real cores while every thread of the target runs in parallel (an
// instruction-counting guest has one vCPU): its crashes are the patch's and
// are reported with each VM cell of it. A native run that crashes, fails or
// is refused gives no figure, with the reason.
//
// Thread-safety: Get may be called from every cell thread at once; the first
// caller for a key measures, the others wait for its answer.
#pragma once

#include <atomic>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "harness/lab/internal/runner_cells.h"
#include "harness/vm/crash_classifier.h"
#include "metrics/stats.h"

namespace patchlab::harness::internal {

// What the native run of a target and patch gave.
struct NativeRun {
  std::optional<metrics::Estimate> figure;  // the CPU overhead on native-cpu-time
  std::vector<Crash> crashes;               // of the target on this host, while patched live
  std::string note;                         // why there is no figure; empty when there is
};

class NativeReferences {
 public:
  // `host` starts the native machine (a HostGuestFactory); artefacts go to
  // OUT/SCENARIO/PATCH/native-WORKLOAD/. The pointers must outlive this object.
  NativeReferences(GuestFactory* host, std::filesystem::path out, std::filesystem::path public_key,
                   const metrics::Policy* policy, const std::atomic<bool>* cancel);

  // The native run of `cell`'s target and patch under its workload: made on
  // the first call for that key, the same answer afterwards.
  NativeRun Get(const PlannedCell& cell);

 private:
  NativeRun Measure(const PlannedCell& cell);

  using Key = std::tuple<std::string, std::string, std::string>;  // scenario, patch, workload
  GuestFactory* host_;
  std::filesystem::path out_;
  std::filesystem::path public_key_;
  const metrics::Policy* policy_;
  const std::atomic<bool>* cancel_;
  std::mutex mu_;
  std::map<Key, std::shared_future<NativeRun>> measured_;
};

// Whether a VM cell's observations call for the native cross-check: a target
// the lab builds, measured on a guest clock, with a CPU figure and no crash.
bool WantsNativeReference(const PlannedCell& cell, const CellObservations& obs);

}  // namespace patchlab::harness::internal
