#include "emulator/stubs.h"

#include <unicorn/unicorn.h>

#include <algorithm>
#include <cassert>
#include <cstring>
#include <optional>

#include "emulator/internal/sandbox_live.h"
#include "emulator/layout.h"
#include "emulator/sandbox.h"

namespace patchlab::emulator {

namespace {

enum class Id {
  kMemcpy,
  kMemmove,
  kMemset,
  kMemcmp,
  kStrlen,
  kStrnlen,
  kStrcmp,
  kStrncmp,
  kStrchr,
  kStrrchr,
  kMemchr,
  kMalloc,
  kCalloc,
  kRealloc,
  kFree,
  kAbort,
  kStackChkFail,
  kAssertFail,
  kUnknown,
};

struct Known {
  std::string_view name;
  Id id;
};

// glibc's fortified and internal spellings behave the same for valid calls;
// the extra destination-size argument of the __*_chk forms is not checked.
constexpr Known kKnown[] = {
    {"memcpy", Id::kMemcpy},
    {"__memcpy_chk", Id::kMemcpy},
    {"memmove", Id::kMemmove},
    {"__memmove_chk", Id::kMemmove},
    {"memset", Id::kMemset},
    {"__memset_chk", Id::kMemset},
    {"memcmp", Id::kMemcmp},
    {"bcmp", Id::kMemcmp},
    {"strlen", Id::kStrlen},
    {"strnlen", Id::kStrnlen},
    {"strcmp", Id::kStrcmp},
    {"strncmp", Id::kStrncmp},
    {"strchr", Id::kStrchr},
    {"strrchr", Id::kStrrchr},
    {"memchr", Id::kMemchr},
    {"malloc", Id::kMalloc},
    {"calloc", Id::kCalloc},
    {"realloc", Id::kRealloc},
    {"free", Id::kFree},
    {"abort", Id::kAbort},
    {"__stack_chk_fail", Id::kStackChkFail},
    {"__assert_fail", Id::kAssertFail},
};

Id Lookup(std::string_view name) {
  for (const Known& k : kKnown) {
    if (k.name == name) return k.id;
  }
  return Id::kUnknown;
}

}  // namespace

bool StubTable::IsStubbed(std::string_view name) { return Lookup(name) != Id::kUnknown; }

uint64_t StubTable::AddressOf(const std::string& name) {
  auto it = slots_.find(name);
  if (it != slots_.end()) return it->second;
  uint64_t slot = slot_names_.size() + 1;  // slot 0 is not used
  assert(slot < kStubBytes / kStubSlotBytes && "stub page full");
  slot_names_.push_back(name);
  uint64_t addr = kStubBase + slot * kStubSlotBytes;
  slots_.emplace(name, addr);
  return addr;
}

void StubTable::ResetHeap() {
  heap_next_ = 0;
  live_allocations_.clear();
}

uint64_t StubTable::Allocate(uint64_t size) {
  // 16-byte aligned like glibc, with a 16-byte gap so that neighbours are apart.
  uint64_t rounded = (std::max<uint64_t>(size, 1) + 15) & ~15ull;
  if (size > kHeapBytes || heap_next_ + rounded + 16 > kHeapBytes) return 0;
  uint64_t addr = kHeapBase + heap_next_ + 16;
  heap_next_ += rounded + 16;
  live_allocations_[addr] = size;
  return addr;
}

void StubTable::Stop(uc_struct* uc) { uc_emu_stop(uc); }

void StubTable::Fault(uc_struct* uc, int fault_class, uint64_t addr, std::string_view name) {
  sandbox_.live().Decide(Ending::kFault, static_cast<FaultClass>(fault_class), addr,
                         fmt::format("in {}", name));
  Stop(uc);
}

void StubTable::OnCall(uc_struct* uc, uint64_t pc) {
  uint64_t slot = (pc - kStubBase) / kStubSlotBytes;
  if (slot == 0 || slot > slot_names_.size() || (pc - kStubBase) % kStubSlotBytes != 0) return;
  const std::string& name = slot_names_[slot - 1];
  Sandbox::Live& live = sandbox_.live();
  uint64_t a[3];
  int regs[3] = {UC_X86_REG_RDI, UC_X86_REG_RSI, UC_X86_REG_RDX};
  void* vals[3] = {&a[0], &a[1], &a[2]};
  uc_reg_read_batch(uc, regs, vals, 3);
  constexpr int kR = UC_PROT_READ, kW = UC_PROT_WRITE;
  const int read_fault = static_cast<int>(FaultClass::kReadUnmapped);
  const int write_fault = static_cast<int>(FaultClass::kWriteUnmapped);
  const int write_prot_fault = static_cast<int>(FaultClass::kWriteProtected);

  // Checks [p, p+n) for `prot`; on a hole reports the fault a real libc would hit.
  auto check = [&](uint64_t p, uint64_t n, int prot) -> uint8_t* {
    if (n == 0) return reinterpret_cast<uint8_t*>(1);  // valid, never dereferenced
    uint8_t* host = sandbox_.HostPtr(p, n, prot);
    if (host != nullptr) {
      if (prot == kW) sandbox_.NoteHostWrite(p, n);
      return host;
    }
    uint64_t bad = sandbox_.FirstBadByte(p, n, prot);
    if (bad == p + n) bad = p;  // spans regions: report the start
    // A write to a mapped page that is not writable (RELRO, a const buffer)
    // is a protection fault, as the CPU would report it.
    const int fault = prot != kW                            ? read_fault
                      : sandbox_.HostPtr(bad, 1) != nullptr ? write_prot_fault
                                                            : write_fault;
    Fault(uc, fault, bad, name);
    return nullptr;
  };
  // Length of the NUL-terminated string at p, reading at most `limit` bytes; -1 after a fault.
  auto string_length = [&](uint64_t p, uint64_t limit) -> int64_t {
    for (uint64_t n = 0; n < limit; ++n) {
      const uint8_t* c = sandbox_.HostPtr(p + n, 1, kR);
      if (c == nullptr) {
        Fault(uc, read_fault, p + n, name);
        return -1;
      }
      if (*c == 0) return static_cast<int64_t>(n);
    }
    return static_cast<int64_t>(limit);
  };
  auto string_compare = [&](uint64_t s1, uint64_t s2, uint64_t limit) -> std::optional<int> {
    for (uint64_t n = 0; n < limit; ++n) {
      const uint8_t* c1 = sandbox_.HostPtr(s1 + n, 1, kR);
      if (c1 == nullptr) return Fault(uc, read_fault, s1 + n, name), std::nullopt;
      const uint8_t* c2 = sandbox_.HostPtr(s2 + n, 1, kR);
      if (c2 == nullptr) return Fault(uc, read_fault, s2 + n, name), std::nullopt;
      if (*c1 != *c2) return *c1 < *c2 ? -1 : 1;
      if (*c1 == 0) return 0;
    }
    return 0;
  };
  auto record = [&](std::vector<uint64_t> args, uint64_t ret) {
    live.out.calls.push_back(StubCall{name, std::move(args), ret});
  };

  uint64_t ret = 0;
  switch (Lookup(name)) {
    case Id::kMemcpy:
    case Id::kMemmove: {
      uint8_t* src = check(a[1], a[2], kR);
      if (src == nullptr) return;
      uint8_t* dst = check(a[0], a[2], kW);
      if (dst == nullptr) return;
      if (a[2] != 0) std::memmove(dst, src, a[2]);
      ret = a[0];
      break;
    }
    case Id::kMemset: {
      uint8_t* dst = check(a[0], a[2], kW);
      if (dst == nullptr) return;
      if (a[2] != 0) std::memset(dst, static_cast<int>(a[1] & 0xff), a[2]);
      ret = a[0];
      break;
    }
    case Id::kMemcmp: {
      // A real memcmp may stop at the first difference; reading all of both is
      // stricter but the same on both sides.
      uint8_t* p1 = check(a[0], a[2], kR);
      if (p1 == nullptr) return;
      uint8_t* p2 = check(a[1], a[2], kR);
      if (p2 == nullptr) return;
      int c = a[2] == 0 ? 0 : std::memcmp(p1, p2, a[2]);
      ret = static_cast<uint64_t>(static_cast<int64_t>(c < 0 ? -1 : c > 0 ? 1 : 0));
      break;
    }
    case Id::kStrlen:
    case Id::kStrnlen: {
      int64_t n = string_length(a[0], Lookup(name) == Id::kStrnlen ? a[1] : ~0ull);
      if (n < 0) return;
      ret = static_cast<uint64_t>(n);
      break;
    }
    case Id::kStrcmp:
    case Id::kStrncmp: {
      auto c = string_compare(a[0], a[1], Lookup(name) == Id::kStrncmp ? a[2] : ~0ull);
      if (!c) return;
      ret = static_cast<uint64_t>(static_cast<int64_t>(*c));
      break;
    }
    case Id::kStrchr:
    case Id::kStrrchr: {
      int64_t n = string_length(a[0], ~0ull);
      if (n < 0) return;
      const uint8_t* s = sandbox_.HostPtr(a[0], n + 1, kR);
      uint8_t want = static_cast<uint8_t>(a[1]);
      ret = 0;
      for (int64_t i = 0; i <= n; ++i) {
        if (s[i] == want) {
          ret = a[0] + i;
          if (Lookup(name) == Id::kStrchr) break;
        }
      }
      break;
    }
    case Id::kMemchr: {
      uint8_t want = static_cast<uint8_t>(a[1]);
      ret = 0;
      for (uint64_t i = 0; i < a[2]; ++i) {
        const uint8_t* c = sandbox_.HostPtr(a[0] + i, 1, kR);
        if (c == nullptr) return Fault(uc, read_fault, a[0] + i, name);
        if (*c == want) {
          ret = a[0] + i;
          break;
        }
      }
      break;
    }
    case Id::kMalloc:
      ret = Allocate(a[0]);
      if (ret != 0) std::memset(sandbox_.HostPtr(ret, a[0] == 0 ? 1 : a[0]), kFillByte, a[0]);
      record({a[0]}, ret);
      break;
    case Id::kCalloc: {
      unsigned __int128 total = static_cast<unsigned __int128>(a[0]) * a[1];
      ret = total > kHeapBytes ? 0 : Allocate(static_cast<uint64_t>(total));
      record({a[0], a[1]}, ret);
      break;
    }
    case Id::kRealloc: {
      uint64_t old_size = 0;
      if (a[0] != 0) {
        auto it = live_allocations_.find(a[0]);
        if (it == live_allocations_.end())
          return Fault(uc, static_cast<int>(FaultClass::kBadFree), a[0], name);
        old_size = it->second;
      }
      ret = Allocate(a[1]);
      if (ret != 0) {
        uint8_t* dst = sandbox_.HostPtr(ret, std::max<uint64_t>(a[1], 1));
        std::memset(dst, kFillByte, a[1]);
        if (a[0] != 0) {
          std::memcpy(dst, sandbox_.HostPtr(a[0], std::max<uint64_t>(old_size, 1)),
                      std::min(old_size, a[1]));
          live_allocations_.erase(a[0]);
        }
      }
      record({a[0], a[1]}, ret);
      break;
    }
    case Id::kFree:
      if (a[0] != 0) {
        if (live_allocations_.erase(a[0]) == 0) {
          return Fault(uc, static_cast<int>(FaultClass::kBadFree), a[0], name);
        }
      }
      record({a[0]}, 0);
      break;
    case Id::kAbort:
    case Id::kAssertFail:
      return Fault(uc, static_cast<int>(FaultClass::kAbort), pc, name);
    case Id::kStackChkFail:
      return Fault(uc, static_cast<int>(FaultClass::kStackSmash), pc, name);
    case Id::kUnknown: {
      live.Decide(Ending::kInconclusive, FaultClass::kNone, pc,
                  fmt::format("call to unstubbed function '{}'", name));
      return Stop(uc);
    }
  }
  uc_reg_write(uc, UC_X86_REG_RAX, &ret);
}

}  // namespace patchlab::emulator
