// PairRunner: the old and the new function, each in its own long-lived
// Sandbox, run on the same input and compared.
//
// The old side maps the old ELF. The new side maps the old ELF too (the
// target) and, when the new function lives in another file (a patch object),
// that file at kPatchBase, its undefined references resolved against the
// target's symbols (private ones included) before library stubs. So a patch
// that calls the target's internal helpers or writes its globals does so in
// the mapped target, and those writes are compared with the old side's.
// Both sides also map the shared libraries the images need (DT_NEEDED,
// transitively, found in the usual system folders or beside the image), except
// glibc's own (libc, libm, libpthread, libdl, librt, ld.so), whose functions
// go to stubs: a call into libz runs libz's real code.
//
// Each side has a fast sandbox (no block hook) and a counting one (sandbox.h);
// a fast run that cannot be settled is run again in its side's counting
// sandbox, so the outcome never depends on which sandbox answered.
//
// Thread-safety: none; one PairRunner per thread.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "base/elf_file.h"
#include "base/error.h"
#include "emulator/callback.h"
#include "emulator/comparator.h"
#include "emulator/cpu_model.h"
#include "emulator/image_linker.h"
#include "emulator/input.h"
#include "emulator/ld_so_data.h"
#include "emulator/run_watchdog.h"
#include "emulator/sandbox.h"
#include "emulator/side_layout.h"
#include "emulator/signature.h"

namespace patchlab::emulator {

// "ELF:SYMBOL": a file and a function in it (a symbol name, name@VERSION, a
// C++ name such as Pricer::Quote or Pricer::Quote(std::string const&) const,
// or 0xADDR for a stripped file). The ':' that separates them is the last
// one not part of a '::'.
struct FunctionRef {
  std::string elf;
  std::string symbol;
  // Parses "path:symbol". Fails (kInvalidArgument) without a ':' or a part.
  static Result<FunctionRef> Parse(std::string_view text);
  std::string ToString() const { return elf + ":" + symbol; }
};

// Where a function ended up in its sandbox.
struct LoadedFunction {
  std::shared_ptr<const ElfFile> elf;
  uint64_t entry = 0;  // guest address
  uint64_t size = 0;   // from the symbol; 0 when unknown
  uint64_t link_address = 0;
};

struct PairOutcome {
  const RunOutcome* old_out = nullptr;  // valid until the next Run
  const RunOutcome* new_out = nullptr;
  std::optional<Divergence> divergence;
  // Blocks and insns of both outcomes were counted (a counting or exact run,
  // or fast runs that both had to be re-run).
  bool counted = false;
};

struct PairOptions {
  uint64_t max_blocks = 1000000;
  std::string cpu;    // cpu_model.h; "" is the baseline x86-64
  uint64_t seed = 1;  // of the system-call layer's getrandom bytes
  // Refuse system calls the layer does not answer with -ENOSYS (compared)
  // instead of ending the run inconclusive (syscalls.h).
  bool deny_syscalls = false;
};

class PairRunner {
 public:
  // Opens both ELFs, builds both sides' sandboxes (side_layout.h,
  // image_linker.h) and finds both functions (an IFUNC: the implementation
  // its resolver picks on the CPU model). Fails naming the file or symbol
  // that is missing or cannot be loaded, or an unknown CPU model.
  static Result<std::unique_ptr<PairRunner>> Create(const Signature& sig, const FunctionRef& old_fn,
                                                    const FunctionRef& new_fn,
                                                    const PairOptions& options);
  static Result<std::unique_ptr<PairRunner>> Create(const Signature& sig, const FunctionRef& old_fn,
                                                    const FunctionRef& new_fn, uint64_t max_blocks);

  // Runs both functions on `in` and compares them. kFast: without the
  // block hook, re-run counted when a side cannot settle (the outcome is the
  // same as kCounted's; only `counted` and the counts may differ). kCounted:
  // blocks and instructions counted. kExact: fault addresses are exact
  // instructions (slow; for reports).
  PairOutcome Run(const Input& in, RunMode mode = RunMode::kFast);

