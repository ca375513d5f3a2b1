// CodeCave: room for a spin stub in a module's own executable pages, for the
// injected system calls made while a process has no island page to run them
// from (the mmap of its first island, the munmap of its last).
//
// An executable segment rarely ends on a page boundary: the bytes from its
// last byte to the end of that page are mapped executable but belong to no
// section, and no code of the program refers to them. A cave is such a tail
// of at least kCaveSize zero bytes (what linkers put there), in a private
// file mapping or in the vdso (which every process has, statically linked
// ones included; the kernel lets a tracer write it, as a debugger's
// breakpoints do, into the process's own copy):
//     cave:      0f 05 eb fe            syscall; jmp .   (kIslandStub)
//     cave + 8:  save area              kSaveAreaMagic, thread id, registers
// Written through /proc/PID/mem (the page becomes a private copy of its
// file page: 4 KiB of the process's memory) only while a call runs, and
// zeroed again after. A patcher killed meanwhile leaves the thread spinning
// at the `jmp .` with its registers in the save area, never running the
// program's code with the patcher's registers (which crashes it); `hotpatch
// recover` puts them back and zeroes the cave (RestoreStrandedThreads).
//
// Thread-safety: pure functions of a snapshot.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "patchcore/process_maps.h"
#include "patchcore/process_memory.h"
#include "patchcore/remote_ptr.h"

namespace patchlab::patchcore {

inline constexpr uint64_t kCaveStubOffset = 0;
inline constexpr uint64_t kCaveSaveOffset = 8;
// The stub, then the save area (magic, thread id, user_regs_struct).
inline constexpr uint64_t kCaveSize = kCaveSaveOffset + 16 + 8 + 216;

// What FindCodeCaves looks for in a cave.
enum class CaveState {
  kFree,     // all zero: free to use
  kHolding,  // a stub with its save area: a patcher's, for recovery
};

// The caves in state `state` after the executable PT_LOAD segments of the
// modules `maps` shows, the vdso included (their program headers read from
// each module's first mapping in `memory`), at least kCaveSize bytes, 8-byte
// aligned, in address order; at most `most` (the first ones: a patcher needs
// one, and the rest would cost reads).
std::vector<RemotePtr> FindCodeCaves(const ProcessMemory& memory, const ProcessMaps& maps,
                                     CaveState state, size_t most = SIZE_MAX);

}  // namespace patchlab::patchcore
