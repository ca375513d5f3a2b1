#include "patchcore/patcher.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "base/file_util.h"
#include "base/log.h"
#include "patchcore/internal/stop_world.h"
#include "patchcore/island.h"
#include "patchcore/journal.h"
#include "patchcore/module_set.h"
#include "patchcore/patch_loader.h"
#include "patchcore/process_maps.h"
#include "patchcore/process_memory.h"
#include "patchcore/prologue_check.h"
#include "patchcore/remote_syscall.h"

namespace patchlab::patchcore {
namespace {

using Clock = std::chrono::steady_clock;

struct PlannedFunction {
  FunctionMapping mapping;
  RemotePtr entry;
  uint64_t size = 0;
  bool stacked = false;           // the site exists already (another patch)
  PrologueLayout layout;          // for a new site
  std::vector<uint8_t> original;  // for a new site
  RemotePtr new_addr;
};

std::chrono::microseconds Since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t);
}

// The island header: magic, pid, start time. Lets a reader of the process
// alone (without host state) recognise our pages.
std::vector<uint8_t> IslandHeader(pid_t pid, uint64_t start_time) {
  std::vector<uint8_t> h(kIslandHeaderSize, 0);
  std::memcpy(h.data(), kIslandMagic, sizeof kIslandMagic);
  uint64_t p = static_cast<uint64_t>(pid);
  std::memcpy(h.data() + 16, &p, 8);
  std::memcpy(h.data() + 24, &start_time, 8);
  return h;
}

}  // namespace

Result<Patcher> Patcher::Open(pid_t pid) {
  auto store = StateStore::Open(pid);
  if (!store) return std::unexpected(std::move(store.error()));
  return Patcher(pid, std::move(*store));
}

bool Patcher::HasPendingJournal() const {
  std::error_code ec;
  return std::filesystem::exists(store_.journal_path(), ec) ||
         std::filesystem::exists(store_.park_path(), ec);
}

