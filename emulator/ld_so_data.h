// LdSoData: what a sandbox puts where a process has ld.so's variables.
//
// glibc's libraries read data that ld.so defines and fills at start-up:
// `_rtld_global_ro` (the page size, the clock tick, and `cpu_features`, the
// CPU features ld.so found, which every IFUNC resolver of libc reads instead
// of running cpuid), `_rtld_global`, `__libc_stack_end`, ... The sandbox does
// not load ld.so (its functions are stubs), so references to those variables
// get zero-filled storage of the size ld.so gives them, with these fields
// filled as ld.so would, when ld.so's DWARF (libc6-dbg) gives their offsets:
//   _dl_pagesize 4096, _dl_clktck 100, _dl_minsigstacksize 2048, and in
//   cpu_features the cpuid and active words of leaves 1, 7 and 0x80000001
//   as the CPU model answers them (cpu_model.h).
// glibc's preferences derived from the CPU's family and model
// (Fast_Unaligned_Copy, Prefer_No_VZEROUPPER, ...) and the cache sizes are
// left 0: a resolver picks by the features alone. Without ld.so's DWARF
// everything stays 0, which every glibc resolver reads as a baseline x86-64
// CPU; any other model then fails (Create).
//
// Thread-safety: immutable after Create.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/elf_file.h"
#include "base/error.h"
#include "emulator/cpu_model.h"

namespace patchlab::emulator {

class LdSoData {
 public:
  // Reads the sizes of the data symbols `libraries` (glibc's, not loaded)
  // define, and ld.so's layout from its debug file when it is among them.
  // Fails when `cpu` is not the baseline and ld.so's DWARF cannot be read.
  static Result<LdSoData> Create(const std::vector<std::string>& libraries, const CpuModel& cpu);
  LdSoData() = default;

  // The size the defining library gives data symbol `name`; 0 when none
  // defines it.
  uint64_t SizeOf(std::string_view name) const;
  // The bytes a variable `name` of `size` bytes starts with.
  std::vector<uint8_t> InitialBytes(std::string_view name, uint64_t size) const;

 private:
  std::map<std::string, uint64_t, std::less<>> sizes_;
  // _rtld_global_ro's initial bytes beyond zeros: (offset, bytes).
  std::vector<std::pair<uint64_t, std::vector<uint8_t>>> rtld_global_ro_;
};

}  // namespace patchlab::emulator
