#include "emulator/sandbox.h"

#include <unicorn/unicorn.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cstring>

#include "base/log.h"
#include "emulator/cpu_model.h"
#include "emulator/entry_page.h"
#include "emulator/internal/byte_scan.h"
#include "emulator/internal/sandbox_live.h"
#include "emulator/layout.h"
#include "emulator/run_watchdog.h"
#include "emulator/stubs.h"
#include "emulator/syscalls.h"

namespace patchlab::emulator {
namespace {

const CpuModel& BaselineCpu() {
  static const CpuModel* const model = new CpuModel(*CpuModelByName(""));
  return *model;
}

}  // namespace

Result<std::unique_ptr<Sandbox>> Sandbox::Create(const SandboxConfig& config) {
  assert(config.mode != RunMode::kFast || config.watchdog != nullptr);
  std::unique_ptr<Sandbox> sb(new Sandbox());
  sb->mode_ = config.mode;
  sb->watchdog_ = config.watchdog;
  sb->cpu_ = config.cpu != nullptr ? config.cpu : &BaselineCpu();
  sb->live_ = std::make_unique<Live>();
  sb->live_->sandbox = sb.get();
  sb->set_max_blocks(config.max_blocks);
  sb->stubs_ = std::make_unique<StubTable>(*sb);
  sb->syscalls_ = std::make_unique<SyscallLayer>(*sb);
  sb->syscalls_->set_seed(config.syscall_seed);
  sb->syscalls_->set_deny_others(config.deny_syscalls);
  if (cs_open(CS_ARCH_X86, CS_MODE_64, &sb->live_->capstone) != CS_ERR_OK) {
    return Fail(ErrorCode::kInternal, "capstone: cs_open failed");
  }
  if (uc_err e = uc_open(UC_ARCH_X86, UC_MODE_64, &sb->uc_); e != UC_ERR_OK) {
    sb->uc_ = nullptr;
    return std::unexpected(UcError("uc_open", e));
  }
  if (auto s = sb->AddHooks(); !s) return std::unexpected(s.error());
  if (auto s = sb->MapFixedPages(); !s) return std::unexpected(s.error());
  return sb;
}

Status Sandbox::MapFixedPages() {
  auto stub_page =
      Map(kStubBase, kStubBytes, UC_PROT_READ | UC_PROT_EXEC, RegionKind::kCode, "stubs");
  if (!stub_page) return std::unexpected(stub_page.error());
  // Every slot is `ret`.
  std::memset(*stub_page, 0xc3, kStubBytes);
  auto entry = Map(kEntryBase, kPageSize, UC_PROT_READ | UC_PROT_EXEC, RegionKind::kCode, "entry");
  if (!entry) return std::unexpected(entry.error());
  entry_page_ = *entry;
  WriteEntryPage(entry_page_);
  // The thread control block, as glibc lays out its head: fs:0 and fs:0x10
  // point to it, fs:0x28 is the stack protector's canary. Image data: a run
  // that writes it (glibc keeps its thread's state there) has it restored
  // and compared.
  auto tls = Map(kTlsBase, kTlsBytes, UC_PROT_READ | UC_PROT_WRITE, RegionKind::kImageData, "tls");
  if (!tls) return std::unexpected(tls.error());
  std::memcpy(*tls, &kTlsBase, sizeof kTlsBase);
  std::memcpy(*tls + 0x10, &kTlsBase, sizeof kTlsBase);
  std::memcpy(*tls + 0x28, &kStackCanary, sizeof kStackCanary);
  if (auto s = Map(kStackTop - kStackBytes, kStackBytes, UC_PROT_READ | UC_PROT_WRITE,
                   RegionKind::kStack, "stack");
      !s)
    return std::unexpected(s.error());
  if (auto s = Map(kHeapBase, kHeapBytes, UC_PROT_READ | UC_PROT_WRITE, RegionKind::kHeap, "heap");
      !s) {
    return std::unexpected(s.error());
  }
  uint64_t fs_base = kTlsBase;
  if (uc_err e = uc_reg_write(uc_, UC_X86_REG_FS_BASE, &fs_base); e != UC_ERR_OK) {
    return std::unexpected(UcError("FS_BASE", e));
  }
  // The CPU as no code has touched it yet (calls during load may leave
  // state behind): what a run that did not return is restored to.
  if (uc_err e = uc_context_alloc(uc_, &context_); e != UC_ERR_OK)
    return std::unexpected(UcError("context", e));
  if (uc_err e = uc_context_save(uc_, context_); e != UC_ERR_OK)
    return std::unexpected(UcError("context", e));
  return {};
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

uint64_t Sandbox::AddCallback(const CallbackType& type, int behaviour) {
  return stubs_->AddCallback(type, behaviour);
}

Status Sandbox::Freeze() {
  for (Region& r : regions_) {
    if (r.kind == RegionKind::kImageData) r.snapshot.assign(r.host, r.host + r.size);
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
  ret_slot_ = HostPtr(kInitialRsp - shape_.stack_bytes, 8 + shape_.stack_bytes, UC_PROT_WRITE);
  assert(ret_slot_ != nullptr);
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

bool Sandbox::WrittenAt(uint64_t addr, uint64_t len) const {
  for (const Region& r : regions_) {
    if (r.kind != RegionKind::kImageData || r.written.empty() || addr - r.addr >= r.size) continue;
    const uint64_t end = std::min(addr - r.addr + std::max<uint64_t>(len, 1), r.size);
    for (uint64_t g = (addr - r.addr) / r.granule; g * r.granule < end; ++g) {
      if (r.written[g] != Region::kCold) return true;
    }
    return false;
  }
  return false;
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
      case RegionKind::kReturn:
        std::memset(r.host, kFillByte, r.size);
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

}  // namespace patchlab::emulator
