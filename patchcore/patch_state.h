// The live patch stack of one process, and where it is kept.
//
// ProcessState is what the host knows about a patched process: its patches in
// stack order (the last is on top), the patched sites (one per function, with
// the original bytes), and the island pages. StateStore keeps it as JSON in
// ROOT/PID-STARTTIME/state.json (0600, folder 0700), keyed by the process start
// time as well as the pid so a recycled pid is never mistaken for the patched
// process, and holds an exclusive lock on that folder while a Patcher works.
// ROOT is $HOTPATCH_STATE_DIR or /run/hotpatch.
//
// Thread-safety: value types; a StateStore belongs to one thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/scoped_fd.h"
#include "patchcore/remote_ptr.h"

namespace patchlab::patchcore {

struct SiteState {
  std::string function;
  std::string module;
  RemotePtr entry;                // the function's first byte
  uint64_t size = 0;              // the function's size
  RemotePtr patch_at;             // where the jump is written (after an endbr64)
  std::vector<uint8_t> original;  // bytes the jump replaced
  std::vector<uint8_t> jump;      // the jump as written
  RemotePtr slot;                 // island slot the jump goes to
  RemotePtr island;               // island page holding the slot
};

struct SegmentState {
  RemotePtr addr;
  uint64_t size = 0;
  std::string sha256;  // of the bytes as written (read-only segments only)
};

struct PatchFunctionState {
  std::string name;      // old function in the target
  std::string new_name;  // in the patch object
  RemotePtr old_addr;
  RemotePtr new_addr;
};

struct PatchState {
  std::string id;
  uint64_t seq = 0;
  std::string package_sha256;
  std::string module;
  RemoteRange mapping;
  std::vector<SegmentState> segments;
  std::vector<PatchFunctionState> functions;
  std::vector<std::string> depends;  // ids this patch needs live (revert keeps them)
};

struct IslandState {
  RemotePtr addr;
  uint64_t size = 0;
  std::string module;
  uint64_t next_slot = 0;  // slots handed out so far
};

struct ProcessState {
  pid_t pid = 0;
  uint64_t start_time = 0;
  uint64_t serial = 0;              // bumped by every committed apply or revert
  std::vector<PatchState> patches;  // bottom to top
  std::vector<SiteState> sites;
  std::vector<IslandState> islands;

  std::string ToJson() const;
  static Result<ProcessState> FromJson(std::string_view json, std::string_view origin);

  const PatchState* FindPatch(std::string_view id) const;
  SiteState* FindSite(RemotePtr entry);
  const SiteState* FindSite(RemotePtr entry) const;
  // Where the site at `entry` must jump: the new function of the topmost patch
  // that replaces it; nullopt when no patch does (the original code runs).
  std::optional<RemotePtr> LiveTarget(RemotePtr entry) const;
  uint64_t MaxSeq() const;
};

class StateStore {
 public:
  // The store of `pid`, locked. kTargetGone when the pid does not exist.
  static Result<StateStore> Open(pid_t pid);

  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path journal_path() const { return dir_ / "journal.json"; }
  // The spin traps StopWorld has set while it waits for busy threads.
  std::filesystem::path park_path() const { return dir_ / "park.json"; }
  uint64_t start_time() const { return start_time_; }

  // The saved state; an empty stack when none was saved.
  Result<ProcessState> Load() const;
  Status Save(const ProcessState& state) const;

 private:
  pid_t pid_ = 0;
  uint64_t start_time_ = 0;
  std::filesystem::path dir_;
  ScopedFd lock_;
};

std::filesystem::path StateRoot();
std::string HexBytes(const std::vector<uint8_t>& bytes);
Result<std::vector<uint8_t>> ParseHexBytes(std::string_view hex);

}  // namespace patchlab::patchcore
