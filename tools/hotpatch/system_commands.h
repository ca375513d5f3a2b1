// The system-wide commands of hotpatch: apply, revert, status, verify and
// recover --system, over every process that maps a patch's module (or has a
// recorded stack). See docs/hotpatch.md.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

namespace patchlab::hotpatch {

struct SystemArgs {
  std::string pubkey, package, id;
  bool allow_unsigned = false, json = false, all_or_nothing = false;
  int64_t timeout_ms = 2000;  // per process
  int jobs = 0;               // 0: one per CPU
  std::string follow;         // a duration; empty: no following
  std::optional<pid_t> descendants_of;
};

// Exit codes: 0 every process done (vanished ones included); 3 some refused
// (or could not be inspected) with nothing changed in them, the rest done;
// 4 any rolled back, or a verify mismatch; 2 and 3 also as for --pid.
int CmdApplySystem(const SystemArgs& a);
int CmdRevertSystem(const SystemArgs& a);
int CmdStatusSystem(const SystemArgs& a);
int CmdVerifySystem(const SystemArgs& a);
int CmdRecoverSystem(const SystemArgs& a);

}  // namespace patchlab::hotpatch
