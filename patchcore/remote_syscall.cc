#include "patchcore/remote_syscall.h"

#include <sys/mman.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "base/log.h"
#include "patchcore/code_cave.h"
#include "patchcore/island.h"
#include "patchcore/journal.h"

namespace patchlab::patchcore {

namespace {

// An address in an executable mapping of the target that holds the bytes
// 0f 05 (`syscall`); the vdso first, then any executable file mapping.
Result<RemotePtr> FindSyscallInstruction(const ProcessMemory& memory, const ProcessMaps& maps) {
  std::vector<const MapEntry*> candidates;
  for (const MapEntry& e : maps.entries()) {
    if (e.exec && e.read && e.path == "[vdso]") candidates.insert(candidates.begin(), &e);
  }
  for (const MapEntry& e : maps.entries()) {
    if (e.exec && e.read && e.is_file()) candidates.push_back(&e);
  }
  constexpr uint64_t kChunk = uint64_t{64} * 1024;
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
  return Fail(ErrorCode::kNotFound,
              "pid {} has neither a code cave nor a syscall instruction in an executable mapping",
              memory.pid());
}

constexpr size_t kSaveAreaBytes = sizeof kSaveAreaMagic + 8 + sizeof(user_regs_struct);
static_assert(kCaveSize == kCaveSaveOffset + kSaveAreaBytes);
static_assert(kSaveAreaBytes <= kSaveAreaSize);

bool HoldsStub(const ProcessMemory& memory, RemotePtr code) {
  auto bytes = memory.Read(code, sizeof kIslandStub);
  return bytes && std::memcmp(bytes->data(), kIslandStub, sizeof kIslandStub) == 0;
}

bool HoldsSaveArea(const ProcessMemory& memory, RemotePtr save_area) {
  auto magic = memory.Read(save_area, sizeof kSaveAreaMagic);
  return magic && std::memcmp(magic->data(), kSaveAreaMagic, sizeof kSaveAreaMagic) == 0;
}

bool WaitsAt(const user_regs_struct& regs, RemotePtr code) {
  return regs.rip >= code.addr() && regs.rip <= code.addr() + sizeof kIslandStub;
}

}  // namespace

Result<InjectionSite> FindInjectionSite(const ProcessMemory& memory, const ProcessMaps& maps) {
  auto caves = FindCodeCaves(memory, maps, CaveState::kFree, /*most=*/1);
  if (!caves.empty()) return InjectionSite{.cave = caves.front()};
  auto insn = FindSyscallInstruction(memory, maps);
  if (!insn) return std::unexpected(std::move(insn.error()));
  Log("patchcore")->debug("pid {}: no code cave; injected calls run from {}", memory.pid(), *insn);
  return InjectionSite{.syscall_insn = *insn};
}

RemoteSyscall::RemoteSyscall(Tracee& tracee, pid_t tid, const ProcessMemory& memory,
                             InjectionSite site)
    : tracee_(tracee), tid_(tid), memory_(memory), site_(site) {}

RemoteSyscall::~RemoteSyscall() {
  if (auto st = Restore(); !st) {
    Log("patchcore")->warn("restoring registers of thread {}: {}", tid_, st.error().ToString());
  }
}

bool RemoteSyscall::UseStub(RemotePtr island) {
  auto head = memory_.Read(island, kIslandStubOffset + sizeof kIslandStub);
  if (!head || std::memcmp(head->data(), kIslandMagic, sizeof kIslandMagic) != 0 ||
      std::memcmp(head->data() + kIslandStubOffset, kIslandStub, sizeof kIslandStub) != 0) {
    return false;
  }
  island_stub_ = Stub{island + static_cast<int64_t>(kIslandStubOffset),
                      island + static_cast<int64_t>(kSaveAreaOffset)};
  return true;
}

void RemoteSyscall::UseStubOf(const std::vector<RemotePtr>& islands,
                              const std::vector<RemoteRange>& going) {
  for (RemotePtr island : islands) {
    auto leaving = [&](const RemoteRange& r) { return r.Contains(island); };
    if (std::none_of(going.begin(), going.end(), leaving) && UseStub(island)) return;
  }
}

Result<std::optional<RemoteSyscall::Stub>> RemoteSyscall::StubForCall() {
  if (island_stub_) return island_stub_;
  if (!site_.cave) return std::optional<Stub>();
  const RemotePtr cave = *site_.cave;
  if (!cave_written_) {
    // SAFETY: the cave lies past the end of its executable segment: no
    // code of the program jumps there, and no thread is there yet.
    if (auto st = memory_.Write(cave + static_cast<int64_t>(kCaveStubOffset), kIslandStub); !st) {
      return std::unexpected(st.error());
    }
    cave_written_ = true;
  }
  return Stub{cave + static_cast<int64_t>(kCaveStubOffset),
              cave + static_cast<int64_t>(kCaveSaveOffset)};
}

Status RemoteSyscall::SaveRegistersAt(RemotePtr save_area) {
  std::vector<uint8_t> area(kSaveAreaBytes);
  uint64_t tid = static_cast<uint64_t>(tid_);
  std::memcpy(area.data(), kSaveAreaMagic, sizeof kSaveAreaMagic);
  std::memcpy(area.data() + sizeof kSaveAreaMagic, &tid, 8);
  std::memcpy(area.data() + sizeof kSaveAreaMagic + 8, &*saved_, sizeof(user_regs_struct));
  // The save area is data no thread runs (an island page's end, a cave's).
  if (auto st = memory_.Write(save_area, area); !st) return st;
  saved_at_ = save_area;
  return {};
}

Status RemoteSyscall::EraseCave() {
  if (!cave_written_) return {};
  // SAFETY: no thread waits at the cave's stub any more (its registers are
  // back, or it waits at an island's stub).
  if (auto st = memory_.Write(*site_.cave, std::vector<uint8_t>(kCaveSize, 0)); !st) return st;
  cave_written_ = false;
  if (saved_at_ == *site_.cave + static_cast<int64_t>(kCaveSaveOffset)) saved_at_.reset();
  return {};
}

Result<int64_t> RemoteSyscall::Call(long nr, std::array<uint64_t, 6> args) {
  if (!saved_) {
    auto regs = tracee_.GetRegs(tid_);
    if (!regs) return std::unexpected(std::move(regs.error()));
    saved_ = *regs;
  }
  auto stub = StubForCall();
  if (!stub) return std::unexpected(std::move(stub.error()));
  const RemotePtr at = *stub ? (*stub)->code : site_.syscall_insn;
  if (*stub && saved_at_ != (*stub)->save_area) {
    if (auto st = SaveRegistersAt((*stub)->save_area); !st) return std::unexpected(st.error());
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
  // Moved on from the cave to an island's stub: the cave is not needed.
  if (island_stub_) {
    if (auto st = EraseCave(); !st) return std::unexpected(st.error());
  }
  if (auto st = tracee_.RunSyscall(tid_); !st) return std::unexpected(std::move(st.error()));
  if (*stub && !island_stub_) FaultPoint("mid-cave-call");
  auto after = tracee_.GetRegs(tid_);
  if (!after) return std::unexpected(std::move(after.error()));
  if (after->rip != at.addr() + 2) {
    return Fail(ErrorCode::kInternal, "injected syscall {} in thread {} ended at {:#x}, not {}", nr,
                tid_, after->rip, at + 2);
  }
  // From the target's own instruction, the thread's registers go back at
  // once; from a stub it may wait at the `jmp .` until the next call.
  if (!*stub) {
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
  if (island_stub_ && range.Contains(island_stub_->code)) {
    // The thread must not wait in a page that goes: it moves to the cave.
    if (auto st = Restore(); !st) return st;
    island_stub_.reset();
    saved_at_.reset();
  }
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
  if (saved_ && std::exchange(moved_, false)) {
    if (auto st = tracee_.SetRegs(tid_, *saved_); !st) return st;
  }
  return EraseCave();
}

std::vector<StrandedStub> FindStrandedStubs(const ProcessMemory& memory, const ProcessMaps& maps) {
  std::vector<StrandedStub> out;
  for (const MapEntry& e : maps.entries()) {
    if (!e.exec || !e.path.empty() || e.end - e.start < static_cast<int64_t>(kIslandPageSize)) {
      continue;
    }
    auto head = memory.Read(e.start, sizeof kIslandMagic);
    if (!head || std::memcmp(head->data(), kIslandMagic, sizeof kIslandMagic) != 0) continue;
    StrandedStub stub{e.start + static_cast<int64_t>(kIslandStubOffset),
                      e.start + static_cast<int64_t>(kSaveAreaOffset)};
    if (HoldsStub(memory, stub.code) && HoldsSaveArea(memory, stub.save_area)) {
      out.push_back(stub);
    }
  }
  for (RemotePtr cave : FindCodeCaves(memory, maps, CaveState::kHolding)) {
    out.push_back({cave + static_cast<int64_t>(kCaveStubOffset),
                   cave + static_cast<int64_t>(kCaveSaveOffset), /*in_cave=*/true});
  }
  return out;
}

Result<StrandedThreads> RestoreStrandedThreads(Tracee& tracee, const ProcessMemory& memory,
                                               const std::vector<StrandedStub>& stubs) {
  StrandedThreads out;
  for (const StrandedStub& stub : stubs) {
    auto area = memory.Read(stub.save_area, kSaveAreaBytes);
    if (!area) return std::unexpected(std::move(area.error()));
    uint64_t saved_tid = 0;
    user_regs_struct regs;
    std::memcpy(&saved_tid, area->data() + sizeof kSaveAreaMagic, 8);
    std::memcpy(&regs, area->data() + sizeof kSaveAreaMagic + 8, sizeof regs);
    bool still_waiting = false;
    for (pid_t tid : tracee.threads()) {
      auto now = tracee.GetRegs(tid);
      if (!now || !WaitsAt(*now, stub.code)) continue;
      if (static_cast<uint64_t>(tid) != saved_tid) {
        still_waiting = true;  // not the thread whose registers these are
        continue;
      }
      if (auto st = tracee.SetRegs(tid, regs); !st) return std::unexpected(st.error());
      ++out.restored;
      out.last_results.push_back(now->rax);
    }
    if (stub.in_cave && !still_waiting) {
      // SAFETY: no thread waits at this stub any more.
      if (auto st = memory.Write(stub.code, std::vector<uint8_t>(kCaveSize, 0)); !st) {
        return std::unexpected(st.error());
      }
    }
  }
  return out;
}

}  // namespace patchlab::patchcore
