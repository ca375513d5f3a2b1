#include "patchcore/remote_syscall.h"

#include <sys/mman.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "base/log.h"
#include "patchcore/island.h"

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

bool RemoteSyscall::UseStub(const ProcessMemory& memory, RemotePtr island) {
  auto head = memory.Read(island, kIslandStubOffset + sizeof kIslandStub);
  if (!head || std::memcmp(head->data(), kIslandMagic, sizeof kIslandMagic) != 0 ||
      std::memcmp(head->data() + kIslandStubOffset, kIslandStub, sizeof kIslandStub) != 0) {
    return false;
  }
  if (stub_ != island) saved_in_stub_ = false;
  stub_ = island;
  memory_ = &memory;
  return true;
}

void RemoteSyscall::UseStubOf(const ProcessMemory& memory, const std::vector<RemotePtr>& islands,
                              const std::vector<RemoteRange>& going) {
  for (RemotePtr island : islands) {
    auto leaving = [&](const RemoteRange& r) { return r.Contains(island); };
    if (std::none_of(going.begin(), going.end(), leaving) && UseStub(memory, island)) return;
  }
}

Status RemoteSyscall::SaveRegistersInStub() {
  std::vector<uint8_t> area(sizeof kSaveAreaMagic + 8 + sizeof(user_regs_struct));
  uint64_t tid = static_cast<uint64_t>(tid_);
  std::memcpy(area.data(), kSaveAreaMagic, sizeof kSaveAreaMagic);
  std::memcpy(area.data() + sizeof kSaveAreaMagic, &tid, 8);
  std::memcpy(area.data() + sizeof kSaveAreaMagic + 8, &*saved_, sizeof(user_regs_struct));
  // The save area is data at the end of our island page; no thread runs it.
  if (auto st = memory_->Write(*stub_ + static_cast<int64_t>(kSaveAreaOffset), area); !st) {
    return st;
  }
  saved_in_stub_ = true;
  return {};
}

Result<int64_t> RemoteSyscall::Call(long nr, std::array<uint64_t, 6> args) {
  if (!saved_) {
    auto regs = tracee_.GetRegs(tid_);
    if (!regs) return std::unexpected(std::move(regs.error()));
    saved_ = *regs;
  }
  const RemotePtr at = stub_ ? *stub_ + static_cast<int64_t>(kIslandStubOffset) : insn_;
  if (stub_ && !saved_in_stub_) {
    if (auto st = SaveRegistersInStub(); !st) return std::unexpected(st.error());
  }
  user_regs_struct regs = *saved_;
  regs.rip = at.addr();
  regs.rax = static_cast<uint64_t>(nr);
  regs.orig_rax = static_cast<uint64_t>(-1);
  regs.rdi = args[0];
  regs.rsi = args[1];
  regs.rdx = args[2];
  regs.r10 = args[3];
  regs.r8 = args[4];
  regs.r9 = args[5];
  if (auto st = tracee_.SetRegs(tid_, regs); !st) return std::unexpected(std::move(st.error()));
  moved_ = true;
  if (auto st = tracee_.RunSyscall(tid_); !st) return std::unexpected(std::move(st.error()));
  auto after = tracee_.GetRegs(tid_);
  if (!after) return std::unexpected(std::move(after.error()));
  if (after->rip != at.addr() + 2) {
    return Fail(ErrorCode::kInternal, "injected syscall {} in thread {} ended at {:#x}, not {}", nr,
                tid_, after->rip, at + 2);
  }
  // From the target's own instruction, the thread's registers go back at
  // once; from the stub it may wait at the `jmp .` until the next call.
  if (!stub_) {
    if (auto st = Restore(); !st) return std::unexpected(st.error());
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
  const RemoteRange range{addr, addr + static_cast<int64_t>(size)};
  std::optional<RemotePtr> stub = stub_;
  if (stub && range.Contains(*stub)) {
    if (auto st = Restore(); !st) return st;
    stub_.reset();
  }
  auto r = Call(SYS_munmap, {addr.addr(), size, 0, 0, 0, 0});
  if (stub && !range.Contains(*stub)) stub_ = stub;
  if (!r) return std::unexpected(std::move(r.error()));
  if (*r != 0) {
    return std::unexpected(
        Error::FromErrno(fmt::format("injected munmap {}+{} in pid {}", addr, size, tracee_.pid()),
                         static_cast<int>(-*r)));
  }
  return {};
}

Status RemoteSyscall::Restore() {
  if (!saved_ || !std::exchange(moved_, false)) return {};
  return tracee_.SetRegs(tid_, *saved_);
}

Result<int> RestoreStrandedThreads(Tracee& tracee, const ProcessMemory& memory,
                                   const ProcessMaps& maps) {
  int restored = 0;
  for (const MapEntry& e : maps.entries()) {
    if (!e.exec || !e.path.empty() || e.end - e.start < static_cast<int64_t>(kIslandPageSize)) {
      continue;
    }
    auto head = memory.Read(e.start, kIslandStubOffset + sizeof kIslandStub);
    if (!head || std::memcmp(head->data(), kIslandMagic, sizeof kIslandMagic) != 0) continue;
    const uint64_t stub = e.start.addr() + kIslandStubOffset;
    auto area = memory.Read(e.start + static_cast<int64_t>(kSaveAreaOffset),
                            sizeof kSaveAreaMagic + 8 + sizeof(user_regs_struct));
    if (!area || std::memcmp(area->data(), kSaveAreaMagic, sizeof kSaveAreaMagic) != 0) continue;
    uint64_t saved_tid = 0;
    user_regs_struct regs;
    std::memcpy(&saved_tid, area->data() + sizeof kSaveAreaMagic, 8);
    std::memcpy(&regs, area->data() + sizeof kSaveAreaMagic + 8, sizeof regs);
    for (pid_t tid : tracee.threads()) {
      auto now = tracee.GetRegs(tid);
      if (!now || static_cast<uint64_t>(tid) != saved_tid) continue;
      if (now->rip < stub || now->rip > stub + sizeof kIslandStub) continue;
      if (auto st = tracee.SetRegs(tid, regs); !st) return std::unexpected(st.error());
      ++restored;
    }
  }
  return restored;
}

}  // namespace patchlab::patchcore
