#include "patchcore/internal/unmap_when_unused.h"

#include "patchcore/internal/stop_world.h"
#include "patchcore/remote_syscall.h"

namespace patchlab::patchcore::internal {

Status UnmapWhenUnused(pid_t pid, const ProcessMemory& memory, const ProcessMaps& maps,
                       const std::vector<RemoteRange>& ranges,
                       const std::vector<RemotePtr>& islands, std::chrono::milliseconds timeout,
                       const std::filesystem::path& park_journal) {
  if (ranges.empty()) return {};
  std::vector<GuardedRange> guarded;
  for (const RemoteRange& r : ranges) guarded.push_back({r, fmt::format("mapping at {}", r.start)});
  auto world = StopWorld(pid, memory, guarded, timeout, park_journal);
  if (!world) return std::unexpected(std::move(world.error()));
  auto injection = FindInjectionSite(memory, maps);
  if (!injection) return std::unexpected(std::move(injection.error()));
  RemoteSyscall sys(world->tracee, world->tracee.threads().front(), memory, *injection);
  sys.UseStubOf(islands);
  for (const RemoteRange& r : ranges) {
    if (auto st = sys.Munmap(r.start, r.size()); !st) return st;
  }
  if (auto st = sys.Restore(); !st) return st;
  return world->tracee.Detach();
}

}  // namespace patchlab::patchcore::internal
