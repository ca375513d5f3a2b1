// The patch core's calls as both cell sequences make them (the lab's own
// targets in runner_cell, real applications in runner_app_cell): `hotpatch
// apply|revert|verify --json` on one process of the machine, with the lab's
// timeouts, and the answer read the way the figures need it.
//
// Thread-safety: as the CellGuest they are given (one cell's thread).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "harness/lab/internal/runner_figures.h"
#include "harness/lab/internal/runner_guest.h"

namespace patchlab::harness::internal {

// How long a revert or verify may take, and an apply beyond its own timeout
// (which it may use up to four times: attach, quiesce retries).
inline constexpr std::chrono::milliseconds kHotpatchCallTimeout{60000};

// `hotpatch apply --pid PID --pubkey PUBKEY --timeout MS PACKAGE`. A non-zero
// exit is a result; the Result fails only when the machine's call does.
Result<HotpatchResult> HotpatchApply(CellGuest& guest, pid_t pid, const std::string& package,
                                     const std::string& pubkey, std::chrono::milliseconds timeout);
// `hotpatch revert --pid PID PATCH_ID`.
Result<HotpatchResult> HotpatchRevert(CellGuest& guest, pid_t pid, const std::string& patch_id);
// `hotpatch verify --pid PID`.
Result<HotpatchResult> HotpatchVerify(CellGuest& guest, pid_t pid);

// What the patch core answered, as the figures read it: hotpatch's exit code
// contract (0 done, 2 usage, 3 refused, 4 rolled back, 5 target gone; -1 when
// hotpatch itself died) and, for an apply that succeeded, its own pause
// figure: the time the process was stopped.
PatchCall ToPatchCall(PatchCall::Op op, const HotpatchResult& r);

// `json[key]` when it is a number; nullopt otherwise (not an object, absent).
std::optional<double> JsonNumber(const nlohmann::json& json, const char* key);

}  // namespace patchlab::harness::internal
