#include "harness/vm/system_patch_summary.h"

#include <exception>

#include "base/json_util.h"

namespace patchlab::harness {
namespace {

using nlohmann::json;

std::string StringOr(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return {};
  if (!it->is_string()) throw std::invalid_argument(std::string(key) + " is not a string");
  return it->get<std::string>();
}

// Counts hotpatch leaves out when zero (all but applied and refused).
int CountOr(const json& j, const char* key) {
  return j.contains(key) ? JsonInteger<int>(j, key) : 0;
}

SystemProcessResult ProcessOf(const json& p, bool uninspected) {
  if (!p.is_object()) throw std::invalid_argument("a process entry is not an object");
  SystemProcessResult r;
  r.pid = JsonInteger<pid_t>(p, "pid");
  r.comm = StringOr(p, "comm");
  r.reason = StringOr(p, "reason");
  if (uninspected) {
    r.result = "uninspected";
    return r;
  }
  r.result = StringOr(p, "result");
  if (r.result.empty())
    throw std::invalid_argument("process " + std::to_string(r.pid) + " has no result");
  r.pause_us = p.contains("pause_us") ? JsonInteger<int64_t>(p, "pause_us") : 0;
  r.followed = p.value("followed", false);
  r.inherited_from = p.contains("inherited_from") ? JsonInteger<pid_t>(p, "inherited_from") : 0;
  return r;
}

}  // namespace

Result<SystemPatchSummary> ParseSystemPatchSummary(std::string_view json_line,
                                                   std::string_view origin) {
  auto parsed = ParseJson(json_line, origin);
  if (!parsed) return std::unexpected(parsed.error());
  const json& j = *parsed;
  try {
    if (!j.is_object()) throw std::invalid_argument("the summary is not an object");
    if (!j.contains("processes") || !j["processes"].is_array()) {
      throw std::invalid_argument("no processes array");
    }
    SystemPatchSummary s;
    s.patch_id = StringOr(j, "patch_id");
    s.module = StringOr(j, "module");
    s.build_id = StringOr(j, "build_id");
    s.applied = CountOr(j, "applied");
    s.reverted = CountOr(j, "reverted");
    s.refused = CountOr(j, "refused");
    s.rolled_back = CountOr(j, "rolled_back");
    s.vanished = CountOr(j, "vanished");
    s.scanned = CountOr(j, "scanned");
    s.wall_us = j.contains("wall_us") ? JsonInteger<int64_t>(j, "wall_us") : 0;
    for (const json& p : j["processes"]) s.processes.push_back(ProcessOf(p, false));
    for (const json& p : j.value("uninspected", json::array())) {
      s.processes.push_back(ProcessOf(p, true));
      ++s.refused;  // hotpatch counts them as refused (exit 3) but not in "refused"
    }
    return s;
  } catch (const std::exception& e) {
    return Fail(ErrorCode::kParse, "{}: {}", origin, e.what());
  }
}

}  // namespace patchlab::harness
