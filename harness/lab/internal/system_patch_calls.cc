#include "harness/lab/internal/system_patch_calls.h"

#include <nlohmann/json.hpp>

#include "harness/lab/internal/patch_calls.h"

namespace patchlab::harness::internal {
namespace {

using nlohmann::json;

std::string Text(const json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
}

pid_t Pid(const json& j) {
  return j.is_object() && j.contains("pid") && j["pid"].is_number_integer() ? j["pid"].get<pid_t>()
                                                                            : 0;
}

}  // namespace

Result<HotpatchResult> HotpatchApplySystem(CellGuest& guest, const std::string& package,
                                           const std::string& pubkey,
                                           std::chrono::milliseconds timeout) {
  return guest.Hotpatch(
      "apply",
      {"--system", "--pubkey", pubkey, "--timeout", std::to_string(timeout.count()), package},
      timeout * 4 + kHotpatchCallTimeout);
}

Result<HotpatchResult> HotpatchRevertSystem(CellGuest& guest, const std::string& patch_id) {
  return guest.Hotpatch("revert", {"--system", patch_id}, kHotpatchCallTimeout);
}

Result<HotpatchResult> HotpatchVerifySystem(CellGuest& guest) {
  return guest.Hotpatch("verify", {"--system"}, kHotpatchCallTimeout);
}

Result<HotpatchResult> HotpatchStatusSystem(CellGuest& guest) {
  return guest.Hotpatch("status", {"--system"}, kHotpatchCallTimeout);
}

int SystemProcess::ExitCode() const {
  if (result == "applied" || result == "reverted" || result == "ok" || result == "verified" ||
      result == "recovered") {
    return 0;
  }
  if (result == "refused") return 3;
  if (result == "rolled-back" || result == "mismatch") return 4;
  if (result == "vanished") return 5;
  return -1;
}

SystemAnswer ReadSystemAnswer(const HotpatchResult& r) {
  SystemAnswer a;
  a.exit_code = r.exited ? r.exit_code : -1;
  const json& j = r.json;
  if (!j.is_object() || !j.contains("processes") || !j["processes"].is_array()) {
    a.message = r.stderr_data.empty() ? r.stdout_data : r.stderr_data;
    if (a.message.empty()) a.message = "hotpatch printed no summary";
    return a;
  }
  for (const json& p : j["processes"]) {
    SystemProcess sp{Pid(p), Text(p, "comm"), Text(p, "result"), Text(p, "reason")};
    sp.pause_us = JsonNumber(p, "pause_us");
    sp.mapped_bytes = JsonNumber(p, "mapped_bytes");
    sp.island_bytes = JsonNumber(p, "island_bytes");
    a.processes.push_back(std::move(sp));
  }
  // A process hotpatch could not even inspect (another tracer, a zombie)
  // stays unpatched: for the lab that is a refusal, with its reason.
  if (j.contains("uninspected") && j["uninspected"].is_array()) {
    for (const json& u : j["uninspected"]) {
      a.processes.push_back(
          {Pid(u), Text(u, "comm"), "refused", "not inspected: " + Text(u, "reason")});
    }
  }
  a.wall_us = JsonNumber(j, "wall_us");
  if (a.processes.empty()) a.message = r.stderr_data;
  return a;
}

std::vector<SystemProcess> UnpatchedBy(const HotpatchResult& status, const std::string& patch_id) {
  std::vector<SystemProcess> out;
  const json& j = status.json;
  if (!j.is_object() || !j.contains("system_patches") || !j["system_patches"].is_array()) {
    return out;
  }
  for (const json& sp : j["system_patches"]) {
    if (Text(sp, "id") != patch_id || !sp.contains("unpatched") || !sp["unpatched"].is_array()) {
      continue;
    }
    for (const json& u : sp["unpatched"]) {
      out.push_back({Pid(u), Text(u, "comm"), "unpatched", ""});
    }
  }
  return out;
}

}  // namespace patchlab::harness::internal