Result<ApplyReport> Patcher::Apply(const PatchPackage& package, const ApplyOptions& options) {
  const Manifest& m = package.manifest;
  auto log = Log("patchcore");
  ApplyReport report;
  report.patch_id = m.id;
  report.seq = m.seq;

  // 1. Package and manifest rules.
  if (!options.allow_unsigned) {
    if (options.pubkey.empty()) {
      return Fail(ErrorCode::kInvalidArgument, "give --pubkey FILE (or --allow-unsigned)");
    }
    if (auto st = VerifyPackage(package, options.pubkey); !st) return std::unexpected(st.error());
  } else if (!package.is_signed()) {
    report.warnings.push_back(
        fmt::format("package {} is unsigned; applied because "
                    "--allow-unsigned was given",
                    m.id));
  }
  if (HasPendingJournal()) {
    return Fail(ErrorCode::kRefused,
                "pid {} has an interrupted operation; run `hotpatch recover` "
                "first",
                pid_);
  }
  auto loaded_state = store_.Load();
  if (!loaded_state) return std::unexpected(std::move(loaded_state.error()));
  const ProcessState& state = *loaded_state;
  if (state.FindPatch(m.id)) {
    return Fail(ErrorCode::kRefused, "patch {} is already live in pid {}", m.id, pid_);
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

  // 2. The target module and its functions, read while the process runs.
  auto maps = ProcessMaps::Read(pid_);
  if (!maps) return std::unexpected(std::move(maps.error()));
  auto memory = ProcessMemory::Open(pid_);
  if (!memory) return std::unexpected(std::move(memory.error()));
  auto modules = ModuleSet::Load(pid_, *maps);
  if (!modules) return std::unexpected(std::move(modules.error()));
  const LoadedModule* target = modules->FindByFileName(m.target_file);
  if (target && target->elf->build_id() != m.target_build_id) {
    return Fail(ErrorCode::kRefused,
                "patch {} is for {} with build-id {}, but pid {} runs {} with build-id {} (rule: "
                "build-ids must match)",
                m.id, m.target_file, m.target_build_id, pid_, target->path,
                target->elf->build_id().empty() ? "(none)" : target->elf->build_id());
  }
  if (!target) target = modules->FindByBuildId(m.target_build_id);
  if (!target) {
    return Fail(ErrorCode::kRefused, "patch {}: pid {} has no module {} with build-id {} loaded",
                m.id, pid_, m.target_file, m.target_build_id);
  }
  auto object_elf = ElfFile::FromBytes(package.object, fmt::format("patch object of {}", m.id));
  if (!object_elf) return std::unexpected(std::move(object_elf.error()));
  auto object_ptr = std::make_shared<const ElfFile>(std::move(*object_elf));
  auto object = PatchObject::Prepare(object_ptr, m, *target, *modules, *memory);
  if (!object) {
    Error e = std::move(object.error());
    if (e.code() == ErrorCode::kUnsupported || e.code() == ErrorCode::kNotFound) {
      return std::unexpected(Error(ErrorCode::kRefused, e.ToString()));
    }
    return std::unexpected(std::move(e));
  }

  std::vector<PlannedFunction> plan;
  std::set<uint64_t> seen_entries;
  for (const FunctionMapping& f : m.functions) {
    PlannedFunction pf;
    pf.mapping = f;
    const ElfSymbol* sym = target->FindDefined(f.old_name);
    if (!sym || (sym->type != SymbolType::kFunc)) {
      return Fail(ErrorCode::kRefused,
                  "function {}: not found as a function in {} (.symtab, .dynsym or a debug file "
                  "by build-id)",
                  f.old_name, target->path);
    }
    if (sym->size == 0) {
      return Fail(ErrorCode::kRefused,
                  "function {}: its size is unknown (rule: the whole function "
                  "must be read)",
                  f.old_name);
    }
    pf.entry = target->Runtime(sym->value);
    pf.size = sym->size;
    if (!seen_entries.insert(pf.entry.addr()).second) {
      return Fail(ErrorCode::kInvalidArgument, "function {} is named twice in patch {}", f.old_name,
                  m.id);
    }
    if (auto fa = object->FunctionAddress(RemotePtr(0), f.new_name); !fa) {
      return Fail(ErrorCode::kRefused, "patch {}: the patch object defines no function {}", m.id,
                  f.new_name);
    }
    if (state.FindSite(pf.entry)) {
      pf.stacked = true;
    } else {
      auto code = memory->Read(pf.entry, pf.size);
      if (!code) return std::unexpected(std::move(code.error()));
      auto layout = CheckPrologue(f.old_name, pf.entry.addr(), *code);
      if (!layout) return std::unexpected(std::move(layout.error()));
      pf.layout = *layout;
      pf.original.assign(code->begin() + layout->patch_offset,
                         code->begin() + layout->patch_offset + layout->patch_size);
    }
    plan.push_back(std::move(pf));
  }
  auto syscall_insn = FindSyscallInstruction(*memory, *maps);
  if (!syscall_insn) return std::unexpected(std::move(syscall_insn.error()));

  std::vector<GuardedRange> guarded;
  for (const PlannedFunction& pf : plan) {
    if (!pf.stacked) {
      guarded.push_back(
          {{pf.entry, pf.entry + static_cast<int64_t>(pf.size)}, pf.mapping.old_name});
    }
  }
  for (const PatchState& p : state.patches) {
    if (replaced.contains(p.id)) guarded.push_back({p.mapping, "patch object of " + p.id});
  }

  // 3. Plan every change while the process runs: where the object and any
  // new island pages go, the relocated image, every slot and entry write.
  // The journal is saved (fsync) before the stop, so the pause holds no disk
  // I/O.
  ProcessMaps free_space = *maps;
  auto object_at = free_space.FindFreeNear(target->range.start, object->map_size());
  if (!object_at)
    object_at = free_space.FindFreeNear(target->range.start, object->map_size(), 1ull << 46);
  if (!object_at)
    return Fail(ErrorCode::kRefused, "pid {}: no free address range for patch {}", pid_, m.id);
  const RemoteRange mapping{*object_at, *object_at + static_cast<int64_t>(object->map_size())};
  free_space.Reserve(mapping);
  const std::vector<uint8_t> image = object->Image(mapping.start);
  report.mapped_bytes = object->map_size();

  PatchState patch;
  patch.id = m.id;
  patch.seq = m.seq;
  patch.package_sha256 = package.sha256;
  patch.depends = m.depends;
  patch.module = target->path;
  patch.mapping = mapping;
  for (const PageProtection& p : object->protections()) {
    if (!(p.prot & PROT_WRITE)) {
      std::string_view bytes(reinterpret_cast<const char*>(image.data()) + p.offset, p.size);
      patch.segments.push_back(
          {mapping.start + static_cast<int64_t>(p.offset), p.size, Sha256Hex(bytes)});
    }
  }

  ProcessState next = state;
  std::vector<RemotePtr> new_islands;
  std::vector<JournalWrite> slot_writes;  // fresh slots nobody jumps to yet
  std::vector<JournalWrite> live;         // what redirects calls
  const std::vector<uint8_t> island_header = IslandHeader(pid_, store_.start_time());
  for (PlannedFunction& pf : plan) {
    auto new_addr = object->FunctionAddress(mapping.start, pf.mapping.new_name);
    if (!new_addr) return std::unexpected(std::move(new_addr.error()));
    pf.new_addr = *new_addr;
    patch.functions.push_back({pf.mapping.old_name, pf.mapping.new_name, pf.entry, pf.new_addr});
    report.functions.push_back({pf.mapping.old_name, pf.entry, pf.new_addr});
    if (pf.stacked) continue;
    RemotePtr patch_at = pf.entry + pf.layout.patch_offset;
    IslandState* island = nullptr;
    for (IslandState& is : next.islands) {
      RemotePtr slot = is.addr + static_cast<int64_t>(kIslandHeaderSize + is.next_slot * kSlotSize);
      if (is.module == target->path &&
          kIslandHeaderSize + (is.next_slot + 1) * kSlotSize <= is.size &&
          EncodeEntryJump(patch_at, slot, pf.layout.patch_size)) {
        island = &is;
        break;
      }
    }
    if (!island) {
      auto where = free_space.FindFreeNear(patch_at, kIslandPageSize);
      if (!where) {
        return Fail(ErrorCode::kRefused, "function {}: no free page within +-2 GiB for its island",
                    pf.mapping.old_name);
      }
      free_space.Reserve({*where, *where + static_cast<int64_t>(kIslandPageSize)});
      next.islands.push_back({*where, kIslandPageSize, target->path, 0});
      new_islands.push_back(*where);
      island = &next.islands.back();
      report.mapped_bytes += kIslandPageSize;
    }
    RemotePtr slot =
        island->addr + static_cast<int64_t>(kIslandHeaderSize + island->next_slot * kSlotSize);
    island->next_slot++;
    std::vector<uint8_t> slot_old(14, 0);
    if (std::find(new_islands.begin(), new_islands.end(), island->addr) == new_islands.end()) {
      auto old_bytes = memory->Read(slot, 14);
      if (!old_bytes) return std::unexpected(std::move(old_bytes.error()));
      slot_old = *old_bytes;
    }
    slot_writes.push_back({slot, slot_old, EncodeSlot(pf.new_addr)});
    auto jump = EncodeSiteJump(patch_at, pf.new_addr, slot, pf.layout.patch_size);
    next.sites.push_back({pf.mapping.old_name, target->path, pf.entry, pf.size, patch_at,
                          pf.original, *jump, slot, island->addr});
    live.push_back({patch_at, pf.original, *jump});
  }
  next.patches.push_back(patch);
  std::erase_if(next.patches, [&](const PatchState& p) { return replaced.contains(p.id); });
  std::vector<RemoteRange> replaced_mappings;
  std::set<uint64_t> touched;
  for (const PlannedFunction& pf : plan) touched.insert(pf.entry.addr());
  for (const PatchState& p : state.patches) {
    if (!replaced.contains(p.id)) continue;
    replaced_mappings.push_back(p.mapping);
    for (const PatchFunctionState& f : p.functions) touched.insert(f.old_addr.addr());
  }
  for (uint64_t e : touched) {
    const SiteState* old_site = state.FindSite(RemotePtr(e));
    if (!old_site) continue;  // a new site, planned above
    auto before = state.LiveTarget(old_site->entry);
    auto after = next.LiveTarget(old_site->entry);
    if (after) {
      if (before && *before == *after) continue;
      live.push_back({old_site->slot + static_cast<int64_t>(kSlotAddressOffset),
                      EncodeAddress(before.value_or(RemotePtr())), EncodeAddress(*after)});
      auto jump = EncodeSiteJump(old_site->patch_at, *after, old_site->slot,
                                 static_cast<uint32_t>(old_site->jump.size()));
      if (jump && *jump != old_site->jump) {
        live.push_back({old_site->patch_at, old_site->jump, *jump});
        for (SiteState& s : next.sites) {
          if (s.entry == old_site->entry) s.jump = *jump;
        }
      }
    } else {
      live.push_back({old_site->patch_at, old_site->jump, old_site->original});
      std::erase_if(next.sites, [&](const SiteState& s) { return s.entry == old_site->entry; });
    }
  }

  Journal journal;
  journal.op = Journal::Op::kApply;
  journal.patch_id = m.id;
  journal.serial = state.serial;
  journal.mapped.push_back(mapping);
  journal.mapped_heads.emplace_back(image.begin(),
                                    image.begin() + std::min<size_t>(64, image.size()));
  for (RemotePtr page : new_islands) {
    journal.mapped.push_back({page, page + static_cast<int64_t>(kIslandPageSize)});
    journal.mapped_heads.push_back(island_header);
  }
  journal.writes = slot_writes;
  journal.writes.insert(journal.writes.end(), live.begin(), live.end());
  const auto journal_path = store_.journal_path();
  if (auto st = SaveJournal(journal_path, journal); !st) return std::unexpected(st.error());

  // 4. Stop the world at a safe moment.
  auto world = internal::StopWorld(pid_, *memory, guarded, options.timeout, store_.park_path());
  if (!world) {
    (void)RemoveJournal(journal_path);
    return std::unexpected(std::move(world.error()));
  }
  Tracee& tracee = world->tracee;
  report.retries = world->retries;
  report.attach = tracee.attach_time();
  for (const PlannedFunction& pf : plan) {
    if (pf.stacked) continue;
    auto now = memory->Read(pf.entry + pf.layout.patch_offset, pf.original.size());
    if (!now || *now != pf.original) {
      (void)tracee.Detach();
      (void)RemoveJournal(journal_path);
      return Fail(ErrorCode::kRefused,
                  "function {}: its code changed while being checked "
                  "(another patcher?)",
                  pf.mapping.old_name);
    }
  }

  RemoteSyscall sys(tracee, tracee.threads().front(), *syscall_insn);
  std::vector<JournalWrite> done;  // writes made so far, for rollback
  std::vector<RemoteRange> made;   // mappings made so far
  // Undo everything made so far; the process runs on its original code.
  auto rollback = [&](Error cause) -> std::unexpected<Error> {
    for (auto it = done.rbegin(); it != done.rend(); ++it) {
      if (auto st = memory->Write(it->addr, it->old_bytes); !st) {
        log->error("rollback of {} in pid {} failed: {}; run `hotpatch recover`", it->addr, pid_,
                   st.error().ToString());
        return std::unexpected(std::move(cause).AddContext("rollback incomplete"));
      }
    }
    for (const RemoteRange& r : made) (void)sys.Munmap(r.start, r.size());
    (void)sys.Restore();
    (void)tracee.Detach();
    (void)RemoveJournal(journal_path);
    if (cause.code() == ErrorCode::kTargetGone) return std::unexpected(std::move(cause));
    return std::unexpected(Error(ErrorCode::kRolledBack,
                                 fmt::format("apply of {} failed part-way and was rolled back: {}",
                                             m.id, cause.ToString())));
  };
  auto write = [&](const JournalWrite& w) -> patchlab::Status {
    if (auto st = memory->Write(w.addr, w.new_bytes); !st) return st;
    done.push_back(w);
    return {};
  };
  auto map_at = [&](RemoteRange r) -> patchlab::Status {
    auto got = sys.Mmap(r.start, r.size(), PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE);
    if (!got) return std::unexpected(std::move(got.error()));
    if (*got != r.start) {
      // A kernel without MAP_FIXED_NOREPLACE treats it as a hint.
      (void)sys.Munmap(*got, r.size());
      return Fail(ErrorCode::kIo, "pid {}: {} is no longer free", pid_, r.start);
    }
    made.push_back(r);
    return {};
  };

  // 5. Map and fill the object and new island pages: nothing refers to them yet.
  if (auto st = map_at(mapping); !st) return rollback(st.error());
  if (auto st = memory->Write(mapping.start, image); !st) return rollback(st.error());
  for (const PageProtection& p : object->protections()) {
    if (auto st = sys.Mprotect(mapping.start + static_cast<int64_t>(p.offset), p.size, p.prot);
        !st) {
      return rollback(st.error());
    }
  }
  for (RemotePtr page : new_islands) {
    if (auto st = map_at({page, page + static_cast<int64_t>(kIslandPageSize)}); !st) {
      return rollback(st.error());
    }
    if (auto st = memory->Write(page, island_header); !st) return rollback(st.error());
  }
  for (const JournalWrite& w : slot_writes) {
    // SAFETY: every thread is stopped, and no jump leads to this slot yet.
    if (auto st = write(w); !st) return rollback(st.error());
  }
  for (RemotePtr page : new_islands) {
    if (auto st = sys.Mprotect(page, kIslandPageSize, PROT_READ | PROT_EXEC); !st) {
      return rollback(st.error());
    }
  }
  // The injection thread gets its own registers back before any live write:
  // a patcher killed from here on leaves every thread able to run.
  if (auto st = sys.Restore(); !st) return rollback(st.error());
  FaultPoint("after-map");

  // 6. The live writes: new entries, stacked slots, sites of replaced patches.
  int count = 0;
  for (const JournalWrite& w : live) {
    // SAFETY: every thread of the process is stopped (Tracee), and the stack
    // check found no thread whose PC or return address lies in a function
    // being replaced or in a patch being superseded, so no thread can resume
    // inside the bytes written here: a function entry (whole instructions)
    // or an island slot's 8-byte address.
    if (auto st = write(w); !st) return rollback(st.error());
    FaultPoint(fmt::format("after-write-{}", ++count));
  }
  next.serial = state.serial + 1;
  if (!replaced_mappings.empty()) {
    // Commit before unmapping: a patcher killed from here on leaves at most
    // an unused mapping behind, never a slot pointing into freed memory.
    if (auto st = store_.Save(next); !st) return rollback(st.error());
    for (const RemoteRange& r : replaced_mappings) {
      if (auto st = sys.Munmap(r.start, r.size()); !st) {
        report.warnings.push_back("leaving a superseded patch mapped: " + st.error().ToString());
      }
    }
  }
  if (auto st = sys.Restore(); !st) return rollback(st.error());
  auto detached = tracee.Detach();
  report.pause = Since(tracee.first_stop());
  if (!detached) return std::unexpected(std::move(detached.error()));
  FaultPoint("before-commit");
  if (auto st = store_.Save(next); !st) {
    return std::unexpected(
        std::move(st.error())
            .AddContext("patch applied but its state could not be saved; run `hotpatch recover`"));
  }
  (void)RemoveJournal(journal_path);
  log->info("pid {}: applied {} (seq {}), pause {} us, {} retries", pid_, m.id, m.seq,
            report.pause.count(), report.retries);
  return report;
}

}  // namespace patchlab::patchcore
