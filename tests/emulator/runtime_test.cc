// What the sandbox gives code at run time, as a process would: IFUNCs
// resolved for a CPU model, thread-local storage, the deterministic
// system-call layer, and glibc itself checked against itself
// (tests/emulator/fixtures/ifunc.c, runtime.c; glibc's tests need
// libc6-dbg and skip without it).
#include <gtest/gtest.h>

#include "base/elf_file.h"
#include "emulator/checker.h"
#include "tests/support/status_matchers.h"

namespace patchlab::emulator {
namespace {

using ::patchlab::testing::HasSubstr;

CheckOptions Check(const char* elf, std::string old_sym, std::string new_sym,
                   std::string sig = "") {
  CheckOptions o;
  o.old_fn = {elf, std::move(old_sym)};
  o.new_fn = {elf, std::move(new_sym)};
  o.signature = std::move(sig);
  o.inputs = 300;
  o.seed = 5;
  return o;
}

const Counterexample* FindKind(const CheckResult& r, std::string_view kind) {
  for (const Counterexample& c : r.counterexamples) {
    if (c.kind == kind) return &c;
  }
  return nullptr;
}

TEST(Runtime, IfuncRunsTheBaselineImplementationByDefault) {
  auto r = RunCheck(Check(FIXTURE_IFUNC, "sum_bytes", "sum_bytes_baseline"));
  ASSERT_OK(r);
  EXPECT_EQ(r->verdict, Verdict::kEquivalent) << FormatText(*r);
  EXPECT_EQ(r->cpu, "x86-64");
  ASSERT_EQ(r->notes.size(), 1u) << FormatText(*r);
  EXPECT_THAT(r->notes[0],
              HasSubstr("sum_bytes is an IFUNC; a x86-64 CPU runs sum_bytes_baseline"));
}

TEST(Runtime, IfuncRunsTheV2ImplementationOnAV2Cpu) {
  CheckOptions o = Check(FIXTURE_IFUNC, "sum_bytes", "sum_bytes_baseline");
  o.cpu = "x86-64-v2";
  auto differs = RunCheck(o);
  ASSERT_OK(differs);
  EXPECT_EQ(differs->verdict, Verdict::kDiverges) << FormatText(*differs);
  o.new_fn.symbol = "sum_bytes_v2";
  auto same = RunCheck(o);
  ASSERT_OK(same);
  EXPECT_EQ(same->verdict, Verdict::kEquivalent) << FormatText(*same);
}

TEST(Runtime, CallsThroughAnIfuncSlotRunTheChosenCode) {
  auto r = RunCheck(Check(FIXTURE_IFUNC, "twice_sum", "twice_sum"));
  ASSERT_OK(r);
  EXPECT_EQ(r->verdict, Verdict::kEquivalent) << FormatText(*r);
  EXPECT_EQ(r->inconclusive_inputs, 0u);
  EXPECT_GT(r->returned_inputs, 0u);
}

TEST(Runtime, CpuModelsAboveV2AreRefusedSayingWhy) {
  CheckOptions o = Check(FIXTURE_IFUNC, "sum_bytes", "sum_bytes");
  o.cpu = "x86-64-v3";
  auto r = RunCheck(o);
  ASSERT_FALSE(r.has_value());
  EXPECT_THAT(r.error().ToString(), HasSubstr("AVX2"));
  o.cpu = "pentium";
  EXPECT_THAT(RunCheck(o).error().ToString(), HasSubstr("unknown model"));
}

TEST(Runtime, ThreadLocalVariablesAreMappedRestoredAndCompared) {
  auto same = RunCheck(Check(FIXTURE_RUNTIME, "tls_add", "tls_add"));
  ASSERT_OK(same);
  EXPECT_EQ(same->verdict, Verdict::kEquivalent) << FormatText(*same);
  EXPECT_EQ(same->returned_inputs, same->inputs_run) << "no run may fault on its TLS";
  auto r = RunCheck(Check(FIXTURE_RUNTIME, "tls_add", "tls_add_forgets"));
  ASSERT_OK(r);
  EXPECT_EQ(r->verdict, Verdict::kDiverges) << FormatText(*r);
  const Counterexample* c = FindKind(*r, "memory");
  ASSERT_NE(c, nullptr) << FormatText(*r);
  EXPECT_THAT(c->detail, HasSubstr("static tls"));
}

TEST(Runtime, DeterministicSystemCallsAreAnswered) {
  auto r = RunCheck(Check(FIXTURE_RUNTIME, "stamp", "stamp", "long stamp(int which)"));
  ASSERT_OK(r);
  EXPECT_EQ(r->verdict, Verdict::kEquivalent) << FormatText(*r);
  EXPECT_EQ(r->returned_inputs, r->inputs_run);
  auto random = RunCheck(Check(FIXTURE_RUNTIME, "fill_random", "fill_random",
                               "long fill_random(unsigned char *out /* 16 bytes */, int flags)"));
  ASSERT_OK(random);
  EXPECT_EQ(random->verdict, Verdict::kEquivalent) << FormatText(*random);
  EXPECT_EQ(random->syscall_seed, 5u);
}

TEST(Runtime, WrittenBytesAreCompared) {
  const char* sig = "long say(const char *msg, size_t len)";
  auto same = RunCheck(Check(FIXTURE_RUNTIME, "say", "say", sig));
  ASSERT_OK(same);
  EXPECT_EQ(same->verdict, Verdict::kEquivalent) << FormatText(*same);
  auto r = RunCheck(Check(FIXTURE_RUNTIME, "say", "say_shouting", sig));
  ASSERT_OK(r);
  // say_shouting also reads past a short buffer where the kernel would
  // answer -EFAULT: a new crash besides the difference in what is written.
  EXPECT_NE(r->verdict, Verdict::kEquivalent) << FormatText(*r);
  const Counterexample* c = FindKind(*r, "calls");
  ASSERT_NE(c, nullptr) << FormatText(*r);
  EXPECT_THAT(c->detail, HasSubstr("write(0x1, 0x1, \"a\")"));
  EXPECT_THAT(c->detail, HasSubstr("write(0x1, 0x1, \"A\")"));
}

TEST(Runtime, OtherSystemCallsAreInconclusiveNamingThem) {
  auto r = RunCheck(Check(FIXTURE_RUNTIME, "make_pipe", "make_pipe", "long f(void)"));
  ASSERT_OK(r);
  EXPECT_EQ(r->verdict, Verdict::kInconclusive) << FormatText(*r);
  EXPECT_THAT(r->inconclusive_reason, HasSubstr("system call 293 (pipe2)"));
}

TEST(Runtime, UnameDescribesTheSandboxMachine) {
  // "(none)": a host name never set; the call is answered, not inconclusive.
  auto r = RunCheck(Check(FIXTURE_RUNTIME, "host_name_length", "host_name_length", "long f(void)"));
  ASSERT_OK(r);
  EXPECT_EQ(r->verdict, Verdict::kEquivalent) << FormatText(*r);
  EXPECT_EQ(r->returned_inputs, r->inputs_run);
  auto model = RunCheck(Check(FIXTURE_RUNTIME, "host_name_length", "six", "long f(void)"));
  ASSERT_OK(model);
  EXPECT_EQ(model->verdict, Verdict::kEquivalent) << FormatText(*model);
}

TEST(Runtime, CallsAboutTheProcessItselfAreAnswered) {
  for (const auto& [symbol, sig] : std::vector<std::pair<std::string, std::string>>{
           {"block_and_query", "long f(int sig)"},
           {"wake_then_wait", "long f(int expected)"},
           {"say_in_two", "long f(const char *msg, size_t len)"},
           {"stack_limit_mib", "long f(void)"}}) {
    auto r = RunCheck(Check(FIXTURE_RUNTIME, symbol, symbol, sig));
    ASSERT_OK(r);
    EXPECT_EQ(r->verdict, Verdict::kEquivalent) << symbol << ": " << FormatText(*r);
    EXPECT_GT(r->returned_inputs, 0u) << symbol;
  }
  // What they answer: SIGINT's bit (2) + uid 1000; no waiter, then -EAGAIN;
  // an 8 MiB stack.
  auto r = RunCheck(
      Check(FIXTURE_RUNTIME, "block_and_query", "block_and_query_model", "long f(int sig)"));
  ASSERT_OK(r);
  EXPECT_EQ(r->verdict, Verdict::kEquivalent) << FormatText(*r);
}

TEST(Runtime, DeniedSystemCallsAreComparedInsteadOfInconclusive) {
  CheckOptions o = Check(FIXTURE_RUNTIME, "make_pipe", "make_pipe", "long f(void)");
  o.deny_syscalls = true;
  auto same = RunCheck(o);
  ASSERT_OK(same);
  EXPECT_EQ(same->verdict, Verdict::kEquivalent) << FormatText(*same);
  EXPECT_EQ(same->inconclusive_inputs, 0u);
  ASSERT_FALSE(same->notes.empty());
  EXPECT_THAT(same->notes.back(), HasSubstr("-ENOSYS"));
  o.old_fn.symbol = "make_pipe";
  o.new_fn.symbol = "make_eventfd";
  auto r = RunCheck(o);
  ASSERT_OK(r);
  EXPECT_EQ(r->verdict, Verdict::kDiverges) << FormatText(*r);
  ASSERT_FALSE(r->counterexamples.empty());
  EXPECT_THAT(r->counterexamples[0].detail, HasSubstr("syscall pipe2"));
  EXPECT_THAT(r->counterexamples[0].detail, HasSubstr("syscall eventfd2"));
}

TEST(Runtime, HltInUserModeIsACrash) {
  auto same =
      RunCheck(Check(FIXTURE_RUNTIME, "halt_if_negative", "halt_if_negative", "int f(int x)"));
  ASSERT_OK(same);
  EXPECT_EQ(same->verdict, Verdict::kEquivalent) << FormatText(*same);
  auto r =
      RunCheck(Check(FIXTURE_RUNTIME, "halt_if_negative", "clamp_if_negative", "int f(int x)"));
  ASSERT_OK(r);
  EXPECT_EQ(r->verdict, Verdict::kDiverges) << FormatText(*r);
  ASSERT_FALSE(r->counterexamples.empty());
  EXPECT_EQ(r->counterexamples[0].kind, "fixed-crash");
  EXPECT_THAT(r->counterexamples[0].old_result, HasSubstr("privileged-instruction"));
}

// glibc checked against itself needs its DWARF (libc6-dbg).
std::string LibcWithDebugInfo() {
  const char* path = "/lib/x86_64-linux-gnu/libc.so.6";
  auto elf = ElfFile::Open(path);
  if (!elf || elf->build_id().empty() || !FindDebugFile(elf->build_id())) return "";
  return path;
}

TEST(Runtime, GlibcFunctionsUsingTlsIfuncsAndTheClockRunAgainstThemselves) {
  const std::string libc = LibcWithDebugInfo();
  if (libc.empty()) GTEST_SKIP() << "glibc's debug file (libc6-dbg) is not installed";
  // strtol: an alias, the locale in TLS, errno in TLS; strlen: an IFUNC
  // (assembly, so its prototype is given); time: a system call.
  for (const auto& [symbol, sig] :
       std::vector<std::pair<std::string, std::string>>{{"strtol", ""},
                                                        {"strlen", "size_t strlen(const char *s)"},
                                                        {"time", ""},
                                                        {"toupper", ""}}) {
    CheckOptions o = Check(libc.c_str(), symbol, symbol, sig);
    o.inputs = 200;
    auto r = RunCheck(o);
    ASSERT_OK(r);
    EXPECT_EQ(r->verdict, Verdict::kEquivalent) << symbol << ": " << FormatText(*r);
    EXPECT_GT(r->returned_inputs, 0u) << symbol << ": " << FormatText(*r);
  }
}

// libm takes errno from libc by an initial-exec TLS offset, and glibc's
// libraries are not mapped: errno gets a static TLS block of its own, where
// it is compared like any thread-local variable.
TEST(Runtime, ThreadLocalsOfUnmappedGlibcLibrariesGetStaticTls) {
  const char* libm = "/lib/x86_64-linux-gnu/libm.so.6";
  auto elf = ElfFile::Open(libm);
  if (!elf || elf->build_id().empty() || !FindDebugFile(elf->build_id()))
    GTEST_SKIP() << "libm's debug file (libc6-dbg) is not installed";
  CheckOptions o = Check(libm, "acos", "acos");
  o.inputs = 300;
  auto same = RunCheck(o);
  ASSERT_OK(same);
  EXPECT_EQ(same->verdict, Verdict::kEquivalent) << FormatText(*same);
  EXPECT_GT(same->returned_inputs, 0u);
  // The same results without errno (EDOM for |x| > 1): a difference there.
  o.new_fn.symbol = "__acos_finite@GLIBC_2.15";
  o.signature = "double acos(double x)";
  auto r = RunCheck(o);
  ASSERT_OK(r);
  EXPECT_EQ(r->verdict, Verdict::kDiverges) << FormatText(*r);
  const Counterexample* c = FindKind(*r, "memory");
  ASSERT_NE(c, nullptr) << FormatText(*r);
  EXPECT_THAT(c->detail, HasSubstr("static tls"));
}

TEST(Runtime, DescriptorsAreThoseOfAJustStartedProcess) {
  const char* sig = "long f(int fd)";
  auto same = RunCheck(Check(FIXTURE_RUNTIME, "descriptor_probe", "descriptor_probe", sig));
  ASSERT_OK(same);
  EXPECT_EQ(same->verdict, Verdict::kEquivalent) << FormatText(*same);
  EXPECT_EQ(same->returned_inputs, same->inputs_run);
  // Each answer as the model in syscalls.h says it, for 0, 1, 2 and others.
  auto r = RunCheck(Check(FIXTURE_RUNTIME, "descriptor_probe", "descriptor_probe_model", sig));
  ASSERT_OK(r);
  EXPECT_EQ(r->verdict, Verdict::kEquivalent) << FormatText(*r);
}

TEST(Runtime, SigabrtSentToItselfEndsTheRunAsAnAbort) {
  auto same =
      RunCheck(Check(FIXTURE_RUNTIME, "abort_if_negative", "abort_if_negative", "int f(int x)"));
  ASSERT_OK(same);
  EXPECT_EQ(same->verdict, Verdict::kEquivalent) << FormatText(*same);
  EXPECT_GT(same->returned_inputs, 0u);
  auto r =
      RunCheck(Check(FIXTURE_RUNTIME, "abort_if_negative", "clamp_if_negative", "int f(int x)"));
  ASSERT_OK(r);
  EXPECT_EQ(r->verdict, Verdict::kDiverges) << FormatText(*r);
  EXPECT_THAT(FormatText(*r), HasSubstr("abort"));
}

}  // namespace
}  // namespace patchlab::emulator
