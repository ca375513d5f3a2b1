// ApplyPlan: everything one apply will change in a process, decided while
// the process runs, before any thread is stopped: which patches it
// supersedes, where the patch object and any new island pages go, the
// relocated image, every slot and entry write, and the state to commit.
//
// Each step checks one rule and fails with kRefused (nothing changed) naming
// the function and the rule, kInvalidArgument for a malformed package, or the
// error of the read that failed.
//
// Thread-safety: value types and functions without shared state.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "base/error.h"
#include "patchcore/journal.h"
#include "patchcore/module_set.h"
#include "patchcore/patch_loader.h"
#include "patchcore/patch_package.h"
#include "patchcore/patch_state.h"
#include "patchcore/patcher.h"
#include "patchcore/process_maps.h"
#include "patchcore/process_memory.h"
#include "patchcore/prologue_check.h"
#include "patchcore/stack_check.h"

namespace patchlab::patchcore::internal {

// One old function of the manifest, found and checked.
struct PlannedFunction {
  FunctionMapping mapping;
  RemotePtr entry;
  uint64_t size = 0;
  bool stacked = false;           // the site exists already (another patch)
  PrologueLayout layout;          // for a new site
  std::vector<uint8_t> original;  // for a new site
  RemotePtr new_addr;
};

struct ApplyPlan {
  std::vector<PlannedFunction> functions;
  std::set<std::string> replaced;     // ids of live patches this one supersedes
  std::vector<GuardedRange> guarded;  // code no thread may be in at the switch
  RemoteRange mapping;                // where the patch object goes
  std::vector<uint8_t> image;         // the object relocated for `mapping`
  std::vector<PageProtection> protections;
  std::vector<RemotePtr> new_islands;          // island pages to map
  std::vector<uint8_t> island_header;          // what each new island page starts with
  std::vector<JournalWrite> slot_writes;       // fresh slots nobody jumps to yet
  std::vector<JournalWrite> live;              // what redirects calls
  std::vector<RemoteRange> replaced_mappings;  // superseded patch objects, freed after the switch
  std::vector<FunctionReport> reports;
  uint64_t mapped_bytes = 0;
  ProcessState next;  // the state to commit
};

// The manifest against the live stack: not live yet, sequence number above
// the live maximum, every `depends` live. Returns the ids it supersedes.
Result<std::set<std::string>> CheckStackRules(const Manifest& m, const ProcessState& state,
                                              pid_t pid);

// The module the patch is for: the one with the manifest's build-id. kRefused
// naming both build-ids when only a module of that file name is loaded.
Result<const LoadedModule*> FindTargetModule(const Manifest& m, const ModuleSet& modules,
                                             pid_t pid);

// The patch object (`object`, decoded) with its symbols resolved against the
// process. A symbol that cannot be resolved or a construct that is not
// supported is kRefused.
Result<PatchObject> PrepareObject(const std::shared_ptr<const ElfFile>& object, const Manifest& m,
                                  const LoadedModule& target, const ModuleSet& modules,
                                  const ProcessMemory& memory);

// Every old function found, read and checked (new sites), or found stacked.
Result<std::vector<PlannedFunction>> PlanFunctions(const Manifest& m, const LoadedModule& target,
                                                   const PatchObject& object,
                                                   const ProcessState& state,
                                                   const ProcessMemory& memory);

// Where everything goes and what every write is. `free_space` is the
// process's maps; `island_header` names the process (see island.h).
Result<ApplyPlan> PlanChanges(const PatchPackage& package, const LoadedModule& target,
                              const PatchObject& object, std::vector<PlannedFunction> functions,
                              std::set<std::string> replaced, const ProcessState& state,
                              ProcessMaps free_space, const ProcessMemory& memory,
                              std::vector<uint8_t> island_header, pid_t pid);

// The write-ahead journal of `plan`: every mapping it makes, with its first
// bytes, and every write in the order they are made.
Journal JournalFor(const ApplyPlan& plan, const std::string& patch_id, uint64_t serial);

}  // namespace patchlab::patchcore::internal
