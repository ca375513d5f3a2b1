// EhFrameIndex: where a loaded module's unwind tables lie in a process (its
// .eh_frame_hdr search table) and the bytes of its read-only segments, both
// taken from the module's decoded file (ElfCache, shared by every process of
// an `apply --system`). The stack check hands the table to libunwind and
// serves the table's and the FDEs' reads from these bytes, so unwinding a
// process opens, maps and parses no file and reads no /proc/PID/maps of its
// own (libunwind-ptrace did all three per module and per process).
//
// Only segments mapped without write and execute permission are served:
// their bytes in memory are the file's (the loader relocates writable
// segments, and patches only ever change code).
//
// Thread-safety: an immutable value; it refers to the module's ElfFile,
// which must outlive it.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "patchcore/module_set.h"

namespace patchlab::patchcore {

struct EhFrameIndex {
  // Runtime addresses.
  uint64_t header = 0;  // .eh_frame_hdr, the base of its table's offsets
  uint64_t table = 0;   // its sorted (initial location, FDE) pairs
  uint64_t fde_count = 0;
  RemoteRange module;  // every mapping of the module

  struct Segment {
    uint64_t start = 0;              // runtime address
    std::span<const uint8_t> bytes;  // the file's bytes for it
  };
  std::vector<Segment> read_only;

  // The 8 bytes at runtime address `addr` when they lie wholly in a
  // read-only segment; nullopt otherwise (read the process's memory).
  std::optional<uint64_t> ReadWord(uint64_t addr) const;
};

// The index of `module`; nullopt when its file has no .eh_frame_hdr with a
// search table in the encoding every GNU linker writes (4-byte offsets from
// the header): such a module is left to libunwind-ptrace.
std::optional<EhFrameIndex> IndexEhFrame(const LoadedModule& module);

}  // namespace patchlab::patchcore
