#include "patchcore/internal/apply_plan.h"

#include <sys/mman.h>

#include <algorithm>
#include <memory>
#include <utility>

#include "base/file_util.h"
#include "patchcore/island.h"

namespace patchlab::patchcore::internal {
namespace {

// One old function: found as a sized function of the target, named once
// (`seen_entries`), defined by the patch object; a new site's prologue read
// and checked.
Result<PlannedFunction> PlanFunction(const FunctionMapping& f, const Manifest& m,
                                     const LoadedModule& target, const PatchObject& object,
                                     const ProcessState& state, const ProcessMemory& memory,
                                     std::set<uint64_t>& seen_entries) {
  PlannedFunction pf;
  pf.mapping = f;
  const ElfSymbol* sym = target.FindDefined(f.old_name);
  if (!sym || (sym->type != SymbolType::kFunc)) {
    return Fail(ErrorCode::kRefused,
                "function {}: not found as a function in {} (.symtab, .dynsym or a debug file "
                "by build-id)",
                f.old_name, target.path);
  }
  if (sym->size == 0) {
    return Fail(ErrorCode::kRefused,
                "function {}: its size is unknown (rule: the whole function "
                "must be read)",
                f.old_name);
  }
  pf.entry = target.Runtime(sym->value);
  pf.size = sym->size;
  if (!seen_entries.insert(pf.entry.addr()).second) {
    return Fail(ErrorCode::kInvalidArgument, "function {} is named twice in patch {}", f.old_name,
                m.id);
  }
  if (auto fa = object.FunctionAddress(RemotePtr(0), f.new_name); !fa) {
    return Fail(ErrorCode::kRefused, "patch {}: the patch object defines no function {}", m.id,
                f.new_name);
  }
  if (state.FindSite(pf.entry)) {
    pf.stacked = true;
    return pf;
  }
  auto code = memory.Read(pf.entry, pf.size);
  if (!code) return std::unexpected(std::move(code.error()));
  // The bytes to be saved as original must be the file's: code changed by
  // something else (a debugger's breakpoint, another live patcher, a patch
  // inherited by fork and not adopted) would come back on revert.
  if (auto file = target.elf->ReadAt(sym->value, pf.size); file && *file != *code) {
    return Fail(ErrorCode::kRefused,
                "function {}: its code in pid {} differs from {} on disk (changed by a debugger or "
                "another patcher?) (rule: only unmodified code is patched)",
                f.old_name, memory.pid(), target.path);
  }
  auto layout = CheckPrologue(f.old_name, pf.entry.addr(), *code);
  if (!layout) return std::unexpected(std::move(layout.error()));
  pf.layout = *layout;
  pf.original.assign(code->begin() + layout->patch_offset,
                     code->begin() + layout->patch_offset + layout->patch_size);
  return pf;
}

std::vector<GuardedRange> GuardedRanges(const std::vector<PlannedFunction>& functions,
                                        const ProcessState& state,
                                        const std::set<std::string>& replaced) {
  std::vector<GuardedRange> guarded;
  for (const PlannedFunction& pf : functions) {
    if (!pf.stacked) {
      guarded.push_back(
          {{pf.entry, pf.entry + static_cast<int64_t>(pf.size)}, pf.mapping.old_name});
    }
  }
  for (const PatchState& p : state.patches) {
    if (replaced.contains(p.id)) guarded.push_back({p.mapping, "patch object of " + p.id});
  }
  return guarded;
}

// Chooses where the object goes (near the module, else anywhere), relocates
// it there and describes the patch as the state will record it.
Status PlaceObject(const PatchPackage& package, const LoadedModule& target,
                   const PatchObject& object, ProcessMaps& free_space, pid_t pid, ApplyPlan& plan,
                   PatchState& patch) {
  const Manifest& m = package.manifest;
  auto object_at = free_space.FindFreeNear(target.range.start, object.map_size());
  if (!object_at)
    object_at = free_space.FindFreeNear(target.range.start, object.map_size(), 1ull << 46);
  if (!object_at)
    return Fail(ErrorCode::kRefused, "pid {}: no free address range for patch {}", pid, m.id);
  plan.mapping = {*object_at, *object_at + static_cast<int64_t>(object.map_size())};
  free_space.Reserve(plan.mapping);
  plan.image = object.Image(plan.mapping.start);
  plan.protections = object.protections();
  plan.mapped_bytes = object.map_size();

  patch.id = m.id;
  patch.seq = m.seq;
  patch.package_sha256 = package.sha256;
  patch.depends = m.depends;
  patch.module = target.path;
  patch.mapping = plan.mapping;
  for (const PageProtection& p : object.protections()) {
    if (!(p.prot & PROT_WRITE)) {
      std::string_view bytes(reinterpret_cast<const char*>(plan.image.data()) + p.offset, p.size);
      patch.segments.push_back(
          {plan.mapping.start + static_cast<int64_t>(p.offset), p.size, Sha256Hex(bytes)});
    }
  }
  return {};
}

// An island of `next` with a free slot for a jump at `patch_at`, or a new
// island page near it (reserved in `free_space`).
Result<IslandState*> IslandFor(const PlannedFunction& pf, RemotePtr patch_at,
                               const LoadedModule& target, ProcessMaps& free_space,
                               ApplyPlan& plan) {
  for (IslandState& is : plan.next.islands) {
    RemotePtr slot = is.addr + static_cast<int64_t>(kIslandHeaderSize + is.next_slot * kSlotSize);
    if (is.module == target.path &&
        kIslandHeaderSize + (is.next_slot + 1) * kSlotSize <= std::min(is.size, kIslandSlotsEnd) &&
        EncodeEntryJump(patch_at, slot, pf.layout.patch_size)) {
      return &is;
    }
  }
  auto where = free_space.FindFreeNear(patch_at, kIslandPageSize);
  if (!where) {
    return Fail(ErrorCode::kRefused, "function {}: no free page within +-2 GiB for its island",
                pf.mapping.old_name);
  }
  free_space.Reserve({*where, *where + static_cast<int64_t>(kIslandPageSize)});
  plan.next.islands.push_back({*where, kIslandPageSize, target.path, 0});
  plan.new_islands.push_back(*where);
  plan.mapped_bytes += kIslandPageSize;
  return &plan.next.islands.back();
}

// A new site: a fresh island slot holding the new address, and the entry jump.
Status PlanNewSite(const PlannedFunction& pf, const LoadedModule& target, ProcessMaps& free_space,
                   const ProcessMemory& memory, ApplyPlan& plan) {
  RemotePtr patch_at = pf.entry + pf.layout.patch_offset;
  auto island = IslandFor(pf, patch_at, target, free_space, plan);
  if (!island) return std::unexpected(std::move(island.error()));
  RemotePtr slot =
      (*island)->addr + static_cast<int64_t>(kIslandHeaderSize + (*island)->next_slot * kSlotSize);
  (*island)->next_slot++;
  std::vector<uint8_t> slot_old(14, 0);
  const auto& fresh = plan.new_islands;
  if (std::find(fresh.begin(), fresh.end(), (*island)->addr) == fresh.end()) {
    auto old_bytes = memory.Read(slot, 14);
    if (!old_bytes) return std::unexpected(std::move(old_bytes.error()));
    slot_old = *old_bytes;
  }
  plan.slot_writes.push_back({slot, slot_old, EncodeSlot(pf.new_addr)});
  auto jump = EncodeSiteJump(patch_at, pf.new_addr, slot, pf.layout.patch_size);
  plan.next.sites.push_back({pf.mapping.old_name, target.path, pf.entry, pf.size, patch_at,
                             pf.original, *jump, slot, (*island)->addr});
  plan.live.push_back({patch_at, pf.original, *jump});
  return {};
}

// Sites that exist already (stacked functions, and the functions of the
// patches being superseded): their slot address and entry jump follow the
// new top of the stack, or their original bytes come back when no patch
// replaces them any more.
void PlanExistingSites(const ProcessState& state, const std::set<uint64_t>& touched,
                       ApplyPlan& plan) {
  for (uint64_t e : touched) {
    const SiteState* old_site = state.FindSite(RemotePtr(e));
    if (!old_site) continue;  // a new site, planned by PlanNewSite
    auto before = state.LiveTarget(old_site->entry);
    auto after = plan.next.LiveTarget(old_site->entry);
    if (!after) {
      plan.live.push_back({old_site->patch_at, old_site->jump, old_site->original});
      std::erase_if(plan.next.sites,
                    [&](const SiteState& s) { return s.entry == old_site->entry; });
      continue;
    }
    if (before && *before == *after) continue;
    plan.live.push_back({old_site->slot + static_cast<int64_t>(kSlotAddressOffset),
                         EncodeAddress(before.value_or(RemotePtr())), EncodeAddress(*after)});
    auto jump = EncodeSiteJump(old_site->patch_at, *after, old_site->slot,
                               static_cast<uint32_t>(old_site->jump.size()));
    if (jump && *jump != old_site->jump) {
      plan.live.push_back({old_site->patch_at, old_site->jump, *jump});
      for (SiteState& s : plan.next.sites) {
        if (s.entry == old_site->entry) s.jump = *jump;
      }
    }
  }
}

}  // namespace

Result<std::set<std::string>> CheckStackRules(const Manifest& m, const ProcessState& state,
                                              pid_t pid) {
  if (state.FindPatch(m.id)) {
    return Fail(ErrorCode::kRefused, "patch {} is already live in pid {}", m.id, pid);
  }
  if (!state.patches.empty() && m.seq <= state.MaxSeq()) {
    return Fail(ErrorCode::kRefused,
                "patch {}: sequence number {} is not above the live maximum {} (rule: sequence "
                "numbers only rise)",
                m.id, m.seq, state.MaxSeq());
  }
  for (const std::string& dep : m.depends) {
    if (!state.FindPatch(dep)) {
      return Fail(ErrorCode::kRefused, "patch {} depends on {}, which is not live", m.id, dep);
    }
  }
  std::set<std::string> replaced;
  for (const PatchState& p : state.patches) {
    if (m.replaces_all ||
        std::find(m.replaces.begin(), m.replaces.end(), p.id) != m.replaces.end()) {
      replaced.insert(p.id);
    }
  }
  return replaced;
}

Result<const LoadedModule*> FindTargetModule(const Manifest& m, const ModuleSet& modules,
                                             pid_t pid) {
  // By build-id: the file the process maps, wherever it is and whatever the
  // file at its path is now.
  if (const LoadedModule* target = modules.FindByBuildId(m.target_build_id)) return target;
  if (const LoadedModule* named = modules.FindByFileName(m.target_file)) {
    return Fail(ErrorCode::kRefused,
                "patch {} is for {} with build-id {}, but pid {} runs {} with build-id {} (rule: "
                "build-ids must match)",
                m.id, m.target_file, m.target_build_id, pid, named->path,
                named->elf->build_id().empty() ? "(none)" : named->elf->build_id());
  }
  return Fail(ErrorCode::kRefused, "patch {}: pid {} has no module {} with build-id {} loaded",
              m.id, pid, m.target_file, m.target_build_id);
}

Result<PatchObject> PrepareObject(const std::shared_ptr<const ElfFile>& object_elf,
                                  const Manifest& m, const LoadedModule& target,
                                  const ModuleSet& modules, const ProcessMemory& memory) {
  auto object = PatchObject::Prepare(object_elf, m, target, modules, memory);
  if (!object) {
    Error e = std::move(object.error());
    if (e.code() == ErrorCode::kUnsupported || e.code() == ErrorCode::kNotFound) {
      return std::unexpected(Error(ErrorCode::kRefused, e.ToString()));
    }
    return std::unexpected(std::move(e));
  }
  return object;
}

Result<std::vector<PlannedFunction>> PlanFunctions(const Manifest& m, const LoadedModule& target,
                                                   const PatchObject& object,
                                                   const ProcessState& state,
                                                   const ProcessMemory& memory) {
  std::vector<PlannedFunction> plan;
  std::set<uint64_t> seen_entries;
  for (const FunctionMapping& f : m.functions) {
    auto pf = PlanFunction(f, m, target, object, state, memory, seen_entries);
    if (!pf) return std::unexpected(std::move(pf.error()));
    plan.push_back(std::move(*pf));
  }
  return plan;
}

Result<ApplyPlan> PlanChanges(const PatchPackage& package, const LoadedModule& target,
                              const PatchObject& object, std::vector<PlannedFunction> functions,
                              std::set<std::string> replaced, const ProcessState& state,
                              ProcessMaps free_space, const ProcessMemory& memory,
                              std::vector<uint8_t> island_header, pid_t pid) {
  ApplyPlan plan;
  plan.guarded = GuardedRanges(functions, state, replaced);
  plan.island_header = std::move(island_header);
  plan.next = state;
  PatchState patch;
  if (auto st = PlaceObject(package, target, object, free_space, pid, plan, patch); !st) {
    return std::unexpected(st.error());
  }
  for (PlannedFunction& pf : functions) {
    auto new_addr = object.FunctionAddress(plan.mapping.start, pf.mapping.new_name);
    if (!new_addr) return std::unexpected(std::move(new_addr.error()));
    pf.new_addr = *new_addr;
    patch.functions.push_back({pf.mapping.old_name, pf.mapping.new_name, pf.entry, pf.new_addr});
    plan.reports.push_back({pf.mapping.old_name, pf.entry, pf.new_addr});
    if (pf.stacked) continue;
    if (auto st = PlanNewSite(pf, target, free_space, memory, plan); !st) {
      return std::unexpected(st.error());
    }
  }
  plan.next.patches.push_back(std::move(patch));
  std::erase_if(plan.next.patches, [&](const PatchState& p) { return replaced.contains(p.id); });
  std::set<uint64_t> touched;
  for (const PlannedFunction& pf : functions) touched.insert(pf.entry.addr());
  for (const PatchState& p : state.patches) {
    if (!replaced.contains(p.id)) continue;
    plan.replaced_mappings.push_back(p.mapping);
    for (const PatchFunctionState& f : p.functions) touched.insert(f.old_addr.addr());
  }
  PlanExistingSites(state, touched, plan);
  plan.next.serial = state.serial + 1;
  plan.functions = std::move(functions);
  plan.replaced = std::move(replaced);
  return plan;
}

Journal JournalFor(const ApplyPlan& plan, const std::string& patch_id, uint64_t serial) {
  Journal journal;
  journal.op = Journal::Op::kApply;
  journal.patch_id = patch_id;
  journal.serial = serial;
  journal.mapped.push_back(plan.mapping);
  journal.mapped_heads.emplace_back(plan.image.begin(),
                                    plan.image.begin() + std::min<size_t>(64, plan.image.size()));
  for (RemotePtr page : plan.new_islands) {
    journal.mapped.push_back({page, page + static_cast<int64_t>(kIslandPageSize)});
    journal.mapped_heads.push_back(plan.island_header);
  }
  journal.writes = plan.slot_writes;
  journal.writes.insert(journal.writes.end(), plan.live.begin(), plan.live.end());
  return journal;
}

}  // namespace patchlab::patchcore::internal
