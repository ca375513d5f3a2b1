#include "harness/lab/internal/patch_calls.h"

#include <utility>
#include <vector>

namespace patchlab::harness::internal {

Result<HotpatchResult> HotpatchApply(CellGuest& guest, pid_t pid, const std::string& package,
                                     const std::string& pubkey, std::chrono::milliseconds timeout) {
  return guest.Hotpatch("apply",
                        {"--pid", std::to_string(pid), "--pubkey", pubkey, "--timeout",
                         std::to_string(timeout.count()), package},
                        timeout * 4 + kHotpatchCallTimeout);
}

Result<HotpatchResult> HotpatchRevert(CellGuest& guest, pid_t pid, const std::string& patch_id) {
  return guest.Hotpatch("revert", {"--pid", std::to_string(pid), patch_id}, kHotpatchCallTimeout);
}

Result<HotpatchResult> HotpatchVerify(CellGuest& guest, pid_t pid) {
  return guest.Hotpatch("verify", {"--pid", std::to_string(pid)}, kHotpatchCallTimeout);
}

std::optional<double> JsonNumber(const nlohmann::json& json, const char* key) {
  if (!json.is_object() || !json.contains(key) || !json[key].is_number()) return std::nullopt;
  return json[key].get<double>();
}

PatchCall ToPatchCall(PatchCall::Op op, const HotpatchResult& r) {
  PatchCall call{op, r.exited ? r.exit_code : -1, std::nullopt,
                 r.exited ? r.stderr_data : "hotpatch died by a signal: " + r.stderr_data};
  if (op == PatchCall::Op::kApply && call.exit_code == 0)
    call.pause_us = JsonNumber(r.json, "pause_us");
  return call;
}

}  // namespace patchlab::harness::internal
