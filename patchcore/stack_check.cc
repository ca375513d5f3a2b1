#include "patchcore/stack_check.h"

#include <libunwind-ptrace.h>
#include <sys/user.h>

#include <cstring>
#include <functional>
#include <unordered_map>

#include "base/log.h"

// libunwind's search of a .eh_frame_hdr table, the one libunwind-ptrace's
// own find_proc_info ends in. Exported by libunwind-x86_64 (the ptrace and
// coredump libraries call it) but not declared by its headers.
extern "C" int _Ux86_64_dwarf_search_unwind_table(unw_addr_space_t as, unw_word_t ip,
                                                  unw_dyn_info_t* di, unw_proc_info_t* pi,
                                                  int need_unwind_info, void* arg);

namespace patchlab::patchcore {
namespace {

constexpr int kMaxFrames = 256;
constexpr uint64_t kCachePage = 4096;

// Our unwinding context: libunwind-ptrace's own for everything but memory,
// which we read a page at a time from /proc/PID/mem.
struct UnwindContext {
  void* upt;
  const user_regs_struct* regs;  // the thread being unwound
  const ProcessMemory* memory;
  std::unordered_map<uint64_t, std::vector<uint8_t>> pages;
  // The UPT that serves `ip`: one per module, so each module's unwind tables
  // are loaded once, not again every time a stack crosses into another module.
  std::function<void*(uint64_t ip)> upt_for;
  // The index of a given module that holds `addr`, or null.
  std::function<const EhFrameIndex*(uint64_t addr)> index_for;
};

// libunwind-ptrace calls back into the address space's accessors with its
// own argument (the UPT info), so the context is found through this instead.
// (PutUnwindInfo frees what either search allocated, whichever UPT it gets.)
thread_local UnwindContext* current_context = nullptr;

int FindProcInfo(unw_addr_space_t as, unw_word_t ip, unw_proc_info_t* pi, int need, void* arg) {
  if (const EhFrameIndex* index = current_context->index_for(ip)) {
    // The table as libunwind-ptrace describes it after finding it in the
    // file: runtime addresses, entries relative to the header (so no load
    // offset on top).
    unw_dyn_info_t di;
    std::memset(&di, 0, sizeof di);
    di.format = UNW_INFO_FORMAT_REMOTE_TABLE;
    di.start_ip = index->module.start.addr();
    di.end_ip = index->module.end.addr();
    di.u.rti.segbase = index->header;
    di.u.rti.table_data = index->table;
    di.u.rti.table_len = index->fde_count * 8 / sizeof(unw_word_t);
    return _Ux86_64_dwarf_search_unwind_table(as, ip, &di, pi, need, arg);
  }
  return _UPT_find_proc_info(as, ip, pi, need, current_context->upt_for(ip));
}
void PutUnwindInfo(unw_addr_space_t as, unw_proc_info_t* pi, void* /*arg*/) {
  _UPT_put_unwind_info(as, pi, current_context->upt);
}
int GetDynInfoListAddr(unw_addr_space_t as, unw_word_t* addr, void* /*arg*/) {
  return _UPT_get_dyn_info_list_addr(as, addr, current_context->upt);
}
int AccessMem(unw_addr_space_t as, unw_word_t addr, unw_word_t* val, int write, void* /*arg*/) {
  UnwindContext* ctx = current_context;
  if (write) return _UPT_access_mem(as, addr, val, write, ctx->upt);
  if (const EhFrameIndex* index = ctx->index_for(addr)) {
    if (auto word = index->ReadWord(addr)) {
      *val = *word;
      return 0;
    }
  }
  uint64_t page = addr & ~(kCachePage - 1);
  uint64_t off = addr - page;
  if (off + sizeof(unw_word_t) > kCachePage) {
    auto bytes = ctx->memory->Read(RemotePtr(addr), sizeof(unw_word_t));
    if (!bytes) return -UNW_EINVAL;
    std::memcpy(val, bytes->data(), sizeof(unw_word_t));
    return 0;
  }
  auto it = ctx->pages.find(page);
  if (it == ctx->pages.end()) {
    auto bytes = ctx->memory->Read(RemotePtr(page), kCachePage);
    if (!bytes) return _UPT_access_mem(as, addr, val, write, ctx->upt);
    it = ctx->pages.emplace(page, std::move(*bytes)).first;
  }
  std::memcpy(val, it->second.data() + off, sizeof(unw_word_t));
  return 0;
}
// Registers come from the thread's GETREGS snapshot: one UPT (and its cache
// of unwind tables) then serves every thread of the process.
int AccessReg(unw_addr_space_t, unw_regnum_t reg, unw_word_t* val, int write, void* /*arg*/) {
  if (write) return -UNW_EREADONLYREG;
  const user_regs_struct& r = *current_context->regs;
  switch (reg) {
    case UNW_X86_64_RAX:
      *val = r.rax;
      return 0;
    case UNW_X86_64_RDX:
      *val = r.rdx;
      return 0;
    case UNW_X86_64_RCX:
      *val = r.rcx;
      return 0;
    case UNW_X86_64_RBX:
      *val = r.rbx;
      return 0;
    case UNW_X86_64_RSI:
      *val = r.rsi;
      return 0;
    case UNW_X86_64_RDI:
      *val = r.rdi;
      return 0;
    case UNW_X86_64_RBP:
      *val = r.rbp;
      return 0;
    case UNW_X86_64_RSP:
      *val = r.rsp;
      return 0;
    case UNW_X86_64_R8:
      *val = r.r8;
      return 0;
    case UNW_X86_64_R9:
      *val = r.r9;
      return 0;
    case UNW_X86_64_R10:
      *val = r.r10;
      return 0;
    case UNW_X86_64_R11:
      *val = r.r11;
      return 0;
    case UNW_X86_64_R12:
      *val = r.r12;
      return 0;
    case UNW_X86_64_R13:
      *val = r.r13;
      return 0;
    case UNW_X86_64_R14:
      *val = r.r14;
      return 0;
    case UNW_X86_64_R15:
      *val = r.r15;
      return 0;
    case UNW_X86_64_RIP:
      *val = r.rip;
      return 0;
    default:
      return -UNW_EBADREG;
  }
}
int AccessFpreg(unw_addr_space_t, unw_regnum_t, unw_fpreg_t*, int, void* /*arg*/) {
  return -UNW_EBADREG;
}
int Resume(unw_addr_space_t as, unw_cursor_t* c, void* /*arg*/) {
  return _UPT_resume(as, c, current_context->upt);
}
int GetProcName(unw_addr_space_t as, unw_word_t addr, char* buf, size_t len, unw_word_t* off,
                void* /*arg*/) {
  return _UPT_get_proc_name(as, addr, buf, len, off, current_context->upt);
}

unw_accessors_t kAccessors = {FindProcInfo, PutUnwindInfo, GetDynInfoListAddr, AccessMem, AccessReg,
                              AccessFpreg,  Resume,        GetProcName};

}  // namespace

StackChecker::StackChecker(const ModuleSet* modules) {
  unw_addr_space_t as = unw_create_addr_space(&kAccessors, 0);
  unw_set_caching_policy(as, UNW_CACHE_GLOBAL);
  address_space_ = as;
  if (!modules) return;
  all_indexed_ = true;
  for (const LoadedModule& m : modules->modules()) {
    auto index = IndexEhFrame(m);
    if (index) indexes_.push_back(std::move(*index));
    all_indexed_ = all_indexed_ && index.has_value();
  }
}

const EhFrameIndex* StackChecker::IndexFor(uint64_t addr) const {
  for (const EhFrameIndex& index : indexes_) {
    if (index.module.Contains(RemotePtr(addr))) return &index;
  }
  return nullptr;
}

StackChecker::~StackChecker() {
  unw_destroy_addr_space(static_cast<unw_addr_space_t>(address_space_));
  for (auto& [path, upt] : module_upts_) _UPT_destroy(upt);
}

void StackChecker::Prepare(pid_t pid, const ProcessMemory& memory) {
  // With every module indexed there is nothing to load (the vdso is not a
  // file): the maps are read only if a check meets code outside them.
  if (all_indexed_) return;
  auto maps = ProcessMaps::Read(pid);
  if (!maps) return;  // the stop that follows reports a vanished pid
  maps_ = std::move(*maps);
  auto as = static_cast<unw_addr_space_t>(address_space_);
  void* upt = _UPT_create(pid);
  if (!upt) return;
  UnwindContext ctx{upt,
                    nullptr,
                    &memory,
                    {},
                    [&](uint64_t ip) { return UptFor(pid, ip, upt); },
                    [&](uint64_t addr) { return IndexFor(addr); }};
  current_context = &ctx;
  for (const MapEntry& e : maps_->entries()) {
    if (!e.exec || !e.is_file() || IndexFor(e.start.addr())) continue;
    // Looking up any address of the module loads its unwind tables into the
    // module's UPT, where they stay for the checks during the stop.
    unw_proc_info_t pi;
    std::memset(&pi, 0, sizeof pi);
    void* module = UptFor(pid, e.start.addr(), upt);
    if (_UPT_find_proc_info(as, e.start.addr(), &pi, 0, module) == 0) {
      _UPT_put_unwind_info(as, &pi, module);
    }
  }
  current_context = nullptr;
  _UPT_destroy(upt);
}

void* StackChecker::UptFor(pid_t pid, uint64_t ip, void* fallback) {
  const MapEntry* entry = maps_ ? maps_->Find(RemotePtr(ip)) : nullptr;
  if (!entry) {
    // A module mapped since (or the first call): read the maps again.
    auto maps = ProcessMaps::Read(pid);
    if (maps) maps_ = std::move(*maps);
    entry = maps_ ? maps_->Find(RemotePtr(ip)) : nullptr;
  }
  if (!entry || !entry->is_file()) return fallback;
  auto it = module_upts_.find(entry->path);
  if (it == module_upts_.end()) {
    void* upt = _UPT_create(pid);
    if (!upt) return fallback;
    it = module_upts_.emplace(entry->path, upt).first;
  }
  return it->second;
}

Result<std::optional<StackHit>> StackChecker::Check(const Tracee& tracee,
                                                    const ProcessMemory& memory,
                                                    const std::vector<GuardedRange>& ranges) {
  auto hits = Hits(tracee, memory, ranges, tracee.threads(), /*first_only=*/true);
  if (!hits) return std::unexpected(std::move(hits.error()));
  if (hits->empty()) return std::optional<StackHit>();
  return std::optional<StackHit>(hits->front());
}

Result<std::vector<StackHit>> StackChecker::Hits(const Tracee& tracee, const ProcessMemory& memory,
                                                 const std::vector<GuardedRange>& ranges,
                                                 const std::vector<pid_t>& tids, bool first_only) {
  auto as = static_cast<unw_addr_space_t>(address_space_);
  auto find = [&](uint64_t addr) -> const GuardedRange* {
    for (const GuardedRange& r : ranges) {
      if (r.range.Contains(RemotePtr(addr))) return &r;
    }
    return nullptr;
  };
  void* upt = _UPT_create(tracee.pid());
  if (!upt) return Fail(ErrorCode::kInternal, "libunwind: _UPT_create failed");
  UnwindContext ctx{upt,
                    nullptr,
                    &memory,
                    {},
                    [&](uint64_t ip) { return UptFor(tracee.pid(), ip, upt); },
                    [&](uint64_t addr) { return IndexFor(addr); }};
  current_context = &ctx;
  std::vector<StackHit> hits;
  std::optional<Error> failure;
  for (pid_t tid : tids) {
    auto regs = tracee.GetRegs(tid);
    if (!regs) {
      failure = std::move(regs.error());
      break;
    }
    std::optional<StackHit> hit;
    bool inside = false;  // the frame just seen is guarded
    if (const GuardedRange* r = find(regs->rip)) {
      hit = StackHit{tid, RemotePtr(regs->rip), 0, r->name, std::nullopt};
      inside = true;
    }
    ctx.regs = &*regs;
    unw_cursor_t cursor;
    if (unw_init_remote(&cursor, as, &ctx) != 0) {
      Log("patchcore")->debug("thread {}: cannot start unwinding", tid);
    } else {
      for (int frame = 1; frame < kMaxFrames && unw_step(&cursor) > 0; ++frame) {
        unw_word_t ip = 0;
        unw_get_reg(&cursor, UNW_REG_IP, &ip);
        if (ip == 0) break;
        // A return address follows its call: the call itself is at ip - 1.
        const GuardedRange* r = find(ip - 1);
        if (!r) r = find(ip);
        if (r) {
          if (!hit) hit = StackHit{tid, RemotePtr(ip), frame, r->name, std::nullopt};
          if (first_only) break;
          inside = true;
          hit->escape.reset();
        } else if (inside) {
          hit->escape = RemotePtr(ip);
          inside = false;
        }
      }
    }
    if (hit) {
      hits.push_back(std::move(*hit));
      if (first_only) break;
    }
  }
  current_context = nullptr;
  _UPT_destroy(upt);
  if (failure) return std::unexpected(std::move(*failure));
  return hits;
}

}  // namespace patchlab::patchcore
