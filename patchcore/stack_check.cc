#include "patchcore/stack_check.h"

#include <libunwind-ptrace.h>

#include <cstring>
#include <unordered_map>

#include "base/log.h"

namespace patchlab::patchcore {
namespace {

constexpr int kMaxFrames = 256;
constexpr uint64_t kCachePage = 4096;

// Our unwinding context: libunwind-ptrace's own for everything but memory,
// which we read a page at a time from /proc/PID/mem.
struct UnwindContext {
  void* upt;
  const ProcessMemory* memory;
  std::unordered_map<uint64_t, std::vector<uint8_t>> pages;
};

// libunwind-ptrace calls back into the address space's accessors with its
// own argument (the UPT info), so the context is found through this instead.
thread_local UnwindContext* current_context = nullptr;

int FindProcInfo(unw_addr_space_t as, unw_word_t ip, unw_proc_info_t* pi, int need, void* /*arg*/) {
  return _UPT_find_proc_info(as, ip, pi, need, current_context->upt);
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
int AccessReg(unw_addr_space_t as, unw_regnum_t reg, unw_word_t* val, int write, void* /*arg*/) {
  return _UPT_access_reg(as, reg, val, write, current_context->upt);
}
int AccessFpreg(unw_addr_space_t as, unw_regnum_t reg, unw_fpreg_t* val, int write, void* /*arg*/) {
  return _UPT_access_fpreg(as, reg, val, write, current_context->upt);
}
int Resume(unw_addr_space_t as, unw_cursor_t* c, void* /*arg*/) {
  return _UPT_resume(as, c, current_context->upt);
}
int GetProcName(unw_addr_space_t as, unw_word_t addr, char* buf, size_t len, unw_word_t* off,
                void* /*arg*/) {
  return _UPT_get_proc_name(as, addr, buf, len, off, current_context->upt);
}

unw_accessors_t kAccessors = {FindProcInfo, PutUnwindInfo, GetDynInfoListAddr, AccessMem,
                              AccessReg,    AccessFpreg,   Resume,             GetProcName};

}  // namespace

StackChecker::StackChecker() {
  unw_addr_space_t as = unw_create_addr_space(&kAccessors, 0);
  unw_set_caching_policy(as, UNW_CACHE_GLOBAL);
  address_space_ = as;
}

StackChecker::~StackChecker() {
  unw_destroy_addr_space(static_cast<unw_addr_space_t>(address_space_));
}

Result<std::optional<StackHit>> StackChecker::Check(const Tracee& tracee,
                                                    const ProcessMemory& memory,
                                                    const std::vector<GuardedRange>& ranges) {
  auto as = static_cast<unw_addr_space_t>(address_space_);
  auto find = [&](uint64_t addr) -> const GuardedRange* {
    for (const GuardedRange& r : ranges) {
      if (r.range.Contains(RemotePtr(addr))) return &r;
    }
    return nullptr;
  };
  for (pid_t tid : tracee.threads()) {
    auto regs = tracee.GetRegs(tid);
    if (!regs) return std::unexpected(std::move(regs.error()));
    if (const GuardedRange* r = find(regs->rip)) {
      return StackHit{tid, RemotePtr(regs->rip), 0, r->name};
    }
    UnwindContext ctx{_UPT_create(tid), &memory, {}};
    if (!ctx.upt) return Fail(ErrorCode::kInternal, "libunwind: _UPT_create failed");
    current_context = &ctx;
    unw_cursor_t cursor;
    std::optional<StackHit> hit;
    if (unw_init_remote(&cursor, as, &ctx) == 0) {
      for (int frame = 1; frame < kMaxFrames && unw_step(&cursor) > 0; ++frame) {
        unw_word_t ip = 0;
        unw_get_reg(&cursor, UNW_REG_IP, &ip);
        if (ip == 0) break;
        // A return address follows its call: the call itself is at ip - 1.
        const GuardedRange* r = find(ip - 1);
        if (!r) r = find(ip);
        if (r) {
          hit = StackHit{tid, RemotePtr(ip), frame, r->name};
          break;
        }
      }
    } else {
      Log("patchcore")->debug("thread {}: cannot start unwinding", tid);
    }
    current_context = nullptr;
    _UPT_destroy(ctx.upt);
    if (hit) return hit;
  }
  return std::optional<StackHit>();
}

}  // namespace patchlab::patchcore
