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
  kTlsGetAddr,
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
    {"__tls_get_addr", Id::kTlsGetAddr},
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

uint64_t StubTable::AllocatePages(uint64_t len) {
  // Nothing past heap_next_ has been written since the last reset: zero.
  const uint64_t start = (heap_next_ + kPageSize - 1) & ~(kPageSize - 1);
  if (len > kHeapBytes || start + len > kHeapBytes) return 0;
  heap_next_ = start + len;
  return kHeapBase + start;
}

void StubTable::Stop(uc_struct* uc) { uc_emu_stop(uc); }

void StubTable::Fault(uc_struct* uc, int fault_class, uint64_t addr, std::string_view name) {
  sandbox_.live().Decide(Ending::kFault, static_cast<FaultClass>(fault_class), addr,
                         fmt::format("in {}", name));
  Stop(uc);
}

// One call in progress: what a stub body needs to read its arguments and
// report a fault.
struct StubTable::Call {
  uc_struct* uc;
  uint64_t pc;
  const std::string& name;
  uint64_t a[3];  // rdi, rsi, rdx
};

namespace {
constexpr int kR = UC_PROT_READ, kW = UC_PROT_WRITE;
}  // namespace

uint8_t* StubTable::Check(const Call& c, uint64_t p, uint64_t n, int prot) {
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
  const FaultClass fault = prot != kW                            ? FaultClass::kReadUnmapped
                           : sandbox_.HostPtr(bad, 1) != nullptr ? FaultClass::kWriteProtected
                                                                 : FaultClass::kWriteUnmapped;
  Fault(c.uc, static_cast<int>(fault), bad, c.name);
  return nullptr;
}

int64_t StubTable::StringLength(const Call& c, uint64_t p, uint64_t limit) {
  for (uint64_t n = 0; n < limit; ++n) {
    const uint8_t* ch = sandbox_.HostPtr(p + n, 1, kR);
    if (ch == nullptr) {
      Fault(c.uc, static_cast<int>(FaultClass::kReadUnmapped), p + n, c.name);
      return -1;
    }
    if (*ch == 0) return static_cast<int64_t>(n);
  }
  return static_cast<int64_t>(limit);
}

std::optional<int> StubTable::StringCompare(const Call& c, uint64_t s1, uint64_t s2,
                                            uint64_t limit) {
  const int read_fault = static_cast<int>(FaultClass::kReadUnmapped);
  for (uint64_t n = 0; n < limit; ++n) {
    const uint8_t* c1 = sandbox_.HostPtr(s1 + n, 1, kR);
    if (c1 == nullptr) return Fault(c.uc, read_fault, s1 + n, c.name), std::nullopt;
    const uint8_t* c2 = sandbox_.HostPtr(s2 + n, 1, kR);
    if (c2 == nullptr) return Fault(c.uc, read_fault, s2 + n, c.name), std::nullopt;
    if (*c1 != *c2) return *c1 < *c2 ? -1 : 1;
    if (*c1 == 0) return 0;
  }
  return 0;
}

void StubTable::Record(const Call& c, std::vector<uint64_t> args, uint64_t ret) {
  sandbox_.live().out.calls.push_back(StubCall{c.name, std::move(args), ret});
}

std::optional<uint64_t> StubTable::MemoryStub(const Call& c, int id) {
  const uint64_t* a = c.a;
  switch (static_cast<Id>(id)) {
    case Id::kMemcpy:
    case Id::kMemmove: {
      uint8_t* src = Check(c, a[1], a[2], kR);
      if (src == nullptr) return std::nullopt;
      uint8_t* dst = Check(c, a[0], a[2], kW);
      if (dst == nullptr) return std::nullopt;
      if (a[2] != 0) std::memmove(dst, src, a[2]);
      return a[0];
    }
    case Id::kMemset: {
      uint8_t* dst = Check(c, a[0], a[2], kW);
      if (dst == nullptr) return std::nullopt;
      if (a[2] != 0) std::memset(dst, static_cast<int>(a[1] & 0xff), a[2]);
      return a[0];
    }
    case Id::kMemcmp: {
      // A real memcmp may stop at the first difference; reading all of both is
      // stricter but the same on both sides.
      uint8_t* p1 = Check(c, a[0], a[2], kR);
      if (p1 == nullptr) return std::nullopt;
      uint8_t* p2 = Check(c, a[1], a[2], kR);
      if (p2 == nullptr) return std::nullopt;
      int cmp = a[2] == 0 ? 0 : std::memcmp(p1, p2, a[2]);
      return static_cast<uint64_t>(static_cast<int64_t>(cmp < 0 ? -1 : cmp > 0 ? 1 : 0));
    }
    case Id::kMemchr: {
      uint8_t want = static_cast<uint8_t>(a[1]);
      for (uint64_t i = 0; i < a[2]; ++i) {
        const uint8_t* ch = sandbox_.HostPtr(a[0] + i, 1, kR);
        if (ch == nullptr) {
          Fault(c.uc, static_cast<int>(FaultClass::kReadUnmapped), a[0] + i, c.name);
          return std::nullopt;
        }
        if (*ch == want) return a[0] + i;
      }
      return 0;
    }
    default:
      break;
  }
  assert(false && "MemoryStub: not a memory function");
  return std::nullopt;
}

