#include "emulator/sandbox.h"

#include <unicorn/unicorn.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cstring>

#include "base/log.h"
#include "emulator/entry_page.h"
#include "emulator/internal/byte_scan.h"
#include "emulator/internal/sandbox_live.h"
#include "emulator/layout.h"
#include "emulator/run_watchdog.h"
#include "emulator/stubs.h"

namespace patchlab::emulator {
namespace {

Error UcError(std::string_view what, uc_err err) {
  return Error(ErrorCode::kInternal, fmt::format("unicorn: {}: {}", what, uc_strerror(err)));
}

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

void OnSyscall(uc_engine* uc, void* user) {
  auto* live = static_cast<Sandbox::Live*>(user);
  uint64_t rip = 0, rax = 0;
  uc_reg_read(uc, UC_X86_REG_RIP, &rip);
  uc_reg_read(uc, UC_X86_REG_RAX, &rax);
  live->Decide(Ending::kInconclusive, FaultClass::kNone, rip,
               fmt::format("system call {} at {:#x}", rax, rip));
  uc_emu_stop(uc);
}

void OnStubPage(uc_engine* uc, uint64_t addr, uint32_t, void* user) {
  auto* stubs = static_cast<StubTable*>(user);
  stubs->OnCall(uc, addr);
}

}  // namespace

Result<std::unique_ptr<Sandbox>> Sandbox::Create(uint64_t max_blocks, RunMode mode,
                                                 RunWatchdog* watchdog) {
  assert(mode != RunMode::kFast || watchdog != nullptr);
  std::unique_ptr<Sandbox> sb(new Sandbox());
  sb->mode_ = mode;
  sb->watchdog_ = watchdog;
  sb->live_ = std::make_unique<Live>();
  sb->live_->sandbox = sb.get();
  sb->set_max_blocks(max_blocks);
  sb->stubs_ = std::make_unique<StubTable>(*sb);
  if (cs_open(CS_ARCH_X86, CS_MODE_64, &sb->live_->capstone) != CS_ERR_OK) {
    return Fail(ErrorCode::kInternal, "capstone: cs_open failed");
  }
  if (uc_err e = uc_open(UC_ARCH_X86, UC_MODE_64, &sb->uc_); e != UC_ERR_OK) {
    sb->uc_ = nullptr;
    return std::unexpected(UcError("uc_open", e));
  }
  Live* live = sb->live_.get();
  uc_hook h;
  auto hook = [&](uc_err e, const char* what) -> Status {
    if (e != UC_ERR_OK) return std::unexpected(UcError(what, e));
    return {};
  };
  // The block hook is what a fast sandbox leaves out: it fires on every
  // block (a helper call each), a fifth of a short function's run time.
  if (mode != RunMode::kFast) {
    if (auto s = hook(
            uc_hook_add(sb->uc_, &h, UC_HOOK_BLOCK, reinterpret_cast<void*>(OnBlock), live, 1, 0),
            "block hook");
        !s)
      return std::unexpected(s.error());
  }
  if (auto s = hook(uc_hook_add(sb->uc_, &h, UC_HOOK_MEM_INVALID,
                                reinterpret_cast<void*>(OnBadMemory), live, 1, 0),
                    "memory hook");
      !s)
    return std::unexpected(s.error());
  if (auto s = hook(
          uc_hook_add(sb->uc_, &h, UC_HOOK_INTR, reinterpret_cast<void*>(OnInterrupt), live, 1, 0),
          "interrupt hook");
      !s)
    return std::unexpected(s.error());
  if (auto s = hook(uc_hook_add(sb->uc_, &h, UC_HOOK_INSN, reinterpret_cast<void*>(OnSyscall), live,
                                1, 0, UC_X86_INS_SYSCALL),
                    "syscall hook");
      !s)
    return std::unexpected(s.error());
  if (mode == RunMode::kExact) {
    if (auto s = hook(uc_hook_add(sb->uc_, &h, UC_HOOK_CODE, reinterpret_cast<void*>(OnInstruction),
                                  live, 1, 0),
                      "instruction hook");
        !s)
      return std::unexpected(s.error());
  }
  if (auto s = hook(uc_hook_add(sb->uc_, &h, UC_HOOK_CODE, reinterpret_cast<void*>(OnStubPage),
                                sb->stubs_.get(), kStubBase, kStubBase + kStubBytes - 1),
                    "stub hook");
      !s) {
    return std::unexpected(s.error());
  }

  auto stub_page =
      sb->Map(kStubBase, kStubBytes, UC_PROT_READ | UC_PROT_EXEC, RegionKind::kCode, "stubs");
  if (!stub_page) return std::unexpected(stub_page.error());
  // Every slot is `ret`.
  std::memset(*stub_page, 0xc3, kStubBytes);
  auto entry =
      sb->Map(kEntryBase, kPageSize, UC_PROT_READ | UC_PROT_EXEC, RegionKind::kCode, "entry");
  if (!entry) return std::unexpected(entry.error());
  sb->entry_page_ = *entry;
  WriteEntryPage(sb->entry_page_);
  auto tls = sb->Map(kTlsBase, kTlsBytes, UC_PROT_READ | UC_PROT_WRITE, RegionKind::kTls, "tls");
  if (!tls) return std::unexpected(tls.error());
  std::memcpy(*tls + 0x28, &kStackCanary, sizeof kStackCanary);
  // Only the thread control block's head (self pointer, canary, pointer
  // guard) is restored between runs: restoring the page would cost more than
  // a short function's whole run.
  sb->SetResetRange(kTlsBase, 0, 0x100);
  // fs:0 points to itself, as glibc's TCB does.
  std::memcpy(*tls, &kTlsBase, sizeof kTlsBase);
  if (auto s = sb->Map(kStackTop - kStackBytes, kStackBytes, UC_PROT_READ | UC_PROT_WRITE,
                       RegionKind::kStack, "stack");
      !s)
    return std::unexpected(s.error());
  if (auto s =
          sb->Map(kHeapBase, kHeapBytes, UC_PROT_READ | UC_PROT_WRITE, RegionKind::kHeap, "heap");
      !s) {
    return std::unexpected(s.error());
  }
  uint64_t fs_base = kTlsBase;
  if (uc_err e = uc_reg_write(sb->uc_, UC_X86_REG_FS_BASE, &fs_base); e != UC_ERR_OK) {
    return std::unexpected(UcError("FS_BASE", e));
  }
  return sb;
}

Sandbox::~Sandbox() {
  if (context_ != nullptr) uc_context_free(context_);
  if (uc_ != nullptr) uc_close(uc_);
  for (Region& r : regions_) std::free(r.host);
  if (live_ && live_->capstone != 0) cs_close(&live_->capstone);
}

Result<uint8_t*> Sandbox::Map(uint64_t addr, uint64_t size, int prot, RegionKind kind,
                              std::string name) {
  // Not after Freeze: Reset keeps pointers into regions_.
  assert(!frozen_ && addr % kPageSize == 0 && size % kPageSize == 0 && size > 0);
  for (const Region& r : regions_) {
    if (addr < r.addr + r.size && r.addr < addr + size) {
      return Fail(ErrorCode::kInvalidArgument, "{} [{:#x}, {:#x}) overlaps {} [{:#x}, {:#x})", name,
                  addr, addr + size, r.name, r.addr, r.addr + r.size);
    }
  }
  auto* host = static_cast<uint8_t*>(std::aligned_alloc(kPageSize, size));
  if (host == nullptr)
    return Fail(ErrorCode::kIo, "out of memory mapping {} ({} bytes)", name, size);
  std::memset(host, 0, size);
  // Image data goes in granules that Freeze makes read-only one by one
  // (uc_mem_protect on part of a mapping would split it, each time).
  const uint64_t pages = size / kPageSize;
  const uint64_t granule =
      kind == RegionKind::kImageData ? (pages + kMaxGranules - 1) / kMaxGranules * kPageSize : size;
  for (uint64_t off = 0; off < size; off += granule) {
    const uint64_t len = std::min(granule, size - off);
    if (uc_err e = uc_mem_map_ptr(uc_, addr + off, len, prot, host + off); e != UC_ERR_OK) {
      if (off > 0) uc_mem_unmap(uc_, addr, off);
      std::free(host);
      return std::unexpected(UcError(fmt::format("mapping {} at {:#x}", name, addr + off), e));
    }
  }
  Region r;
  r.granule = granule;
  r.addr = addr;
  r.size = size;
  r.prot = prot;
  r.kind = kind;
  r.name = std::move(name);
  r.host = host;
  r.reset_end = size;
  regions_.push_back(std::move(r));
  std::sort(regions_.begin(), regions_.end(),
            [](const Region& a, const Region& b) { return a.addr < b.addr; });
  return host;
}

void Sandbox::set_max_blocks(uint64_t n) {
  max_blocks_ = n;
  live_->max_blocks = n;
}

uint64_t Sandbox::heap_used() const { return stubs_->heap_used(); }

void Sandbox::SetResetRange(uint64_t addr, uint64_t begin, uint64_t end) {
  for (Region& r : regions_) {
    if (r.addr == addr) {
      assert(begin <= end && end <= r.size);
      r.reset_begin = begin;
      r.reset_end = end;
      return;
    }
  }
  assert(false && "SetResetRange: no region there");
}

uint64_t Sandbox::StubAddress(const std::string& name) { return stubs_->AddressOf(name); }

Status Sandbox::Freeze() {
  for (Region& r : regions_) {
    if (r.kind == RegionKind::kImageData || r.kind == RegionKind::kTls)
      r.snapshot.assign(r.host, r.host + r.size);
    // What a Reset visits: code never changes (the regions stay put from now on).
    if (r.kind != RegionKind::kCode) resettable_.push_back(&r);
    if (r.kind == RegionKind::kImageData || r.kind == RegionKind::kArg ||
        r.kind == RegionKind::kHeap)
      compared_.push_back(&r);
    if (r.kind == RegionKind::kImageData) {
      r.written.assign((r.size + r.granule - 1) / r.granule, Region::kCold);
      for (uint64_t off = 0; off < r.size; off += r.granule) {
        if (uc_err e = uc_mem_protect(uc_, r.addr + off, std::min(r.granule, r.size - off),
                                      r.prot & ~UC_PROT_WRITE);
            e != UC_ERR_OK)
          return std::unexpected(UcError(fmt::format("protecting {}", r.name), e));
      }
    }
    if (r.kind == RegionKind::kArg) {
      // Reset refills only what a run may have changed: start filled.
      std::memset(r.host, kFillByte, r.size);
      args_.push_back(&r);
    }
  }
  ret_slot_ = HostPtr(kInitialRsp, 8, UC_PROT_WRITE);
  assert(ret_slot_ != nullptr);
  if (uc_err e = uc_context_alloc(uc_, &context_); e != UC_ERR_OK)
    return std::unexpected(UcError("context", e));
  if (uc_err e = uc_context_save(uc_, context_); e != UC_ERR_OK)
    return std::unexpected(UcError("context", e));
  frozen_ = true;
  return {};
}

uint8_t* Sandbox::HostPtr(uint64_t addr, uint64_t len, int prot) {
  // Few regions (a dozen): a scan beats a tree at this size.
  for (Region& r : regions_) {
    if (addr >= r.addr && addr - r.addr < r.size) {
      if (len > r.size - (addr - r.addr) || (r.prot & prot) != prot) return nullptr;
      return r.host + (addr - r.addr);
    }
  }
  return nullptr;
}

uint64_t Sandbox::FirstBadByte(uint64_t addr, uint64_t len, int prot) {
  uint64_t at = addr, end = addr + len;
  while (at < end) {
    const Region* hit = nullptr;
    for (const Region& r : regions_) {
      if (at >= r.addr && at - r.addr < r.size) hit = &r;
    }
    if (hit == nullptr || (hit->prot & prot) != prot) return at;
    at = hit->addr + hit->size;
  }
  return end;
}

void Sandbox::Reset() {
  assert(frozen_);
  for (auto [region, g] : to_open_) {
    if (region->written[g] != Region::kOpen) Open(*region, g);
  }
  to_open_.clear();
  for (Region* region : resettable_) {
    Region& r = *region;
    switch (r.kind) {
      case RegionKind::kImageData:
        for (uint32_t g : r.touched) {
          const uint64_t b = r.GranuleBegin(g), e = r.GranuleEnd(g);
          if (b < e) std::memcpy(r.host + b, r.snapshot.data() + b, e - b);
        }
        break;
      case RegionKind::kTls:
        std::memcpy(r.host + r.reset_begin, r.snapshot.data() + r.reset_begin,
                    r.reset_end - r.reset_begin);
        break;
      case RegionKind::kArg:
        // Refilling a whole page costs ~100 ns; most runs leave all but the
        // placed bytes alone (MarkCleanArgPages), and a read-only page (a
        // const buffer in a fast sandbox) keeps them all.
        if (r.clean_outside_placed || (r.prot & UC_PROT_WRITE) == 0)
          std::memset(r.host + r.placed_begin, kFillByte, r.placed_end - r.placed_begin);
        else
          std::memset(r.host, kFillByte, r.size);
        r.placed_begin = r.placed_end = 0;
        r.clean_outside_placed = false;
        break;
      case RegionKind::kStack: {
        // Clearing is a store per byte; finding where the run's writes start
        // is half a load per byte, and most functions use little stack.
        uint8_t* window = r.host + r.size - kStackResetBytes;
        const size_t first = FirstNonZeroBlock(window, kStackResetBytes);
        std::memset(window + first, 0, kStackResetBytes - first);
        break;
      }
      case RegionKind::kHeap:
        std::memset(r.host, 0, std::min<uint64_t>(stubs_->heap_used(), r.size));
        break;
      case RegionKind::kCode:
        break;
    }
  }
  stubs_->ResetHeap();
}

uint8_t* Sandbox::PlaceInArgPage(size_t k, uint64_t offset, uint64_t len) {
  assert(frozen_ && k < args_.size());
  Region& r = *args_[k];
  assert(offset <= r.size && len <= r.size - offset);
  r.placed_begin = offset;
  r.placed_end = offset + len;
  return r.host + offset;
}

void Sandbox::MarkCleanArgPages(std::span<const uint64_t> addrs) {
  for (uint64_t addr : addrs) {
    for (Region* r : args_) {
      if (r->addr == addr) r->clean_outside_placed = true;
    }
  }
}

void Sandbox::Open(Region& r, size_t g) {
  const uint64_t off = g * r.granule;
  // Only an engine that lost its mapping could refuse; the store then faults
  // as write-protected, which is no worse than before.
  uc_mem_protect(uc_, r.addr + off, std::min(r.granule, r.size - off), r.prot);
  if (r.written[g] == Region::kCold) r.touched.push_back(static_cast<uint32_t>(g));
  r.written[g] = Region::kOpen;
}

void Sandbox::NoteHostWrite(uint64_t addr, uint64_t len) {
  for (Region& r : regions_) {
    if (r.kind != RegionKind::kImageData || r.written.empty() || addr >= r.addr + r.size ||
        addr + len <= r.addr)
      continue;
    const uint64_t lo = std::max(addr, r.addr) - r.addr;
    const uint64_t hi = std::min(addr + len, r.addr + r.size) - r.addr;
    for (size_t g = lo / r.granule; g * r.granule < hi; ++g) {
      if (r.written[g] != Region::kCold) continue;
      r.written[g] = Region::kWrittenClosed;
      r.touched.push_back(static_cast<uint32_t>(g));
      to_open_.emplace_back(&r, g);
    }
  }
}

uint8_t* Sandbox::OpenImageData(uint64_t addr, uint64_t len) {
  for (Region& r : regions_) {
    if (r.kind != RegionKind::kImageData || r.written.empty() || addr - r.addr >= r.size) continue;
    // A store reaching past the segments' pages is not ours to make.
    if (len > r.size - (addr - r.addr)) return nullptr;
    const size_t first = (addr - r.addr) / r.granule, last = (addr - r.addr + len - 1) / r.granule;
    bool opened = false;
    for (size_t g = first; g <= last; ++g) {
      if (r.written[g] == Region::kOpen) continue;
      Open(r, g);
      opened = true;
    }
    // Every granule open already: the fault was the engine's, not ours.
    return opened ? r.host + (addr - r.addr) : nullptr;
  }
  return nullptr;
}

bool Sandbox::InReadOnlyArgPage(uint64_t addr) const {
  for (const Region* r : args_) {
    if (addr - r->addr < r->size) return (r->prot & UC_PROT_WRITE) == 0;
  }
  return false;
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

const RunOutcome& Sandbox::Run(uint64_t entry, std::span<const uint64_t> args) {
  const bool exact = mode_ == RunMode::kExact;
  assert(frozen_ && args.size() <= 6);
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

  // A run that faulted, hung or stopped may leave state in the emulated CPU
  // that the entry code cannot reach: QEMU remembers the last exception
  // (a second #DE would become a double fault, a third a shutdown).
  if (restore_context_) uc_context_restore(uc_, context_);
  // The entry code loads these, resets every other register and jumps to
  // `entry`. At entry rsp+8 is 16-byte aligned, as after a call.
  uint64_t regs[6] = {0, 0, 0, 0, 0, 0};
  std::copy(args.begin(), args.end(), regs);
  const uint64_t rsp = kInitialRsp;
  std::memcpy(entry_page_ + kEntryArgsOffset, regs, sizeof regs);
  if (entry != entry_written_) {  // a sandbox mostly runs one function
    std::memcpy(entry_page_ + kEntryRspOffset, &rsp, sizeof rsp);
    std::memcpy(entry_page_ + kEntryTargetOffset, &entry, sizeof entry);
    entry_written_ = entry;
  }
  std::memcpy(ret_slot_, &kSentinel, 8);

  uc_err err;
  if (mode_ == RunMode::kFast) {
    watchdog_->Begin(uc_);
    err = uc_emu_start(uc_, kEntryBase + kEntryCodeOffset, kSentinel, 0, 0);
    settled_ = !watchdog_->End();
  } else {
    err = uc_emu_start(uc_, kEntryBase + kEntryCodeOffset, kSentinel, 0, 0);
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
    } else if (err == UC_ERR_INSN_INVALID) {
      uint64_t pc = exact && live.last_pc != 0 ? live.last_pc : rip;
      live.Decide(Ending::kFault, FaultClass::kInvalidInstruction, pc, "");
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
