// Checker: the semantic check of one patched function. Runs the old function
// (from the target ELF) and the new one (from the patch object, or the same
// file) side by side under Unicorn on generated inputs, compares everything
// they do (comparator.h), lets declared expected divergences (expect.h) pass,
// shrinks one counterexample per kind of divergence (shrinker.h) and re-runs
// it with exact fault addresses.
//
// Verdicts, from worst: new-crash and new-hang (new faults or hangs where old
// did not), diverges (any other unexpected difference), inconclusive (some
// input could not be judged: unsupported instruction, system call, unstubbed
// library call; the reason names it), expected-divergence (every difference
// matched an --expect), equivalent. Same options and seed: same result.
//
// This is the API the lab's runner calls before VMs boot; `patchlab check` is
// a thin command line over it.
//
// Thread-safety: RunCheck may run concurrently on distinct options.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "emulator/comparator.h"
#include "emulator/input.h"
#include "emulator/pair_runner.h"
#include "emulator/signature.h"

namespace patchlab::emulator {

struct CheckOptions {
  FunctionRef old_fn;
  FunctionRef new_fn;
  std::string signature;    // C prototype; empty: from DWARF of the old ELF
  uint64_t inputs = 10000;  // input pairs to run
  uint64_t seed = 1;
  std::vector<std::string> expects;  // expect.h expressions
  std::string corpus_dir;            // empty: none
  uint64_t max_blocks = 1000000;     // basic blocks before a run counts as hung
  int shrink_evaluations = 1000;     // per counterexample
  // Instructions are counted on every Nth input (1: all): counting costs a
  // hook call per basic block, a fifth of a short function's run time.
  uint64_t count_every = 32;
  bool listing = false;  // fill CheckResult::listing
  // The CPU model IFUNC resolvers and cpuid see (cpu_model.h); "" is the
  // baseline x86-64.
  std::string cpu;
  // System calls the deterministic layer does not answer are refused with
  // -ENOSYS and compared, instead of making the input inconclusive.
  bool deny_syscalls = false;
};

enum class Verdict {
  kEquivalent,
  kExpectedDivergence,
  kDiverges,
  kNewCrash,
  kNewHang,
  kInconclusive
};

std::string_view VerdictName(Verdict v);
// 0 equivalent / expected-divergence, 1 diverges / new-crash / new-hang, 3 inconclusive.
int VerdictExitCode(Verdict v);

struct Counterexample {
  std::string kind;        // DivergenceKindName
  Input input;             // minimized
  std::string input_text;  // RenderInput
  std::string old_result;  // DescribeOutcome of the exact re-run
  std::string new_result;
  std::string detail;     // first differing byte, fault address, ...
  uint64_t found_at = 0;  // index of the first input that showed this kind
};

struct CheckResult {
  Verdict verdict = Verdict::kEquivalent;
  std::string signature;         // as used
  std::string signature_source;  // "--sig" or "DWARF"
  uint64_t inputs_run = 0;
  uint64_t divergent_inputs = 0;  // inputs with an unexpected difference
  uint64_t expected_inputs = 0;   // inputs whose difference matched an --expect
  uint64_t inconclusive_inputs = 0;
  // Inputs on which both sides returned (rather than faulted, hung or could
  // not be judged): how much of the function the inputs reached.
  uint64_t returned_inputs = 0;
  std::string inconclusive_reason;              // of the first inconclusive input
  std::vector<Counterexample> counterexamples;  // one per kind, in order of discovery
  uint64_t insns_old = 0;                       // instructions executed on the counted inputs
  uint64_t insns_new = 0;
  uint64_t insns_inputs = 0;  // inputs whose instructions were counted (see count_every)
  std::string listing;        // with CheckOptions::listing
  // How the functions were found, when a reader should know (an IFUNC's
  // implementation); the CPU model and the system-call layer's seed.
  std::vector<std::string> notes;
  std::string cpu;
  uint64_t syscall_seed = 0;
};

// Runs the whole check. Fails (and runs nothing) on setup errors: a file or
// symbol that is missing, a signature that cannot be parsed or derived, an
// expect that does not parse, an unreadable corpus.
Result<CheckResult> RunCheck(const CheckOptions& options);

// The signature from --sig, or else from the old ELF's DWARF (or its debug
// file found by build-id). Sets *source to "--sig" or "DWARF".
Result<Signature> ResolveSignature(const CheckOptions& options, std::string* source);

// Human-readable report; one JSON object (keys verdict, inputs_run,
// counterexamples [kind, input, old, new, detail], insns_old, insns_new, ...).
std::string FormatText(const CheckResult& r);
std::string FormatJson(const CheckResult& r);

}  // namespace patchlab::emulator
