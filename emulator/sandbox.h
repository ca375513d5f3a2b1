// Sandbox: one long-lived Unicorn engine that runs one side (old or new) of a
// check, again and again, on different inputs.
//
// Memory is host memory mapped into the engine (uc_mem_map_ptr), so a reset
// is a memcpy and results are read and compared in place, without copies.
// Registers are reset by guest code every run starts at (entry_page.h); the
// whole CPU state (uc_context_restore) only after a run that did not return
// (an exception leaves state behind in the emulated CPU) or set a flag the
// entry code does not reset (AC, TF, IF, ID). Hooks
// are installed once: hooks for unmapped and protected accesses, interrupts
// and system calls, one code hook limited to the stub page that runs library
// stubs (stubs.h), and, unless the sandbox is a fast one, a basic-block hook
// that counts blocks and instructions and stops a run past its budget (a
// hang). Never uses uc_emu_start's count or timeout: both are costly in
// Unicorn 2.0.1.
//
// Three modes (RunMode), one engine each, because Unicorn decides hooks when
// it translates code and adding one later needs a translation flush:
//  - kFast: no block hook. A run the watchdog stopped is reported
//    unsettled; so must the caller treat a run that took longer than
//    RunWatchdog::MinTicksFor(budget) (PairRunner times its runs). Const buffers are mapped
//    read-only (the caller maps argument pages), and a run that wrote through one is unsettled too.
//    Each is re-run in a counting sandbox. Any other run's outcome is the one
//    a counting run gives, except that blocks and insns are 0 (not counted).
//  - kCounted: the block hook; blocks, insns and the budget are exact.
//  - kExact: also an instruction hook, so that a fault's PC is the faulting
//    instruction rather than its block's start (Unicorn issue 1323); several
//    times slower, for re-running counterexamples only.
//
// Thread-safety: none; one Sandbox per thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"
#include "emulator/call_plan.h"
#include "emulator/outcome.h"

struct uc_struct;
struct uc_context;

