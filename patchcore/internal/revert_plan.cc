#include "patchcore/internal/revert_plan.h"

#include <algorithm>
#include <set>

#include "patchcore/island.h"

namespace patchlab::patchcore::internal {
namespace {

// The ids that go; refused when one that stays depends on one of them.
Result<std::set<std::string>> ChooseRemoved(const ProcessState& state,
                                            const std::optional<std::string>& id, pid_t pid) {
  std::set<std::string> removing;
  if (id) {
    if (!state.FindPatch(*id)) {
      return Fail(ErrorCode::kInvalidArgument, "patch {} is not live in pid {}", *id, pid);
    }
    removing.insert(*id);
  } else {
    for (const PatchState& p : state.patches) removing.insert(p.id);
  }
  for (const PatchState& p : state.patches) {
    if (removing.contains(p.id)) continue;
    for (const std::string& dep : p.depends) {
      if (removing.contains(dep)) {
        return Fail(ErrorCode::kRefused,
                    "patch {} is needed by live patch {} (it depends on it); revert {} first, or "
                    "revert --all",
                    dep, p.id, p.id);
      }
    }
  }
  return removing;
}

// Each site follows the new top of its stack: a new slot address and entry
// jump, or its original bytes when no patch replaces it any more.
void PlanSiteWrites(const ProcessState& state, RevertPlan& plan) {
  for (const SiteState& site : state.sites) {
    auto before = state.LiveTarget(site.entry);
    auto after = plan.next.LiveTarget(site.entry);
    if (!after) {
      plan.writes.push_back({site.patch_at, site.jump, site.original});
      std::erase_if(plan.next.sites, [&](const SiteState& s) { return s.entry == site.entry; });
      continue;
    }
    if (before && *before == *after) continue;
    plan.writes.push_back({site.slot + static_cast<int64_t>(kSlotAddressOffset),
                           EncodeAddress(before.value_or(RemotePtr())), EncodeAddress(*after)});
    auto jump =
        EncodeSiteJump(site.patch_at, *after, site.slot, static_cast<uint32_t>(site.jump.size()));
    if (jump && *jump != site.jump) {
      plan.writes.push_back({site.patch_at, site.jump, *jump});
      for (SiteState& s : plan.next.sites) {
        if (s.entry == site.entry) s.jump = *jump;
      }
    }
  }
}

// Island pages no site uses any more are freed too.
void FreeUnusedIslands(RevertPlan& plan) {
  std::erase_if(plan.next.islands, [&](const IslandState& is) {
    bool used = std::any_of(plan.next.sites.begin(), plan.next.sites.end(),
                            [&](const SiteState& s) { return s.island == is.addr; });
    if (!used) {
      RemoteRange r{is.addr, is.addr + static_cast<int64_t>(is.size)};
      plan.to_unmap.push_back(r);
      plan.guarded.push_back({r, "island page"});
    }
    return !used;
  });
}

}  // namespace

Result<RevertPlan> PlanRevert(const ProcessState& state, const std::optional<std::string>& id,
                              pid_t pid) {
  auto removing = ChooseRemoved(state, id, pid);
  if (!removing) return std::unexpected(std::move(removing.error()));
  RevertPlan plan;
  if (removing->empty()) return plan;
  for (auto it = state.patches.rbegin(); it != state.patches.rend(); ++it) {
    if (removing->contains(it->id)) plan.reverted.push_back(it->id);
  }
  plan.next = state;
  std::erase_if(plan.next.patches, [&](const PatchState& p) { return removing->contains(p.id); });
  for (const PatchState& p : state.patches) {
    if (!removing->contains(p.id)) continue;
    plan.to_unmap.push_back(p.mapping);
    plan.guarded.push_back({p.mapping, "patch object of " + p.id});
  }
  PlanSiteWrites(state, plan);
  FreeUnusedIslands(plan);
  plan.next.serial = state.serial + 1;
  return plan;
}

}  // namespace patchlab::patchcore::internal
