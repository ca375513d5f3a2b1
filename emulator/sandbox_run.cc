// The run path of a Sandbox: the hooks that watch a run, the call itself
// (Run, CallDuringLoad) and what is read after it (the return value, where
// a fault happened). sandbox.cc has the memory: mapping, freezing, resets.
#include <unicorn/unicorn.h>

#include <algorithm>
#include <cassert>
#include <cstring>

#include "emulator/cpu_model.h"
#include "emulator/entry_page.h"
#include "emulator/internal/sandbox_live.h"
#include "emulator/layout.h"
#include "emulator/run_watchdog.h"
#include "emulator/sandbox.h"
#include "emulator/stubs.h"
#include "emulator/syscalls.h"

namespace patchlab::emulator {
namespace {

void OnBlock(uc_engine* uc, uint64_t addr, uint32_t size, void* user) {
  if (IsEntryCode(addr)) return;  // the register reset, not the function
  auto* live = static_cast<Sandbox::Live*>(user);
  RunOutcome& out = live->out;
  if (++out.blocks > live->max_blocks) {
    live->Decide(Ending::kHang, FaultClass::kNone, addr, "");
    uc_emu_stop(uc);
    return;
  }
  Sandbox::Live::BlockInsns& e =
      live->block_insns[(addr ^ (addr >> 12)) & (live->block_insns.size() - 1)];
  if (e.addr != addr || e.size != size) {
    e.addr = addr;
    e.size = size;
    e.insns = 0;
    // Blocks are only translated from mapped, readable code, so this finds it.
    const uint8_t* code = live->sandbox->HostPtr(addr, size);
    if (code != nullptr) {
      cs_insn* insn = cs_malloc(live->capstone);
      size_t left = size;
      uint64_t at = addr;
      while (left > 0 && cs_disasm_iter(live->capstone, &code, &left, &at, insn)) ++e.insns;
      cs_free(insn, 1);
    }
  }
  out.insns += e.insns;
}

void OnInstruction(uc_engine*, uint64_t addr, uint32_t, void* user) {
  static_cast<Sandbox::Live*>(user)->last_pc = addr;
}

bool OnBadMemory(uc_engine*, uc_mem_type type, uint64_t addr, int size, int64_t value, void* user) {
  auto* live = static_cast<Sandbox::Live*>(user);
  FaultClass f = FaultClass::kReadUnmapped;
  switch (type) {
    case UC_MEM_WRITE_UNMAPPED:
      f = FaultClass::kWriteUnmapped;
      break;
    case UC_MEM_FETCH_UNMAPPED:
      f = FaultClass::kFetchUnmapped;
      break;
    case UC_MEM_WRITE_PROT:
      // The first store to a granule of image data: open it, and make the
      // store here (Unicorn 2.0.1 carries on past the hook without it).
      if (size > 0 && size <= 8) {
        if (uint8_t* host = live->sandbox->OpenImageData(addr, static_cast<uint64_t>(size))) {
          std::memcpy(host, &value, static_cast<size_t>(size));
          return true;
        }
      }
      f = FaultClass::kWriteProtected;
      break;
    case UC_MEM_FETCH_PROT:
      f = FaultClass::kFetchProtected;
      break;
    default:
      break;  // READ_UNMAPPED, READ_PROT
  }
  live->Decide(Ending::kFault, f, addr, "");
  return false;
}

void OnInterrupt(uc_engine* uc, uint32_t intno, void* user) {
  auto* live = static_cast<Sandbox::Live*>(user);
  uint64_t rip = 0;
  uc_reg_read(uc, UC_X86_REG_RIP, &rip);
  if (intno == 0) {
    live->Decide(Ending::kFault, FaultClass::kDivideByZero, rip, "");
  } else if (intno == 6) {
    live->Decide(Ending::kFault, FaultClass::kInvalidInstruction, rip, "");
  } else if (intno == 0x80) {
    live->Decide(Ending::kInconclusive, FaultClass::kNone, rip,
                 fmt::format("system call (int 0x80) near {:#x}", rip));
  } else {
    live->Decide(Ending::kFault, FaultClass::kTrap, rip, fmt::format("interrupt {}", intno));
  }
  uc_emu_stop(uc);
}

void OnSyscall(uc_engine* uc, void* user) { static_cast<SyscallLayer*>(user)->OnSyscall(uc); }

// Answers `cpuid` from the CPU model (returning 1 skips Unicorn's own answer,
// which is the same TCG feature set whatever model it emulates).
int OnCpuid(uc_engine* uc, void* user) {
  const auto* cpu = static_cast<const CpuModel*>(user);
  uint64_t leaf = 0, subleaf = 0;
  uc_reg_read(uc, UC_X86_REG_RAX, &leaf);
  uc_reg_read(uc, UC_X86_REG_RCX, &subleaf);
  const std::array<uint32_t, 4> r =
      cpu->Cpuid(static_cast<uint32_t>(leaf), static_cast<uint32_t>(subleaf));
  uint64_t v[4] = {r[0], r[1], r[2], r[3]};
  int ids[4] = {UC_X86_REG_RAX, UC_X86_REG_RBX, UC_X86_REG_RCX, UC_X86_REG_RDX};
  void* vals[4] = {&v[0], &v[1], &v[2], &v[3]};
  uc_reg_write_batch(uc, ids, vals, 4);
  return 1;
}

void OnStubPage(uc_engine* uc, uint64_t addr, uint32_t, void* user) {
  auto* stubs = static_cast<StubTable*>(user);
  stubs->OnCall(uc, addr);
}

}  // namespace

Status Sandbox::AddHooks() {
  Live* live = live_.get();
  struct HookSpec {
    int type;
    void* callback;
    void* user;
    uint64_t begin, end;
    const char* what;
    bool wanted;
  };
  // The block hook is what a fast sandbox leaves out: it fires on every
  // block (a helper call each), a fifth of a short function's run time.
  const HookSpec specs[] = {
      {UC_HOOK_BLOCK, reinterpret_cast<void*>(OnBlock), live, 1, 0, "block hook",
       mode_ != RunMode::kFast},
      {UC_HOOK_MEM_INVALID, reinterpret_cast<void*>(OnBadMemory), live, 1, 0, "memory hook", true},
      {UC_HOOK_INTR, reinterpret_cast<void*>(OnInterrupt), live, 1, 0, "interrupt hook", true},
      {UC_HOOK_CODE, reinterpret_cast<void*>(OnInstruction), live, 1, 0, "instruction hook",
       mode_ == RunMode::kExact},
      {UC_HOOK_CODE, reinterpret_cast<void*>(OnStubPage), stubs_.get(), kStubBase,
       kStubBase + kStubBytes - 1, "stub hook", true},
  };
  uc_hook h;
  for (const HookSpec& spec : specs) {
    if (!spec.wanted) continue;
    if (uc_err e = uc_hook_add(uc_, &h, spec.type, spec.callback, spec.user, spec.begin, spec.end);
        e != UC_ERR_OK)
      return std::unexpected(UcError(spec.what, e));
  }
  // Instruction hooks take the instruction as one more argument.
  if (uc_err e = uc_hook_add(uc_, &h, UC_HOOK_INSN, reinterpret_cast<void*>(OnSyscall),
                             syscalls_.get(), 1, 0, UC_X86_INS_SYSCALL);
      e != UC_ERR_OK)
    return std::unexpected(UcError("syscall hook", e));
  if (uc_err e = uc_hook_add(uc_, &h, UC_HOOK_INSN, reinterpret_cast<void*>(OnCpuid),
                             const_cast<CpuModel*>(cpu_), 1, 0, UC_X86_INS_CPUID);
      e != UC_ERR_OK)
    return std::unexpected(UcError("cpuid hook", e));
  return {};
}

bool Sandbox::AfterHlt(uint64_t rip) {
  const uint8_t* before = rip == 0 ? nullptr : HostPtr(rip - 1, 1, UC_PROT_EXEC);
  return before != nullptr && *before == 0xf4;
}

void Sandbox::ReadReturnImage() {
  RunOutcome& out = live_->out;
  out.ret_image.assign(shape_.return_size, 0);
  if (shape_.return_buffer != 0) {
    if (const uint8_t* host = HostPtr(shape_.return_buffer, shape_.return_size))
      std::memcpy(out.ret_image.data(), host, shape_.return_size);
    return;
  }
  uint64_t rdx = 0;
  uint8_t xmm[2][16] = {};
  uint8_t st0[16] = {};
  int ids[4] = {UC_X86_REG_RDX, UC_X86_REG_XMM0, UC_X86_REG_XMM1, UC_X86_REG_ST0};
  void* vals[4] = {&rdx, xmm[0], xmm[1], st0};
  uc_reg_read_batch(uc_, ids, vals, 4);
  const uint64_t gprs[2] = {out.ret, rdx};
  for (const Piece& p : shape_.ret.pieces) {
    const uint8_t* src = nullptr;
    switch (p.where) {
      case Piece::kGpr:
        src = reinterpret_cast<const uint8_t*>(&gprs[p.index & 1]);
        break;
      case Piece::kXmm:
        src = xmm[p.index & 1];
        break;
      case Piece::kXmmHigh:
        src = xmm[p.index & 1] + 8;
        break;
      case Piece::kX87:
        src = st0;
        break;
      case Piece::kStack:
        continue;
    }
    if (p.offset + p.size <= out.ret_image.size())
      std::memcpy(out.ret_image.data() + p.offset, src, p.size);
  }
}

void Sandbox::LocateFault(uint64_t rip) {
  const bool exact = mode_ == RunMode::kExact;
  Live& live = *live_;
  RunOutcome& out = live.out;
  // After a memory fault Unicorn leaves RIP at the start of the block it
  // last synchronised: the block hook does that on every block, a fast run
  // nowhere in particular, so a fast run names no PC for those (reports
  // come from exact re-runs). Exceptions (#DE, #UD, traps) restore RIP.
  const bool memory_fault =
      out.fault == FaultClass::kReadUnmapped || out.fault == FaultClass::kWriteUnmapped ||
      out.fault == FaultClass::kFetchUnmapped || out.fault == FaultClass::kWriteProtected ||
      out.fault == FaultClass::kFetchProtected;
  if (mode_ == RunMode::kFast && memory_fault && out.where.empty()) rip = 0;
  out.fault_pc = exact && live.last_pc != 0 ? live.last_pc : rip;
  out.fault_pc_exact = exact && live.last_pc != 0;
  if (out.fault == FaultClass::kInvalidInstruction) JudgeInvalidInstruction();
}

void Sandbox::JudgeInvalidInstruction() {
  RunOutcome& out = live_->out;
  // Unicorn says INSN_INVALID also for valid instructions it cannot run
  // (rdrand, AVX2): a real CPU would run those, so the run is not judged.
  // Genuinely invalid encodings (ud2, garbage) stay a fault.
  const uint8_t* code = HostPtr(out.fault_pc, 1);
  if (code == nullptr) return;
  size_t left = 16;
  for (const Region& r : regions_) {
    if (out.fault_pc >= r.addr && out.fault_pc < r.addr + r.size)
      left = std::min<uint64_t>(16, r.addr + r.size - out.fault_pc);
  }
  cs_insn* insn = cs_malloc(live_->capstone);
  uint64_t at = out.fault_pc;
  if (cs_disasm_iter(live_->capstone, &code, &left, &at, insn)) {
    std::string mnemonic = insn->mnemonic;
    if (mnemonic.rfind("ud", 0) != 0) {
      out.ending = Ending::kInconclusive;
      out.fault = FaultClass::kNone;
      out.where = fmt::format("unsupported instruction '{} {}' at {:#x}", mnemonic, insn->op_str,
                              out.fault_pc);
    }
  }
  cs_free(insn, 1);
}

Result<uint64_t> Sandbox::CallDuringLoad(uint64_t fn) {
  assert(!frozen_);
  Live& live = *live_;
  live.out = RunOutcome{};
  live.decided = false;
  live.last_pc = 0;
  syscalls_->BeginRun();
  const uint64_t regs[6] = {0, 0, 0, 0, 0, 0};
  const uint64_t rsp = kInitialRsp;
  std::memcpy(entry_page_ + kEntryArgsOffset, regs, sizeof regs);
  std::memcpy(entry_page_ + kEntryRspOffset, &rsp, sizeof rsp);
  std::memcpy(entry_page_ + kEntryTargetOffset, &fn, sizeof fn);
  entry_written_ = 0;  // the next Run writes its own rsp and target
  uint8_t* ret = HostPtr(kInitialRsp, 8, UC_PROT_WRITE);
  assert(ret != nullptr);
  std::memcpy(ret, &kSentinel, 8);
  // A fast sandbox has no block hook to stop a function that loops: at load
  // time Unicorn's own timeout does (a thread per call, a few calls a check).
  constexpr uint64_t kLoadCallTimeoutUs = 2000000;
  const uc_err err = uc_emu_start(uc_, kEntryBase + kEntryCodeOffset, kSentinel,
                                  mode_ == RunMode::kFast ? kLoadCallTimeoutUs : 0, 0);
  uint64_t rip = 0, rax = 0;
  int ids[2] = {UC_X86_REG_RIP, UC_X86_REG_RAX};
  void* vals[2] = {&rip, &rax};
  uc_reg_read_batch(uc_, ids, vals, 2);
  // Whatever it left in the CPU, the first run starts from a clean state.
  restore_context_ = true;
  if (live.decided) {
    return Fail(ErrorCode::kUnsupported, "calling {:#x}: {}", fn, DescribeOutcome(live.out));
  }
  if (err != UC_ERR_OK || rip != kSentinel) {
    return Fail(ErrorCode::kUnsupported, "calling {:#x}: stopped at {:#x}: {}", fn, rip,
                uc_strerror(err));
  }
  return rax;
}

const RunOutcome& Sandbox::Run(uint64_t entry, const CallFrame& frame) {
  const bool exact = mode_ == RunMode::kExact;
  assert(frozen_);
  Live& live = *live_;
  RunOutcome& out = live.out;
  out.ending = Ending::kReturned;
  out.ret = 0;
  out.fault = FaultClass::kNone;
  out.fault_addr = out.fault_pc = 0;
  out.fault_pc_exact = false;
  out.where.clear();
  out.calls.clear();
  out.blocks = out.insns = 0;
  live.decided = false;
  live.last_pc = 0;
  syscalls_->BeginRun();

  // A run that faulted, hung or stopped may leave state in the emulated CPU
  // that the entry code cannot reach: QEMU remembers the last exception
  // (a second #DE would become a double fault, a third a shutdown).
  if (restore_context_) uc_context_restore(uc_, context_);
  // The entry code loads these, resets every other register and jumps to
  // `entry`. At entry rsp+8 is 16-byte aligned, as after a call; the stack
  // arguments lie from there up.
  std::memcpy(entry_page_ + kEntryArgsOffset, frame.gpr, sizeof frame.gpr);
  if (shape_.sse_entry) {
    std::memcpy(entry_page_ + kEntryXmmArgsOffset, frame.xmm, sizeof frame.xmm);
    std::memcpy(entry_page_ + kEntryAlOffset, &frame.al, sizeof frame.al);
  }
  if (entry != entry_written_) {  // a sandbox mostly runs one function
    const uint64_t rsp = kInitialRsp - shape_.stack_bytes;
    std::memcpy(entry_page_ + kEntryRspOffset, &rsp, sizeof rsp);
    std::memcpy(entry_page_ + kEntryTargetOffset, &entry, sizeof entry);
    entry_written_ = entry;
  }
  std::memcpy(ret_slot_, &kSentinel, 8);
  if (shape_.stack_bytes != 0) std::memcpy(ret_slot_ + 8, frame.stack, shape_.stack_bytes);
  const uint64_t start = kEntryBase + (shape_.sse_entry ? kEntrySseCodeOffset : kEntryCodeOffset);

  uc_err err;
  if (mode_ == RunMode::kFast) {
    watchdog_->Begin(uc_);
    err = uc_emu_start(uc_, start, kSentinel, 0, 0);
    settled_ = !watchdog_->End();
  } else {
    err = uc_emu_start(uc_, start, kSentinel, 0, 0);
    settled_ = true;
  }
  // One call for all: each uc_reg_read walks Unicorn's register switch.
  uint64_t rip = 0, rax = 0, rflags = 0;
  int ids[3] = {UC_X86_REG_RIP, UC_X86_REG_RAX, UC_X86_REG_RFLAGS};
  void* vals[3] = {&rip, &rax, &rflags};
  uc_reg_read_batch(uc_, ids, vals, 3);
  // The entry code resets the arithmetic flags and DF; a function that set
  // any other flag (AC, TF, IF, ID, ...: only popf/sti can) gets the whole
  // CPU state restored before the next run, like one that did not return.
  constexpr uint64_t kEntryResetFlags = 0xcd5;  // CF PF AF ZF SF DF OF
  const bool other_flags_changed = (rflags & ~kEntryResetFlags) != 0x2;
  restore_context_ =
      other_flags_changed || !(err == UC_ERR_OK && rip == kSentinel && !live.decided);
  if (!live.decided) {
    if (err == UC_ERR_OK && rip == kSentinel) {
      out.ret = rax;
      if (!shape_.ret.pieces.empty() || shape_.return_buffer != 0) ReadReturnImage();
    } else if (err == UC_ERR_INSN_INVALID) {
      uint64_t pc = exact && live.last_pc != 0 ? live.last_pc : rip;
      live.Decide(Ending::kFault, FaultClass::kInvalidInstruction, pc, "");
    } else if (err == UC_ERR_OK && AfterHlt(rip)) {
      // Unicorn stops after `hlt`; in user mode a CPU raises #GP instead
      // (glibc's abort() ends with one): the process dies of SIGSEGV.
      live.Decide(Ending::kFault, FaultClass::kPrivileged, rip - 1, "");
      out.fault_pc = rip - 1;
    } else if (err == UC_ERR_OK) {
      live.Decide(Ending::kInconclusive, FaultClass::kNone, rip,
                  fmt::format("stopped at {:#x}", rip));
    } else {
      live.Decide(Ending::kInconclusive, FaultClass::kNone, rip,
                  fmt::format("unicorn: {} at {:#x}", uc_strerror(err), rip));
    }
  }
  if (out.ending == Ending::kFault && out.fault_pc == 0) LocateFault(rip);
  // A fast sandbox maps const buffers read-only (so that nothing need be
  // compared or refilled there): a write through one is what a counting
  // sandbox, where those pages are writable, must decide.
  if (mode_ == RunMode::kFast && out.ending == Ending::kFault &&
      out.fault == FaultClass::kWriteProtected && InReadOnlyArgPage(out.fault_addr))
    settled_ = false;
  return out;
}

}  // namespace patchlab::emulator