namespace patchlab::emulator {

class StubTable;
class SyscallLayer;
class RunWatchdog;
struct CpuModel;

enum class RunMode { kFast, kCounted, kExact };

enum class RegionKind {
  kCode,       // read-only image segments, the stub page: never reset or compared
  kImageData,  // writable image segments: restored from a snapshot, compared
  kArg,        // an argument page: refilled by the checker, compared unless
               // read-only (a const buffer in a kFast sandbox)
  kHeap,       // the stub heap: used part cleared, compared
  kStack,      // cleared near the top, not compared (frames differ legitimately)
  kReturn,     // where a hidden return pointer points: refilled, compared as the
               // return value (by its members, not its padding)
};

// The most granules one region of image data is mapped in (Region::granule).
inline constexpr uint64_t kMaxGranules = 256;

struct Region {
  uint64_t addr = 0;
  uint64_t size = 0;
  int prot = 0;  // UC_PROT_*
  RegionKind kind = RegionKind::kCode;
  std::string name;  // "target:seg1", "arg2", "heap"
  uint8_t* host = nullptr;
  std::vector<uint8_t> snapshot;  // kImageData only
  // The part a Reset restores (offsets). Image pages restore the bytes their
  // segments cover: bytes past a segment's end are compared but not restored.
  uint64_t reset_begin = 0;
  uint64_t reset_end = 0;
  // kArg: the bytes the input was placed in (offsets), and whether every
  // other byte is known to still hold kFillByte, so that a Reset need only
  // refill the placed ones.
  uint64_t placed_begin = 0;
  uint64_t placed_end = 0;
  bool clean_outside_placed = false;
  // kImageData: the region is mapped into the engine in granules (a page, or
  // more for regions over kMaxGranules pages), each read-only until the first
  // write to it (a guest store or a stub's), which makes it writable for good
  // and sets its `written` flag. Only written granules are restored and
  // compared: a target's .data and .bss may be megabytes, of which a function
  // writes a few bytes or none, and a granule never written still holds the
  // snapshot.
  // Per granule: kCold (read-only in the engine, holds the snapshot),
  // kWrittenClosed (a stub wrote it; still read-only in the engine until the
  // next Reset or guest store), kOpen (writable in the engine).
  enum GranuleState : uint8_t { kCold, kWrittenClosed, kOpen };
  uint64_t granule = 0;
  std::vector<uint8_t> written;
  std::vector<uint32_t> touched;  // the granules not kCold, in the order they were written
  // The bytes of granule g that Reset restores and Compare looks at.
  uint64_t GranuleBegin(size_t g) const { return std::max(reset_begin, g * granule); }
  uint64_t GranuleEnd(size_t g) const { return std::min(reset_end, (g + 1) * granule); }
};

// How calls are made in a sandbox (call_plan.h): fixed per check.
struct CallShape {
  bool sse_entry = false;    // load xmm0-7 and AL (the SSE entry code)
  uint64_t stack_bytes = 0;  // the stack argument area, a multiple of 16
  ValuePlan ret;             // the return's pieces in registers
  uint64_t return_size = 0;  // bytes of the return's image
  // A hidden return: the guest address of the buffer (in a kReturn region).
  uint64_t return_buffer = 0;
};

// One call's arguments, as CallShape says where they go.
struct CallFrame {
  uint64_t gpr[6] = {};            // rdi, rsi, rdx, rcx, r8, r9
  uint8_t xmm[8][16] = {};         // with CallShape::sse_entry
  uint64_t al = 0;                 // with CallShape::sse_entry
  const uint8_t* stack = nullptr;  // CallShape::stack_bytes bytes for rsp + 8
};

struct SandboxConfig {
  uint64_t max_blocks = 1000000;
  RunMode mode = RunMode::kCounted;
  // Needed by a kFast sandbox; must outlive its runs.
  RunWatchdog* watchdog = nullptr;
  // What `cpuid` answers; nullptr: the baseline x86-64 model. Must outlive
  // the sandbox.
  const CpuModel* cpu = nullptr;
  uint64_t syscall_seed = 1;   // getrandom's bytes (syscalls.h)
  bool deny_syscalls = false;  // SyscallLayer::set_deny_others
};

class Sandbox {
 public:
  // Opens the engine, maps stack, TLS (the thread control block: fs:0 and
  // fs:0x10 point at it, fs:0x28 holds the canary), heap, stub and entry
  // pages and installs the hooks of the mode. (Adding a hook to a running
  // engine would need uc_ctl_flush_tlb, which costs over half a second in
  // Unicorn 2.0.1; a second engine costs a millisecond.) Fails (kInternal)
  // only if Unicorn refuses.
  static Result<std::unique_ptr<Sandbox>> Create(const SandboxConfig& config);
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
  // A stub slot that answers calls as generated callback `behaviour` of
  // `type` (callback.h). Same order of calls, same addresses.
  uint64_t AddCallback(const CallbackType& type, int behaviour);

  // Calls the function at `fn` with no arguments before Freeze, as ld.so
  // calls IFUNC resolvers and a thread's start-up calls initialisers, and
  // returns its rax. Fails naming the fault, hang or inconclusive call that
  // stopped it. REQUIRES: not frozen.
  Result<uint64_t> CallDuringLoad(uint64_t fn);

  // The static TLS blocks of the loaded modules: module k (1-based, as
  // __tls_get_addr and DTPMOD64 number them) starts at fs - offsets[k-1].
  void SetTlsModules(std::vector<uint64_t> offsets) { tls_offsets_ = std::move(offsets); }
  const std::vector<uint64_t>& tls_offsets() const { return tls_offsets_; }

  // Records the state every run starts from. REQUIRES: all mapping done.
  Status Freeze();

  // Host pointer for guest [addr, addr+len) when it lies in one mapped region
  // with every bit of `prot`; nullptr otherwise.
  uint8_t* HostPtr(uint64_t addr, uint64_t len, int prot = 0);
  const uint8_t* HostPtr(uint64_t addr, uint64_t len, int prot = 0) const {
    return const_cast<Sandbox*>(this)->HostPtr(addr, len, prot);
  }
  // Whether a run of this check wrote any granule of image data that
  // [addr, addr+len) touches (Region::written).
  bool WrittenAt(uint64_t addr, uint64_t len) const;
  // The first address of [addr, addr+len) that is not mapped with `prot`,
  // or `addr + len` when all is.
  uint64_t FirstBadByte(uint64_t addr, uint64_t len, int prot);

  // Restores the frozen state: registers, writable image data, TLS, the top of
  // the stack, the heap; argument pages are filled with kFillByte.
  void Reset();

