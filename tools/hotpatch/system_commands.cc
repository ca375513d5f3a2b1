#include "tools/hotpatch/system_commands.h"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>

#include "patchcore/patch_package.h"
#include "patchcore/system_patcher.h"
#include "tools/hotpatch/cli_common.h"

namespace patchlab::hotpatch {
namespace {

using nlohmann::ordered_json;
using patchcore::Outcome;
using patchcore::ProcessOutcome;
using patchcore::SystemReport;

Result<patchcore::SystemOptions> OptionsFor(const SystemArgs& a) {
  patchcore::SystemOptions o;
  o.apply.pubkey = a.pubkey;
  o.apply.allow_unsigned = a.allow_unsigned;
  o.apply.timeout = std::chrono::milliseconds(a.timeout_ms);
  o.filter.descendants_of = a.descendants_of;
  o.jobs = a.jobs > 0 ? a.jobs : 0;
  o.all_or_nothing = a.all_or_nothing;
  if (!a.follow.empty()) {
    auto follow = ParseDuration(a.follow);
    if (!follow) return std::unexpected(follow.error());
    o.follow = *follow;
  }
  if (o.jobs == 0) o.jobs = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return o;
}

int ExitCodeOf(const SystemReport& r) {
  if (r.Count(Outcome::kRolledBack) + r.Count(Outcome::kMismatch) > 0) return kExitRolledBack;
  if (r.Count(Outcome::kRefused) > 0 || !r.uninspected.empty()) return kExitRefused;
  return kExitOk;
}

ordered_json OutcomeJson(const ProcessOutcome& p) {
  ordered_json j = {{"pid", p.pid},
                    {"comm", p.comm},
                    {"result", patchcore::OutcomeName(p.result)},
                    {"reason", p.reason},
                    {"pause_us", p.pause.count()}};
  j["staging_us"] = p.staging.count();
  j["retries"] = p.retries;
  if (p.changed) {
    j["mapped_bytes"] = p.mapped_bytes;
    j["island_bytes"] = p.island_bytes;
  }
  if (p.inherited_from) j["inherited_from"] = p.inherited_from;
  if (p.followed) j["followed"] = true;
  return j;
}

ordered_json ReportJson(const SystemReport& r) {
  ordered_json j;
  if (!r.patch_id.empty()) j["patch_id"] = r.patch_id;
  if (!r.build_id.empty()) {
    j["module"] = r.module;
    j["build_id"] = r.build_id;
  }
  j["processes"] = ordered_json::array();
  for (const ProcessOutcome& p : r.processes) j["processes"].push_back(OutcomeJson(p));
  for (Outcome o :
       {Outcome::kApplied, Outcome::kReverted, Outcome::kVerified, Outcome::kRecovered,
        Outcome::kRefused, Outcome::kRolledBack, Outcome::kVanished, Outcome::kMismatch}) {
    std::string key(patchcore::OutcomeName(o));
    std::replace(key.begin(), key.end(), '-', '_');
    if (key == "ok") key = "verified";
    if (r.Count(o) > 0 || o == Outcome::kApplied || o == Outcome::kRefused) j[key] = r.Count(o);
  }
  j["uninspected"] = ordered_json::array();
  for (const auto& u : r.uninspected) {
    j["uninspected"].push_back({{"pid", u.pid}, {"comm", u.comm}, {"reason", u.reason}});
  }
  j["scanned"] = r.scanned;
  j["wall_us"] = r.wall.count();
  return j;
}

// One summary line, then a line for each process that did not simply succeed.
void PrintReport(const SystemReport& r, Outcome done, const char* verb) {
  const int n = static_cast<int>(r.processes.size());
  std::printf(
      "%s%s%s in %d of %d process(es)%s in %ld ms: %d refused, %d rolled back, %d vanished\n", verb,
      r.patch_id.empty() ? "" : " ", r.patch_id.c_str(), r.Count(done), n,
      r.build_id.empty() ? ""
                         : fmt::format(" mapping {} (build-id {})", r.module, r.build_id).c_str(),
      static_cast<long>(r.wall.count() / 1000), r.Count(Outcome::kRefused),
      r.Count(Outcome::kRolledBack), r.Count(Outcome::kVanished));
  for (const ProcessOutcome& p : r.processes) {
    if (p.result == done && p.reason.empty() && !p.followed) continue;
    std::printf("  pid %d (%s)%s: %s%s%s\n", p.pid, p.comm.c_str(),
                p.followed ? " started later" : "", std::string(OutcomeName(p.result)).c_str(),
                p.reason.empty() ? "" : ": ", p.reason.c_str());
  }
  for (const auto& u : r.uninspected) {
    std::printf("  pid %d (%s): not inspected: %s\n", u.pid, u.comm.c_str(), u.reason.c_str());
  }
  const int other = r.Count(Outcome::kRefused) + static_cast<int>(r.uninspected.size());
  if (other > 0 && r.Count(done) > 0) {
    std::printf("the other %d process(es) are %s\n", r.Count(done),
                std::string(OutcomeName(done)).c_str());
  }
}

int Finish(const Result<SystemReport>& r, const SystemArgs& a, Outcome done, const char* verb,
           const char* command) {
  if (!r) return Report(r.error(), command);
  if (a.json) {
    std::printf("%s\n", ReportJson(*r).dump().c_str());
  } else {
    PrintReport(*r, done, verb);
  }
  return ExitCodeOf(*r);
}

ordered_json StatusJson(const patchcore::SystemStatus& s) {
  ordered_json j;
  j["processes"] = ordered_json::array();
  for (const auto& p : s.processes) {
    ordered_json jp = {
        {"pid", p.pid}, {"comm", p.comm}, {"patches", p.patches}, {"interrupted", p.interrupted}};
    if (p.inherited_from) jp["inherited_from"] = p.inherited_from;
    if (!p.note.empty()) jp["note"] = p.note;
    j["processes"].push_back(std::move(jp));
  }
  j["system_patches"] = ordered_json::array();
  for (const auto& sp : s.patches) {
    ordered_json unpatched = ordered_json::array();
    for (const auto& u : sp.unpatched) unpatched.push_back({{"pid", u.pid}, {"comm", u.comm}});
    j["system_patches"].push_back({{"id", sp.record.id},
                                   {"module", sp.record.module},
                                   {"build_id", sp.record.build_id},
                                   {"running", sp.running},
                                   {"unpatched", std::move(unpatched)}});
  }
  j["uninspected"] = ordered_json::array();
  for (const auto& u : s.uninspected) {
    j["uninspected"].push_back({{"pid", u.pid}, {"comm", u.comm}, {"reason", u.reason}});
  }
  return j;
}

void PrintStatus(const patchcore::SystemStatus& s) {
  if (s.processes.empty()) std::printf("no process runs a patch\n");
  for (const auto& p : s.processes) {
    std::string line =
        fmt::format("pid {} ({}): {}", p.pid, p.comm,
                    p.patches.empty() ? "-" : fmt::format("{}", fmt::join(p.patches, " ")));
    if (p.inherited_from) {
      line += fmt::format(" (inherited from pid {} by fork, not recorded yet)", p.inherited_from);
    }
    if (p.interrupted) line += " (interrupted operation: run `hotpatch recover --system`)";
    if (!p.note.empty()) line += " (" + p.note + ")";
    std::printf("%s\n", line.c_str());
  }
  for (const auto& sp : s.patches) {
    std::printf(
        "system patch %s (%s, build-id %s): %d process(es) run it, %zu map the module "
        "without it%s\n",
        sp.record.id.c_str(), sp.record.module.c_str(), sp.record.build_id.c_str(), sp.running,
        sp.unpatched.size(), sp.unpatched.empty() ? "" : ":");
    for (const auto& u : sp.unpatched) std::printf("  pid %d (%s)\n", u.pid, u.comm.c_str());
  }
  for (const auto& u : s.uninspected) {
    std::printf("pid %d (%s): not inspected: %s\n", u.pid, u.comm.c_str(), u.reason.c_str());
  }
}

}  // namespace

int CmdStatusSystem(const SystemArgs& a) {
  patchcore::ScanFilter filter;
  filter.descendants_of = a.descendants_of;
  auto status = patchcore::StatusSystem(filter);
  if (!status) return Report(status.error(), "status");
  if (a.json) {
    std::printf("%s\n", StatusJson(*status).dump().c_str());
  } else {
    PrintStatus(*status);
  }
  return kExitOk;
}

int CmdApplySystem(const SystemArgs& a) {
  if (a.pubkey.empty() && !a.allow_unsigned) {
    std::fprintf(stderr, "hotpatch apply: error: give --pubkey FILE or --allow-unsigned\n");
    return kExitUsage;
  }
  if (a.all_or_nothing && !a.follow.empty()) {
    std::fprintf(stderr,
                 "hotpatch apply: error: --all-or-nothing judges one round; it cannot be "
                 "combined with --follow\n");
    return kExitUsage;
  }
  auto options = OptionsFor(a);
  if (!options) return Report(options.error(), "apply");
  auto package = patchcore::ReadPackage(a.package);
  if (!package) return Report(package.error(), "apply");
  options->on_followed = [&](const ProcessOutcome& p) {
    std::fprintf(stderr, "hotpatch apply: pid %d (%s) started later: %s%s%s\n", p.pid,
                 p.comm.c_str(), std::string(OutcomeName(p.result)).c_str(),
                 p.reason.empty() ? "" : ": ", p.reason.c_str());
  };
  return Finish(patchcore::ApplySystem(*package, *options), a, Outcome::kApplied, "applied",
                "apply");
}

int CmdRevertSystem(const SystemArgs& a) {
  auto options = OptionsFor(a);
  if (!options) return Report(options.error(), "revert");
  return Finish(patchcore::RevertSystem(a.id, *options), a, Outcome::kReverted, "reverted",
                "revert");
}

int CmdVerifySystem(const SystemArgs& a) {
  auto options = OptionsFor(a);
  if (!options) return Report(options.error(), "verify");
  return Finish(patchcore::VerifySystem(*options), a, Outcome::kVerified, "verified", "verify");
}

int CmdRecoverSystem(const SystemArgs& a) {
  auto options = OptionsFor(a);
  if (!options) return Report(options.error(), "recover");
  return Finish(patchcore::RecoverSystem(*options), a, Outcome::kRecovered, "recovered", "recover");
}

}  // namespace patchlab::hotpatch
