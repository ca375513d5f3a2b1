// The native reference of a VM cell's CPU figure: the same target, patch and
// workload measured on the lab host's own processes (the host backend, CPU
// time, the same ABBA windows, statistics and stopping rule), once per
// scenario x patch x workload and run, whatever the number of images and CPU
// models the VM cells cover. ComputeFigures sets it beside the VM's figure,
// or judges it instead when the two disagree (metrics/cpu_cross_check.h).
//
// Only a target the lab builds runs natively (a real application lives in its
// image). A native run that crashes, fails or is refused gives no reference,
// with the reason: the VM cell reports those failures itself.
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
#include <string>
#include <tuple>

#include "base/error.h"
#include "harness/lab/internal/runner_cells.h"
#include "metrics/stats.h"

namespace patchlab::harness::internal {

class NativeReferences {
 public:
  // `host` starts the native machine (a HostGuestFactory); artefacts go to
  // OUT/SCENARIO/PATCH/native-WORKLOAD/. The pointers must outlive this object.
  NativeReferences(GuestFactory* host, std::filesystem::path out, std::filesystem::path public_key,
                   const metrics::Policy* policy, const std::atomic<bool>* cancel);

  // The native CPU overhead of `cell`'s target and patch under its workload:
  // measured on the first call for that key, the same answer afterwards.
  // Fails (with the reason) when the native run gives no figure.
  Result<metrics::Estimate> Get(const PlannedCell& cell);

 private:
  Result<metrics::Estimate> Measure(const PlannedCell& cell);

  using Key = std::tuple<std::string, std::string, std::string>;  // scenario, patch, workload
  GuestFactory* host_;
  std::filesystem::path out_;
  std::filesystem::path public_key_;
  const metrics::Policy* policy_;
  const std::atomic<bool>* cancel_;
  std::mutex mu_;
  std::map<Key, std::shared_future<Result<metrics::Estimate>>> measured_;
};

// Whether a VM cell's observations call for the native cross-check: a target
// the lab builds, measured on a guest clock, with a CPU figure and no crash.
bool WantsNativeReference(const PlannedCell& cell, const CellObservations& obs);

}  // namespace patchlab::harness::internal
