#include "metrics/app_summary.h"

#include <fmt/format.h>

#include <map>

namespace patchlab::metrics {

std::string AppSummary::Word() const {
  if (crashes > 0) return "crashes";
  if (fail > 0) return "fails";
  if (not_hotpatchable > 0) return "needs a restart";
  if (pass > 0) return "ok";
  return "not run";
}

std::vector<AppSummary> SummarizeByApplication(const std::vector<CellResult>& cells) {
  std::vector<AppSummary> out;
  for (const CellResult& c : cells) {
    std::string name = c.application.empty() ? "scenario " + c.key.scenario : c.application;
    AppSummary* s = nullptr;
    for (AppSummary& a : out) {
      if (a.application == name) s = &a;
    }
    if (s == nullptr) {
      out.push_back(AppSummary{name});
      s = &out.back();
    }
    ++s->cells;
    s->crashes += c.TotalCrashes();
    switch (c.verdict) {
      case Verdict::kPass:
        ++s->pass;
        break;
      case Verdict::kFail:
        ++s->fail;
        break;
      case Verdict::kNotHotpatchable:
        ++s->not_hotpatchable;
        break;
      case Verdict::kInfraError:
        ++s->infra_error;
        break;
    }
  }
  return out;
}

std::string AppSummaryLine(const std::vector<AppSummary>& apps) {
  std::string out;
  for (const AppSummary& a : apps) {
    if (!out.empty()) out += ", ";
    out +=
        fmt::format("{} {} ({} cell{})", a.application, a.Word(), a.cells, a.cells == 1 ? "" : "s");
  }
  return out;
}

std::vector<PatchAppSummary> SummarizeByPatchAndApplication(const std::vector<CellResult>& cells) {
  std::vector<std::string> order;
  std::map<std::string, std::vector<CellResult>> by_patch;
  for (const CellResult& c : cells) {
    auto [it, fresh] = by_patch.try_emplace(c.key.patch_id);
    if (fresh) order.push_back(c.key.patch_id);
    it->second.push_back(c);
  }
  std::vector<PatchAppSummary> out;
  for (const std::string& id : order) {
    out.push_back({id, SummarizeByApplication(by_patch[id])});
  }
  return out;
}

}  // namespace patchlab::metrics