  // The host bytes of [offset, offset+len) of the k-th argument page (in
  // address order), where the caller places an input's buffer; Reset refills
  // them. REQUIRES: after Reset; k < the number of argument pages.
  uint8_t* PlaceInArgPage(size_t k, uint64_t offset, uint64_t len);
  // After a run: the argument pages at `addrs` hold kFillByte everywhere but
  // in their placed bytes (the comparator saw it), so the next Reset need
  // refill only those.
  void MarkCleanArgPages(std::span<const uint64_t> addrs);
  // Whether `addr` lies in an argument page mapped read-only.
  bool InReadOnlyArgPage(uint64_t addr) const;
  // A stub wrote [addr, addr+len) through host memory: marks what it wrote of
  // the image data as written (see Region::written). Not the engine's
  // protection: that changes at the next guest write or Reset.
  void NoteHostWrite(uint64_t addr, uint64_t len);
  // A guest store to [addr, addr+len) hit a read-only granule of image data:
  // makes every granule it covers writable and written, and returns the host
  // bytes, where the engine's memory hook makes the store (Unicorn 2.0.1 goes
  // on past the hook without making it). nullptr when the store covers no
  // such granule (a genuine protection fault) or leaves the region.
  uint8_t* OpenImageData(uint64_t addr, uint64_t len);

  // How every call is made. REQUIRES: before Freeze.
  void SetCallShape(CallShape shape) { shape_ = std::move(shape); }
  const CallShape& call_shape() const { return shape_; }

  // Calls `entry` with `frame` after a Reset the caller did (so that it can
  // place buffers first). The reference stays valid until the next Run.
  const RunOutcome& Run(uint64_t entry, const CallFrame& frame);
  // Whether the last Run's outcome stands as far as the sandbox knows:
  // always in counting modes; in kFast, false when the watchdog stopped it
  // (the caller also checks the run's length, see kFast above).
  bool last_run_settled() const { return settled_; }
  RunMode mode() const { return mode_; }

  const std::vector<Region>& regions() const { return regions_; }
  // The regions a comparison looks at (writable image data, argument pages,
  // the heap), in address order. REQUIRES: frozen.
  std::span<Region* const> compared_regions() const { return compared_; }
  uint64_t heap_used() const;  // bytes of the heap handed out this run
  uint64_t max_blocks() const { return max_blocks_; }
  // Changes the hang budget of later runs (hooks stay as they are).
  void set_max_blocks(uint64_t n);

  // For stubs (stubs.cc) and hooks: the state of the run in progress.
  struct Live;
  Live& live() { return *live_; }

 private:
  Sandbox() = default;
  Status AddHooks();
  Status MapFixedPages();
  // After a run that faulted: the fault's PC (rip as Unicorn left it), and
  // whether an invalid instruction is one a real CPU would run.
  void LocateFault(uint64_t rip);
  void JudgeInvalidInstruction();
  // After a run that returned: the return value's image (shape_).
  void ReadReturnImage();
  // Whether the instruction just before `rip` is a `hlt` in executable code.
  bool AfterHlt(uint64_t rip);
  // Makes granule g of image data region r writable in the engine.
  void Open(Region& r, size_t g);

  uc_struct* uc_ = nullptr;
  uint8_t* entry_page_ = nullptr;  // host side of the entry page
  uc_context* context_ = nullptr;  // the CPU as frozen, for after exceptions
  bool restore_context_ = false;
  std::vector<Region> regions_;
  std::vector<Region*> resettable_;  // all but kCode, from Freeze on
  std::vector<Region*> args_;        // the kArg ones
  std::vector<Region*> compared_;    // kImageData, kArg, kHeap, in address order
  // Granules a stub marked written whose engine mapping is still read-only:
  // (region, granule index), opened at the next Reset.
  std::vector<std::pair<Region*, size_t>> to_open_;
  uint64_t entry_written_ = 0;   // the function the entry page jumps to
  uint8_t* ret_slot_ = nullptr;  // host side of the return address at kInitialRsp
  std::unique_ptr<Live> live_;
  std::unique_ptr<StubTable> stubs_;
  std::unique_ptr<SyscallLayer> syscalls_;
  const CpuModel* cpu_ = nullptr;
  std::vector<uint64_t> tls_offsets_;
  CallShape shape_;
  uint64_t max_blocks_ = 0;
  RunMode mode_ = RunMode::kCounted;
  RunWatchdog* watchdog_ = nullptr;
  bool frozen_ = false;
  bool settled_ = true;
  friend class StubTable;
  friend class SyscallLayer;
};

}  // namespace patchlab::emulator
