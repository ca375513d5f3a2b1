// PairRunner's three ways of running a pair (fast without the block hook,
// counted, exact) on real compiled fixtures: every run starts from the same
// CPU state, a fast run gives the counted run's outcome, and a fast run that
// may have passed the block budget is judged by the budget.
#include "emulator/pair_runner.h"

#include <gtest/gtest.h>

#include "emulator/input_generator.h"
#include "emulator/layout.h"
#include "tests/support/status_matchers.h"

using ::testing::HasSubstr;

namespace patchlab::emulator {
namespace {

Signature Sig(const char* text) {
  auto s = ParseSignature(text);
  EXPECT_OK(s);
  return *s;
}

std::unique_ptr<PairRunner> Runner(const Signature& sig, const char* old_sym, const char* new_sym,
                                   uint64_t max_blocks = 1000000) {
  auto pr =
      PairRunner::Create(sig, {FIXTURE_TARGET, old_sym}, {FIXTURE_TARGET, new_sym}, max_blocks);
  EXPECT_OK(pr);
  return pr ? std::move(*pr) : nullptr;
}

Input Integers(std::initializer_list<uint64_t> values) {
  Input in;
  for (uint64_t v : values) in.args.push_back(ArgValue{v, false, {}});
  return in;
}

// Everything a RunOutcome says except its cost and the block a memory fault
// happened in (only exact runs name the instruction; fast runs name none).
std::string Describe(const RunOutcome& o) {
  RunOutcome plain = o;
  if (!o.fault_pc_exact) plain.fault_pc = 0;
  std::string s = DescribeOutcome(plain) + fmt::format(" ret={:#x} where={}", o.ret, o.where);
  for (const StubCall& c : o.calls) s += " " + c.ToString();
  return s;
}

// The divergence by its kind: its detail quotes the outcomes, fault blocks
// included.
std::string Describe(const PairOutcome& o) {
  return "old: " + Describe(*o.old_out) + "\nnew: " + Describe(*o.new_out) + "\ndivergence: " +
         (o.divergence ? std::string(DivergenceKindName(o.divergence->kind)) : "none");
}

// Both fixtures return 0 when nothing of an earlier run is left and leave
// something behind when x != 0: leaves_state in registers, flags, MXCSR and
// the x87 control word; stack_residue in stack bytes at three depths.
TEST(PairRunner, EveryRunStartsFromTheSameCpuStateAndStack) {
  Signature sig = Sig("uint64_t f(uint64_t x)");
  for (const char* fixture : {"leaves_state", "stack_residue"}) {
    SCOPED_TRACE(fixture);
    auto pr = Runner(sig, fixture, fixture);
    ASSERT_NE(pr, nullptr);
    for (RunMode mode : {RunMode::kFast, RunMode::kCounted, RunMode::kExact}) {
      SCOPED_TRACE(static_cast<int>(mode));
      for (uint64_t x : {0x1234ull, 0ull, 0xffffull, 7ull, 0ull}) {
        PairOutcome o = pr->Run(Integers({x}), mode);
        ASSERT_EQ(o.old_out->ending, Ending::kReturned) << Describe(o);
        EXPECT_EQ(o.old_out->ret, 0u) << "state left by the run before x=" << x << ":\n"
                                      << Describe(o);
        EXPECT_EQ(o.new_out->ret, 0u) << Describe(o);
      }
    }
  }
}

// Fast and counted runs of the same inputs, interleaved so that each mode
// follows runs of the other: faults and exceptions (which leave state in the
// emulated CPU), stubs and the heap, returns.
TEST(PairRunner, FastRunsGiveTheCountedOutcome) {
  struct Case {
    const char* sig;
    const char* old_sym;
    const char* new_sym;
  } cases[] = {
      {"int table_get(const int *table /* 64 bytes */, int i)", "table_get",
       "table_get_off_by_one"},
      {"int safe_div(int a, int b)", "safe_div", "safe_div_fixed"},
      {"size_t dup_upper(const char *s, char *out /* 32 bytes */)", "dup_upper", "dup_upper_leaks"},
      {"int f(const char *buf /* nonnull */, size_t len)", "ends_with_newline",
       "ends_with_newline_unchecked"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.new_sym);
    Signature sig = Sig(c.sig);
    auto pr = Runner(sig, c.old_sym, c.new_sym);
    ASSERT_NE(pr, nullptr);
    InputGenerator gen(sig, 3);
    int faults = 0, divergences = 0;
    for (int i = 0; i < 300; ++i) {
      Input in = gen.Next();
      PairOutcome fast = pr->Run(in, RunMode::kFast);
      std::string fast_text = Describe(fast);
      faults += fast.old_out->ending == Ending::kFault || fast.new_out->ending == Ending::kFault;
      divergences += fast.divergence.has_value();
      PairOutcome counted = pr->Run(in, RunMode::kCounted);
      EXPECT_TRUE(counted.counted);
      EXPECT_GT(counted.old_out->insns, 0u);
      ASSERT_EQ(fast_text, Describe(counted)) << "input " << i << ": " << RenderInput(sig, in);
    }
    EXPECT_GT(divergences, 0) << "each pair differs on some inputs";
    if (std::string_view(c.old_sym) != "dup_upper") {
      EXPECT_GT(faults, 0);
    }
  }
}

TEST(PairRunner, BytesWrittenAroundABufferAreRefilledBeforeTheNextRun) {
  // Resets refill only the placed bytes of pages a run left alone: a page
  // written outside them must be refilled whole.
  Signature sig = Sig("int scribble(unsigned char *buf /* 4 bytes */, int write)");
  auto pr = Runner(sig, "scribble", "scribble");
  ASSERT_NE(pr, nullptr);
  for (RunMode mode : {RunMode::kFast, RunMode::kCounted}) {
    for (int write : {0, 1, 0, 1, 1, 0}) {
      Input in;
      in.args.push_back(ArgValue{0, false, {1, 2, 3, 4}});
      in.args.push_back(ArgValue{static_cast<uint64_t>(write), false, {}});
      PairOutcome o = pr->Run(in, mode);
      EXPECT_EQ(o.old_out->ret, kFillByte) << Describe(o);
      EXPECT_EQ(o.new_out->ret, kFillByte) << Describe(o);
      EXPECT_FALSE(o.divergence.has_value()) << Describe(o);
    }
  }
}

Input Buffer(std::string_view text) {
  Input in;
  in.args.push_back(ArgValue{0, false, std::vector<uint8_t>(text.begin(), text.end())});
  in.args.push_back(ArgValue{text.size(), false, {}});
  return in;
}

TEST(PairRunner, AWriteThroughAConstBufferIsSeenAsAWrite) {
  // Fast sandboxes map const buffers read-only; a function that writes
  // through one anyway (itself or through a library call) changes the
  // caller's bytes, as it would in a real process: the pages differ, and
  // nothing faulted.
  Signature sig = Sig("int f(const char *buf, size_t len)");
  for (const char* writer : {"stamp_const", "stamp_const_memset"}) {
    SCOPED_TRACE(writer);
    auto pr = Runner(sig, "stamp_const_not", writer);
    ASSERT_NE(pr, nullptr);
    for (RunMode mode : {RunMode::kFast, RunMode::kCounted}) {
      PairOutcome o = pr->Run(Buffer("read only"), mode);
      EXPECT_FALSE(o.divergence.has_value()) << Describe(o);
      o = pr->Run(Buffer("write here"), mode);
      EXPECT_EQ(o.new_out->ending, Ending::kReturned) << Describe(o);
      EXPECT_EQ(o.new_out->ret, static_cast<uint64_t>('w')) << Describe(o);
      ASSERT_TRUE(o.divergence.has_value()) << Describe(o);
      EXPECT_EQ(o.divergence->kind, DivergenceKind::kMemory) << o.divergence->detail;
      EXPECT_THAT(o.divergence->detail, HasSubstr("new 0x21")) << o.divergence->detail;
      // The fill around the buffer is whole again for the next input.
      o = pr->Run(Buffer("read"), mode);
      EXPECT_FALSE(o.divergence.has_value()) << Describe(o);
    }
  }
}

TEST(PairRunner, RelroPagesAreReadOnlyAsAfterTheLoader) {
  Signature sig = Sig("int f(int i)");
  auto reads = Runner(sig, "relro_read", "relro_read");
  auto writes = Runner(sig, "relro_write", "relro_write");
  ASSERT_NE(reads, nullptr);
  ASSERT_NE(writes, nullptr);
  for (RunMode mode : {RunMode::kFast, RunMode::kCounted, RunMode::kExact}) {
    SCOPED_TRACE(static_cast<int>(mode));
    PairOutcome o = reads->Run(Integers({1}), mode);
    ASSERT_EQ(o.old_out->ending, Ending::kReturned) << Describe(o);
    EXPECT_EQ(o.old_out->ret, static_cast<uint64_t>('b')) << "the relocated pointer is read";
    o = writes->Run(Integers({0}), mode);
    ASSERT_EQ(o.old_out->ending, Ending::kFault) << Describe(o);
    EXPECT_EQ(o.old_out->fault, FaultClass::kWriteProtected) << Describe(o);
    EXPECT_EQ(o.new_out->fault, FaultClass::kWriteProtected) << Describe(o);
    EXPECT_GE(o.old_out->fault_addr, kTargetBase) << Describe(o);
    EXPECT_FALSE(o.divergence.has_value()) << Describe(o);
  }
}

// Image data is mapped read-only a granule at a time and opened by the first
// write to it (a store, or a stub's write); only opened granules are restored
// and compared. Whatever a run writes and wherever it lands (across a page
// edge, at the end of 2 MiB of .bss), the next run reads the image's own
// bytes, and a write the other side does not make is a divergence.
TEST(PairRunner, WritesToImageDataAreComparedAndUndoneWhereverTheyLand) {
  auto runner = [](const char* sig, const char* old_sym, const char* new_sym) {
    auto pr = PairRunner::Create(Sig(sig), {FIXTURE_BIG_DATA, old_sym}, {FIXTURE_BIG_DATA, new_sym},
                                 1000000);
    EXPECT_OK(pr);
    return pr ? std::move(*pr) : nullptr;
  };
  const char* kStore = "uint64_t f(uint64_t at, uint64_t v)";
  const char* kFill = "uint64_t f(uint64_t at, uint64_t len, int c)";
  auto same = runner(kStore, "big_store", "big_store");
  auto shifted = runner(kStore, "big_store", "big_store_shifted");
  auto filled = runner(kFill, "big_fill", "big_fill");
  auto store_vs_fill = runner(kFill, "big_store", "big_fill");
  auto bump = runner("uint64_t f(void)", "bump", "bump");
  ASSERT_TRUE(same && shifted && filled && store_vs_fill && bump);
  const uint64_t kBig = 2u << 20;
  for (RunMode mode : {RunMode::kFast, RunMode::kCounted, RunMode::kExact}) {
    SCOPED_TRACE(static_cast<int>(mode));
    for (uint64_t at : {uint64_t{0}, uint64_t{4092}, uint64_t{8188}, uint64_t{12284},
                        (kBig / 2) + 4093, kBig - 9}) {
      SCOPED_TRACE(at);
      PairOutcome o = same->Run(Integers({at, 0x1122334455667788}), mode);
      EXPECT_EQ(o.old_out->ret, 0u) << Describe(o);
      EXPECT_FALSE(o.divergence.has_value()) << Describe(o);
      o = same->Run(Integers({at, 0x99}), mode);
      EXPECT_EQ(o.old_out->ret, 0u) << "the last run's store was undone: " << Describe(o);
      EXPECT_EQ(o.new_out->ret, 0u) << Describe(o);

      o = shifted->Run(Integers({at, 0x1122334455667788}), mode);
      ASSERT_TRUE(o.divergence.has_value()) << Describe(o);
      EXPECT_EQ(o.divergence->kind, DivergenceKind::kMemory) << o.divergence->detail;
      EXPECT_THAT(o.divergence->detail, HasSubstr("old 0x88, new 0x00")) << o.divergence->detail;
      o = shifted->Run(Integers({at, 0}), mode);
      EXPECT_EQ(o.old_out->ret, 0u) << Describe(o);
      EXPECT_EQ(o.new_out->ret, 0u) << "undone after a divergent run too: " << Describe(o);

      // memset is a stub: its writes reach host memory without the engine.
      o = filled->Run(Integers({at, 8, 0x5a}), mode);
      EXPECT_EQ(o.old_out->ret, 0u) << Describe(o);
      EXPECT_FALSE(o.divergence.has_value()) << Describe(o);
      o = filled->Run(Integers({at, 8, 0x5a}), mode);
      EXPECT_EQ(o.old_out->ret, 0u) << "the stub's write was undone: " << Describe(o);
      o = store_vs_fill->Run(Integers({at, 8, 0x5a}), mode);
      ASSERT_TRUE(o.divergence.has_value()) << Describe(o);
      EXPECT_THAT(o.divergence->detail, HasSubstr("old 0x08, new 0x5a")) << o.divergence->detail;
    }
    // Stores across a page edge into two granules neither side opened yet
    // (granules are one page or more: one edge among these is theirs).
    for (uint64_t at : {4092, 8188, 12284, 16380, 20476, 24572}) {
      SCOPED_TRACE(at);
      auto fresh = runner(kStore, "big_store", "big_store");
      ASSERT_NE(fresh, nullptr);
      PairOutcome o = fresh->Run(Integers({at, 0x1122334455667788}), mode);
      EXPECT_EQ(o.old_out->ret, 0u) << Describe(o);
      o = fresh->Run(Integers({at, 0}), mode);
      EXPECT_EQ(o.old_out->ret, 0u) << "both granules were restored: " << Describe(o);
      EXPECT_FALSE(o.divergence.has_value()) << Describe(o);
    }
    // A fresh pair for each mode: its first store opens the granule.
    auto twice = runner(kStore, "big_store_twice", "big_store_twice");
    ASSERT_NE(twice, nullptr);
    for (int i = 0; i < 2; ++i) {
      PairOutcome o = twice->Run(Integers({4000, 7}), mode);
      EXPECT_EQ(o.old_out->ret, 15u) << "both stores of one run landed: " << Describe(o);
    }
    for (int i = 0; i < 3; ++i) {
      PairOutcome o = bump->Run(Input{}, mode);
      EXPECT_EQ(o.old_out->ret, 42u) << ".data starts from the image's bytes: " << Describe(o);
      EXPECT_FALSE(o.divergence.has_value()) << Describe(o);
    }
  }
}

TEST(PairRunner, AFastRunPastTheBudgetIsAHangEvenWhenItEnds) {
  // sum_loop runs a block or two per byte: 4000 bytes are far past a budget
  // of 50 blocks (a hang for the counted run) yet end within microseconds.
  Signature sig = Sig("uint32_t f(const unsigned char *buf, size_t len)");
  auto pr = Runner(sig, "sum_loop", "sum_loop", 50);
  ASSERT_NE(pr, nullptr);
  Input in;
  in.args.push_back(ArgValue{0, false, std::vector<uint8_t>(4000, 1)});
  in.args.push_back(ArgValue{4000, false, {}});
  PairOutcome o = pr->Run(in, RunMode::kFast);
  EXPECT_EQ(o.old_out->ending, Ending::kHang) << Describe(o);
  EXPECT_EQ(o.new_out->ending, Ending::kHang) << Describe(o);
  EXPECT_TRUE(o.counted) << "a hang is only ever decided by a counting run";
  in.args[0].bytes = {5};
  in.args[1].value = 1;
  o = pr->Run(in, RunMode::kFast);
  EXPECT_EQ(o.old_out->ending, Ending::kReturned) << Describe(o);
  EXPECT_EQ(o.old_out->ret, 5u) << Describe(o);
}

TEST(PairRunner, AFastRunThatNeverEndsIsStoppedAndJudgedByTheBudget) {
  // Without the watchdog this test never ends (ctest's timeout fails it).
  Signature sig = Sig("int wait_ready(const unsigned *flags)");
  auto pr = Runner(sig, "wait_ready", "wait_ready_spins", 200000);
  ASSERT_NE(pr, nullptr);
  Input clear;
  clear.args.push_back(ArgValue{0, false, {0, 0, 0, 0}});
  PairOutcome o = pr->Run(clear, RunMode::kFast);
  EXPECT_EQ(o.old_out->ending, Ending::kReturned) << Describe(o);
  EXPECT_EQ(o.new_out->ending, Ending::kHang) << Describe(o);
  ASSERT_TRUE(o.divergence.has_value());
  EXPECT_EQ(o.divergence->kind, DivergenceKind::kNewHang);
  EXPECT_GT(o.new_out->blocks, 200000u);
  // The engines still work after the watchdog stopped one of them.
  Input set = clear;
  set.args[0].bytes = {1, 0, 0, 0};
  o = pr->Run(set, RunMode::kFast);
  EXPECT_EQ(o.new_out->ending, Ending::kReturned) << Describe(o);
  EXPECT_FALSE(o.divergence.has_value()) << Describe(o);
}

}  // namespace
}  // namespace patchlab::emulator
