// The host backend of the runner: a cell's "machine" is this host itself.
// Workloads run as ordinary child processes, the host's `hotpatch` patches
// them, and the host kernel log (/dev/kmsg, root only) is read for crash lines
// that name the cell's own programs.
//
// For `patchlab run --backend host`: quick iterations on a patch without VMs,
// and process-level tests of the runner's cell sequence. It measures the same
// figures; it does not vary the image or CPU model (both are "host").
//
// Thread-safety: the factory may start guests from several threads; each
// guest belongs to one thread.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "harness/lab/internal/runner_guest.h"

namespace patchlab::harness::internal {

class HostGuestFactory : public GuestFactory {
 public:
  explicit HostGuestFactory(std::filesystem::path hotpatch) : hotpatch_(std::move(hotpatch)) {}
  // Starts the cell in a fresh scratch folder (ARTEFACTS/guest): programs still
  // running from it (left by a lab that was killed mid-cell) are killed first.
  // Fails when the folder cannot be emptied or made, or a stray will not die.
  Result<std::unique_ptr<CellGuest>> Start(const GuestSpec& spec) override;
  std::vector<std::string> DefaultCpus(const std::string& image) override;
  std::vector<std::string> Images() override;

 private:
  std::filesystem::path hotpatch_;
};

}  // namespace patchlab::harness::internal