std::optional<uint64_t> StubTable::StringStub(const Call& c, int id) {
  const uint64_t* a = c.a;
  switch (static_cast<Id>(id)) {
    case Id::kStrlen:
    case Id::kStrnlen: {
      int64_t n = StringLength(c, a[0], static_cast<Id>(id) == Id::kStrnlen ? a[1] : ~0ull);
      if (n < 0) return std::nullopt;
      return static_cast<uint64_t>(n);
    }
    case Id::kStrcmp:
    case Id::kStrncmp: {
      auto cmp = StringCompare(c, a[0], a[1], static_cast<Id>(id) == Id::kStrncmp ? a[2] : ~0ull);
      if (!cmp) return std::nullopt;
      return static_cast<uint64_t>(static_cast<int64_t>(*cmp));
    }
    case Id::kStrchr:
    case Id::kStrrchr: {
      int64_t n = StringLength(c, a[0], ~0ull);
      if (n < 0) return std::nullopt;
      const uint8_t* s = sandbox_.HostPtr(a[0], n + 1, kR);
      uint8_t want = static_cast<uint8_t>(a[1]);
      uint64_t ret = 0;
      for (int64_t i = 0; i <= n; ++i) {
        if (s[i] == want) {
          ret = a[0] + i;
          if (static_cast<Id>(id) == Id::kStrchr) break;
        }
      }
      return ret;
    }
    default:
      break;
  }
  assert(false && "StringStub: not a string function");
  return std::nullopt;
}

std::optional<uint64_t> StubTable::AllocationStub(const Call& c, int id) {
  const uint64_t* a = c.a;
  uint64_t ret = 0;
  switch (static_cast<Id>(id)) {
    case Id::kMalloc:
      ret = Allocate(a[0]);
      if (ret != 0) std::memset(sandbox_.HostPtr(ret, a[0] == 0 ? 1 : a[0]), kFillByte, a[0]);
      Record(c, {a[0]}, ret);
      return ret;
    case Id::kCalloc: {
      unsigned __int128 total = static_cast<unsigned __int128>(a[0]) * a[1];
      ret = total > kHeapBytes ? 0 : Allocate(static_cast<uint64_t>(total));
      Record(c, {a[0], a[1]}, ret);
      return ret;
    }
    case Id::kRealloc:
      return Reallocate(c);
    case Id::kFree:
      if (a[0] != 0 && live_allocations_.erase(a[0]) == 0) {
        Fault(c.uc, static_cast<int>(FaultClass::kBadFree), a[0], c.name);
        return std::nullopt;
      }
      Record(c, {a[0]}, 0);
      return 0;
    default:
      break;
  }
  assert(false && "AllocationStub: not an allocation function");
  return std::nullopt;
}

std::optional<uint64_t> StubTable::Reallocate(const Call& c) {
  const uint64_t* a = c.a;
  uint64_t old_size = 0;
  if (a[0] != 0) {
    auto it = live_allocations_.find(a[0]);
    if (it == live_allocations_.end()) {
      Fault(c.uc, static_cast<int>(FaultClass::kBadFree), a[0], c.name);
      return std::nullopt;
    }
    old_size = it->second;
  }
  const uint64_t ret = Allocate(a[1]);
  if (ret != 0) {
    uint8_t* dst = sandbox_.HostPtr(ret, std::max<uint64_t>(a[1], 1));
    std::memset(dst, kFillByte, a[1]);
    if (a[0] != 0) {
      std::memcpy(dst, sandbox_.HostPtr(a[0], std::max<uint64_t>(old_size, 1)),
                  std::min(old_size, a[1]));
      live_allocations_.erase(a[0]);
    }
  }
  Record(c, {a[0], a[1]}, ret);
  return ret;
}

