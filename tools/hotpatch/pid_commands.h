// The per-process commands of hotpatch (and keygen, pack): apply, revert,
// status, verify and recover --pid PID. See docs/hotpatch.md.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace patchlab::hotpatch {

int CmdKeygen(const std::string& out);

struct PackArgs {
  std::string target, object, id, key, out;
  uint64_t seq = 0;
  std::vector<std::string> funcs, refs, depends;
  std::string replaces;
};
int CmdPack(const PackArgs& a);

struct ApplyArgs {
  pid_t pid = 0;
  std::string pubkey, package;
  bool allow_unsigned = false, json = false;
  int64_t timeout_ms = 2000;
};
int CmdApply(const ApplyArgs& a);
int CmdRevert(pid_t pid, const std::string& id, bool all, bool json, int64_t timeout_ms);
int CmdStatus(pid_t pid, bool json);
int CmdVerify(pid_t pid, bool json);
int CmdRecover(pid_t pid);

}  // namespace patchlab::hotpatch
