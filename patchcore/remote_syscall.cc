#include "patchcore/remote_syscall.h"

#include <sys/mman.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "base/log.h"

namespace patchlab::patchcore {

Result<RemotePtr> FindSyscallInstruction(const ProcessMemory& memory, const ProcessMaps& maps) {
  std::vector<const MapEntry*> candidates;
  for (const MapEntry& e : maps.entries()) {
    if (e.exec && e.read && e.path == "[vdso]") candidates.insert(candidates.begin(), &e);
  }
  for (const MapEntry& e : maps.entries()) {
    if (e.exec && e.read && e.is_file()) candidates.push_back(&e);
  }
  constexpr uint64_t kChunk = 64 * 1024;
  for (const MapEntry* e : candidates) {
    const uint64_t length = static_cast<uint64_t>(e->end - e->start);
    for (uint64_t off = 0; off < length; off += kChunk - 1) {
      uint64_t n = std::min<uint64_t>(kChunk, length - off);
      auto bytes = memory.Read(e->start + static_cast<int64_t>(off), n);
      if (!bytes) break;
      for (size_t i = 0; i + 1 < bytes->size(); ++i) {
        if ((*bytes)[i] == 0x0f && (*bytes)[i + 1] == 0x05) {
          return e->start + static_cast<int64_t>(off + i);
        }
      }
    }
  }
  return Fail(ErrorCode::kNotFound, "pid {} has no syscall instruction in an executable mapping",
              memory.pid());
}

RemoteSyscall::RemoteSyscall(Tracee& tracee, pid_t tid, RemotePtr syscall_insn)
    : tracee_(tracee), tid_(tid), insn_(syscall_insn) {}

RemoteSyscall::~RemoteSyscall() {
  if (auto st = Restore(); !st) {
    Log("patchcore")->warn("restoring registers of thread {}: {}", tid_, st.error().ToString());
  }
}

Result<int64_t> RemoteSyscall::Call(long nr, std::array<uint64_t, 6> args) {
  if (!saved_) {
    auto regs = tracee_.GetRegs(tid_);
    if (!regs) return std::unexpected(std::move(regs.error()));
    saved_ = *regs;
  }
  user_regs_struct regs = *saved_;
  regs.rip = insn_.addr();
  regs.rax = static_cast<uint64_t>(nr);
  regs.orig_rax = static_cast<uint64_t>(-1);
  regs.rdi = args[0];
  regs.rsi = args[1];
  regs.rdx = args[2];
  regs.r10 = args[3];
  regs.r8 = args[4];
  regs.r9 = args[5];
  if (auto st = tracee_.SetRegs(tid_, regs); !st) return std::unexpected(std::move(st.error()));
  if (auto st = tracee_.SingleStep(tid_); !st) return std::unexpected(std::move(st.error()));
  stepped_ = true;
  auto after = tracee_.GetRegs(tid_);
  if (!after) return std::unexpected(std::move(after.error()));
  if (after->rip != insn_.addr() + 2) {
    return Fail(ErrorCode::kInternal, "injected syscall {} in thread {} ended at {:#x}, not {}", nr,
                tid_, after->rip, insn_ + 2);
  }
  return static_cast<int64_t>(after->rax);
}

Result<RemotePtr> RemoteSyscall::Mmap(RemotePtr hint, uint64_t size, int prot, int flags) {
  auto r = Call(SYS_mmap, {hint.addr(), size, static_cast<uint64_t>(prot),
                           static_cast<uint64_t>(flags), static_cast<uint64_t>(-1), 0});
  if (!r) return std::unexpected(std::move(r.error()));
  if (*r < 0 && *r > -4096) {
    return std::unexpected(Error::FromErrno(
        fmt::format("injected mmap of {} bytes near {} in pid {}", size, hint, tracee_.pid()),
        static_cast<int>(-*r)));
  }
  return RemotePtr(static_cast<uint64_t>(*r));
}

Status RemoteSyscall::Mprotect(RemotePtr addr, uint64_t size, int prot) {
  auto r = Call(SYS_mprotect, {addr.addr(), size, static_cast<uint64_t>(prot), 0, 0, 0});
  if (!r) return std::unexpected(std::move(r.error()));
  if (*r != 0) {
    return std::unexpected(Error::FromErrno(
        fmt::format("injected mprotect {}+{} in pid {}", addr, size, tracee_.pid()),
        static_cast<int>(-*r)));
  }
  return {};
}

Status RemoteSyscall::Munmap(RemotePtr addr, uint64_t size) {
  auto r = Call(SYS_munmap, {addr.addr(), size, 0, 0, 0, 0});
  if (!r) return std::unexpected(std::move(r.error()));
  if (*r != 0) {
    return std::unexpected(
        Error::FromErrno(fmt::format("injected munmap {}+{} in pid {}", addr, size, tracee_.pid()),
                         static_cast<int>(-*r)));
  }
  return {};
}

Status RemoteSyscall::Restore() {
  if (!saved_) return {};
  auto st = tracee_.SetRegs(tid_, *saved_);
  saved_.reset();
  if (!st) return st;
  if (std::exchange(stepped_, false)) return tracee_.ClearStepFlag(tid_);
  return {};
}

}  // namespace patchlab::patchcore