std::optional<uint64_t> StubTable::TlsGetAddr(const Call& c) {
  // The argument points at {module id, offset in the module's block}.
  const uint8_t* index = Check(c, c.a[0], 16, kR);
  if (index == nullptr) return std::nullopt;
  uint64_t module = 0, offset = 0;
  std::memcpy(&module, index, 8);
  std::memcpy(&offset, index + 8, 8);
  const std::vector<uint64_t>& blocks = sandbox_.tls_offsets();
  if (module == 0 || module > blocks.size()) {
    // ld.so would look the module up and find nothing: a crash.
    Fault(c.uc, static_cast<int>(FaultClass::kReadUnmapped), c.a[0], c.name);
    return std::nullopt;
  }
  return kTlsBase - blocks[module - 1] + offset;
}

uint64_t StubTable::AddCallback(const CallbackType& type, int behaviour) {
  const uint64_t addr = AddressOf(fmt::format("generated callback {}", slot_names_.size() + 1));
  callbacks_[(addr - kStubBase) / kStubSlotBytes] = CallbackSpec{type, behaviour};
  return addr;
}

std::optional<uint64_t> StubTable::Callback(const Call& c, const CallbackType& type,
                                            int behaviour) {
  if (type.ret_width == 0) return std::nullopt;  // void: nothing to answer
  int64_t answer = behaviour == 1 ? 1 : behaviour == 2 ? -1 : 0;
  if (behaviour == 3 || behaviour == 4) {
    const bool pointers = type.params.size() >= 2 && type.params[0] == ValueKind::kPointer &&
                          type.params[1] == ValueKind::kPointer;
    const bool integers = type.params.size() >= 2 && type.params[0] == ValueKind::kInteger &&
                          type.params[1] == ValueKind::kInteger;
    int64_t a = 0, b = 0;
    if (pointers) {
      const uint8_t* pa = Check(c, c.a[0], 1, kR);
      if (pa == nullptr) return std::nullopt;
      const uint8_t* pb = Check(c, c.a[1], 1, kR);
      if (pb == nullptr) return std::nullopt;
      a = *pa;
      b = *pb;
    } else if (integers) {
      a = static_cast<int32_t>(c.a[0]);
      b = static_cast<int32_t>(c.a[1]);
    }
    answer = a < b ? -1 : a > b ? 1 : 0;
    if (behaviour == 4) answer = -answer;
  }
  return static_cast<uint64_t>(answer);
}

void StubTable::OnCall(uc_struct* uc, uint64_t pc) {
  uint64_t slot = (pc - kStubBase) / kStubSlotBytes;
  if (slot == 0 || slot > slot_names_.size() || (pc - kStubBase) % kStubSlotBytes != 0) return;
  Call c{uc, pc, slot_names_[slot - 1], {}};
  int regs[3] = {UC_X86_REG_RDI, UC_X86_REG_RSI, UC_X86_REG_RDX};
  void* vals[3] = {&c.a[0], &c.a[1], &c.a[2]};
  uc_reg_read_batch(uc, regs, vals, 3);
  std::optional<uint64_t> ret;
  if (auto cb = callbacks_.find(slot); cb != callbacks_.end()) {
    ret = Callback(c, cb->second.type, cb->second.behaviour);
    if (ret) uc_reg_write(uc, UC_X86_REG_RAX, &*ret);
    return;
  }
  const Id id = Lookup(c.name);
  switch (id) {
    case Id::kMemcpy:
    case Id::kMemmove:
    case Id::kMemset:
    case Id::kMemcmp:
    case Id::kMemchr:
      ret = MemoryStub(c, static_cast<int>(id));
      break;
    case Id::kStrlen:
    case Id::kStrnlen:
    case Id::kStrcmp:
    case Id::kStrncmp:
    case Id::kStrchr:
    case Id::kStrrchr:
      ret = StringStub(c, static_cast<int>(id));
      break;
    case Id::kMalloc:
    case Id::kCalloc:
    case Id::kRealloc:
    case Id::kFree:
      ret = AllocationStub(c, static_cast<int>(id));
      break;
    case Id::kAbort:
    case Id::kAssertFail:
      return Fault(uc, static_cast<int>(FaultClass::kAbort), pc, c.name);
    case Id::kStackChkFail:
      return Fault(uc, static_cast<int>(FaultClass::kStackSmash), pc, c.name);
    case Id::kTlsGetAddr:
      ret = TlsGetAddr(c);
      break;
    case Id::kUnknown:
      sandbox_.live().Decide(Ending::kInconclusive, FaultClass::kNone, pc,
                             fmt::format("call to unstubbed function '{}'", c.name));
      return Stop(uc);
  }
  // No value: the stub faulted and stopped the run.
  if (ret) uc_reg_write(uc, UC_X86_REG_RAX, &*ret);
}

}  // namespace patchlab::emulator
