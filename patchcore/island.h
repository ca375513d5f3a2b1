// Island: the machine code of a trampoline. Each patched function gets a slot
// in an island page near its module (within rel32 reach):
//     slot:  ff 25 00 00 00 00      jmp [rip+0]
//            <8-byte address>       the live replacement
// and its entry (after an endbr64) becomes `e9 rel32` straight to the live
// replacement when that is within rel32 reach (the patch object is mapped near
// its target, so it nearly always is: a call then costs one direct jump), and
// to the slot otherwise; padded with int3 up to the whole instructions it
// replaced. Stacking another patch on the same function rewrites the slot's
// 8 bytes and, when it jumps straight, the entry's rel32.
// The first kIslandHeaderSize bytes of an island page are a marker that names
// it as ours (magic, pid, process start time), then a spin stub for injected
// system calls (`syscall; jmp .`, see remote_syscall.h). The last
// kSaveAreaSize bytes keep the registers of a thread while it runs them.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "patchcore/remote_ptr.h"

namespace patchlab::patchcore {

inline constexpr uint64_t kIslandPageSize = 4096;
inline constexpr uint64_t kIslandHeaderSize = 64;
inline constexpr uint64_t kSlotSize = 16;
inline constexpr uint64_t kSlotAddressOffset = 6;
inline constexpr char kIslandMagic[16] = "HOTPATCH-ISLAND";
inline constexpr uint64_t kIslandStubOffset = 32;
inline constexpr uint8_t kIslandStub[4] = {0x0f, 0x05, 0xeb, 0xfe};  // syscall; jmp .
inline constexpr uint64_t kSaveAreaSize = 256;
inline constexpr uint64_t kSaveAreaOffset = kIslandPageSize - kSaveAreaSize;
// Save area: this magic, the thread id (8 bytes), its user_regs_struct.
inline constexpr char kSaveAreaMagic[16] = "HOTPATCH-REGS";
// Slots lie between the header and the save area.
inline constexpr uint64_t kIslandSlotsEnd = kSaveAreaOffset;

// The 14 bytes of a slot that jumps to `target`.
inline std::vector<uint8_t> EncodeSlot(RemotePtr target) {
  std::vector<uint8_t> out = {0xff, 0x25, 0, 0, 0, 0};
  uint64_t a = target.addr();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(a >> (8 * i)));
  return out;
}

inline std::vector<uint8_t> EncodeAddress(RemotePtr target) {
  std::vector<uint8_t> out;
  uint64_t a = target.addr();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(a >> (8 * i)));
  return out;
}

// `jmp rel32` at `at` to `to`, padded with int3 to `size` bytes; nullopt when
// `to` is out of rel32 reach.
inline std::optional<std::vector<uint8_t>> EncodeEntryJump(RemotePtr at, RemotePtr to,
                                                           uint32_t size) {
  int64_t rel = static_cast<int64_t>(to.addr()) - static_cast<int64_t>(at.addr() + 5);
  if (rel < INT32_MIN || rel > INT32_MAX) return std::nullopt;
  std::vector<uint8_t> out = {0xe9};
  auto r = static_cast<uint32_t>(static_cast<int32_t>(rel));
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(r >> (8 * i)));
  out.resize(size, 0xcc);
  return out;
}

// The entry jump of a site whose live replacement is `target`: straight there
// when in reach, else through the site's `slot`.
inline std::optional<std::vector<uint8_t>> EncodeSiteJump(RemotePtr at, RemotePtr target,
                                                          RemotePtr slot, uint32_t size) {
  if (auto direct = EncodeEntryJump(at, target, size)) return direct;
  return EncodeEntryJump(at, slot, size);
}

}  // namespace patchlab::patchcore
