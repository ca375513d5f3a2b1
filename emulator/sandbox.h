// Sandbox: one long-lived Unicorn engine that runs one side (old or new) of a
// check, again and again, on different inputs.
//
// Memory is host memory mapped into the engine (uc_mem_map_ptr), so a reset
// is a memcpy and results are read and compared in place, without copies.
// Registers are reset with uc_context_restore. Hooks are installed once: a
// basic-block hook that counts blocks and instructions and stops a run past its
// budget (a hang), hooks for unmapped and protected accesses, interrupts and
// system calls, and one code hook limited to the stub page that runs library
// stubs (stubs.h). Never uses uc_emu_start's count or timeout: both are costly
// in Unicorn 2.0.1.
//
// Thread-safety: none; one Sandbox per thread.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/error.h"
#include "emulator/outcome.h"

struct uc_struct;
struct uc_context;

namespace patchlab::emulator {

class StubTable;

enum class RegionKind {
  kCode,       // read-only image segments, the stub page: never reset or compared
  kImageData,  // writable image segments: restored from a snapshot, compared
  kArg,        // an argument page: refilled by the checker, compared
  kHeap,       // the stub heap: used part cleared, compared
  kStack,      // cleared near the top, not compared (frames differ legitimately)
  kTls,        // the stack-protector page: restored from a snapshot
};

struct Region {
  uint64_t addr = 0;
  uint64_t size = 0;
  int prot = 0;  // UC_PROT_*
  RegionKind kind = RegionKind::kCode;
  std::string name;  // "target:seg1", "arg2", "heap"
  uint8_t* host = nullptr;
  std::vector<uint8_t> snapshot;  // kImageData and kTls only
  // The part a Reset restores (offsets). Image pages restore the bytes their
  // segments cover: bytes past a segment's end are compared but not restored.
  uint64_t reset_begin = 0;
  uint64_t reset_end = 0;
};

class Sandbox {
 public:
  // Opens the engine, maps stack, TLS, heap and stub page and installs hooks.
  // With `exact`, also an instruction hook, so that a fault's PC is the
  // faulting instruction rather than its block's start (Unicorn issue 1323);
  // that is several times slower, for re-running counterexamples only. (Adding
  // the hook to a running engine would need uc_ctl_flush_tlb, which costs
  // over half a second in Unicorn 2.0.1; a second engine costs a millisecond.)
  // Fails (kInternal) only if Unicorn refuses.
  static Result<std::unique_ptr<Sandbox>> Create(uint64_t max_blocks, bool exact = false);
  ~Sandbox();
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

  // Maps [addr, addr+size) (page-aligned) with `prot`; returns the host memory
  // backing it, zero-filled. Fails when it overlaps a mapped region.
  Result<uint8_t*> Map(uint64_t addr, uint64_t size, int prot, RegionKind kind, std::string name);

  // Narrows what Reset restores in the region mapped at `addr` to
  // [addr + begin, addr + end). REQUIRES: a region mapped at `addr`.
  void SetResetRange(uint64_t addr, uint64_t begin, uint64_t end);

  // The guest address a call to library function `name` should reach: a stub
  // slot when the function is stubbed, else a slot that ends the run as
  // inconclusive naming the function. Same name, same slot.
  uint64_t StubAddress(const std::string& name);

  // Records the state every run starts from. REQUIRES: all mapping done.
  Status Freeze();

  // Host pointer for guest [addr, addr+len) when it lies in one mapped region
  // with every bit of `prot`; nullptr otherwise.
  uint8_t* HostPtr(uint64_t addr, uint64_t len, int prot = 0);
  // The first address of [addr, addr+len) that is not mapped with `prot`,
  // or `addr + len` when all is.
  uint64_t FirstBadByte(uint64_t addr, uint64_t len, int prot);

  // Restores the frozen state: registers, writable image data, TLS, the top of
  // the stack, the heap; argument pages are filled with kFillByte.
  void Reset();

  // Calls `entry` with integer arguments `args` (at most 6) after a Reset the
  // caller did (so that it can place buffers first). The reference stays valid
  // until the next Run.
  const RunOutcome& Run(uint64_t entry, std::span<const uint64_t> args);

  const std::vector<Region>& regions() const { return regions_; }
  uint64_t heap_used() const;  // bytes of the heap handed out this run
  uint64_t max_blocks() const { return max_blocks_; }
  // Changes the hang budget of later runs (hooks stay as they are).
  void set_max_blocks(uint64_t n);

  // For stubs (stubs.cc) and hooks: the state of the run in progress.
  struct Live;
  Live& live() { return *live_; }

 private:
  Sandbox() = default;

  uc_struct* uc_ = nullptr;
  uc_context* context_ = nullptr;
  std::vector<Region> regions_;
  std::unique_ptr<Live> live_;
  std::unique_ptr<StubTable> stubs_;
  uint64_t max_blocks_ = 0;
  bool frozen_ = false;
  bool exact_ = false;
  friend class StubTable;
};

}  // namespace patchlab::emulator