  const LoadedFunction& old_function() const { return old_fn_; }
  const LoadedFunction& new_function() const { return new_fn_; }
  const Signature& signature() const { return sig_; }
  // The hang budget of both sides' later runs.
  void SetMaxBlocks(uint64_t n);
  // Fast runs (one side each) that had to be re-run counted (for benchmarks
  // and tests).
  uint64_t fast_reruns() const { return fast_reruns_; }
  // What a report should say about how the functions were found (an IFUNC's
  // implementation, ...).
  const std::vector<std::string>& notes() const { return notes_; }
  const std::string& cpu_name() const { return cpu_.name; }

 private:
  PairRunner() = default;
  // Puts `in` where the call plan says: registers and stack in `frame`,
  // pointees in their argument pages.
  void Place(Sandbox& sb, int side, const Input& in, CallFrame& frame);
  // A pointer argument's address after placing its bytes in page `page`.
  uint64_t PlacePointer(Sandbox& sb, size_t i, size_t page, const Input& in);
  // The address a pointer or function-pointer argument passes (0 for others).
  uint64_t Address(Sandbox& sb, int side, size_t i, size_t* page, const Input& in);
  // The call's shape in `sb`, with the hidden return's buffer when it has one.
  Status MapReturnBuffer(Sandbox& sb);
  // The functions `fn = NAME` annotations name, in side `side`'s program.
  Status FindCallbackTargets(ImageLinker& linker, int side);
  // A sandbox for one side (0 old, 1 new), frozen and ready to run.
  Result<std::unique_ptr<Sandbox>> BuildSide(int side, RunMode mode);
  // Records where side `side`'s function runs (`entry`, a guest address).
  void SetFunction(int side, const SideLayout& layout, uint64_t entry);
  void AddNote(std::string note);  // once
  // Separate address spaces: the programs' variables matched by name.
  void PairGlobals();
  // Resets `sb`, places `in` and runs side `side` (0 old, 1 new) there; sets
  // ran_[side].
  const RunOutcome& RunIn(Sandbox& sb, int side, const Input& in);
  Sandbox& SandboxFor(int side, RunMode mode);

  Signature sig_;
  CallPlan plan_;
  uint64_t return_buffer_ = 0;
  std::vector<uint8_t> stack_args_;  // the current call's stack arguments
  // The current call's registers: kept, so that a run does not clear 128
  // bytes of xmm arguments that only a call with SSE arguments reads (Place
  // sets them then).
  CallFrame frame_;
  // Per parameter: the generated callbacks' stub addresses (same in every
  // sandbox), and the named targets' addresses per side.
  std::map<size_t, std::array<uint64_t, kCallbackBehaviours>> callback_slots_;
  std::map<size_t, uint64_t> callback_targets_[2];
  PairLayout layout_;
  SeparateSpaces separate_;
  CpuModel cpu_;
  LdSoData ld_so_;
  IfuncCache ifuncs_[2];  // per side
  uint64_t syscall_seed_ = 1;
  bool deny_syscalls_ = false;
  std::vector<std::string> notes_;
  uint64_t max_blocks_ = 0;
  uint64_t fast_reruns_ = 0;
  uint64_t fast_tick_limit_ = 0;          // RunWatchdog::MinTicksFor(max_blocks_)
  bool split_timing_ = false;             // time the next fast pair a side at a time
  Sandbox* ran_[2] = {nullptr, nullptr};  // where each side of the last Run ran
  std::unique_ptr<Sandbox> old_fast_, new_fast_;
  std::unique_ptr<Sandbox> old_counted_, new_counted_;
  std::unique_ptr<Sandbox> old_exact_, new_exact_;  // made on the first exact run
  LoadedFunction old_fn_, new_fn_;
  // Declared last: destroyed first, before the engines it may stop.
  std::unique_ptr<RunWatchdog> watchdog_;
};

// Finds `symbol` in `elf`: a name, name@VERSION, a C++ name with or without
// its parameter list, or 0xADDR (base/function_name.h). Fails naming both
// when absent, not a function, or an overload set named without parameters.
Result<const ElfSymbol*> FindFunction(const ElfFile& elf, const std::string& symbol,
                                      uint64_t* address);

}  // namespace patchlab::emulator
