// The process environment the sandbox models (emulator/syscalls.h): an
// empty file system, anonymous memory, signal dispositions, ids, timers
// and the machine, each answer as the model says it and each call compared
// (tests/emulator/fixtures/environment.c; environment_kernel_test.cc checks
// the same answers against the real kernel). glibc's assembly entries are
// refused without --sig.
#include <gtest/gtest.h>

#include "base/elf_file.h"
#include "emulator/checker.h"
#include "tests/support/status_matchers.h"

namespace patchlab::emulator {
namespace {

using ::patchlab::testing::HasSubstr;

CheckOptions Check(std::string old_sym, std::string new_sym, std::string sig) {
  CheckOptions o;
  o.old_fn = {FIXTURE_ENVIRONMENT, std::move(old_sym)};
  o.new_fn = {FIXTURE_ENVIRONMENT, std::move(new_sym)};
  o.signature = std::move(sig);
  o.inputs = 400;
  o.seed = 3;
  return o;
}

const Counterexample* FindKind(const CheckResult& r, std::string_view kind) {
  for (const Counterexample& c : r.counterexamples) {
    if (c.kind == kind) return &c;
  }
  return nullptr;
}

TEST(Environment, EveryProbeIsAnsweredAsTheModelSays) {
  // env_probe(i) runs case i % 79 (files, memory, signals, ids, timers);
  // 400 inputs reach every case (small integers come first).
  auto same = RunCheck(Check("env_probe", "env_probe", "long f(int which)"));
  ASSERT_OK(same);
  EXPECT_EQ(same->verdict, Verdict::kEquivalent) << FormatText(*same);
  EXPECT_EQ(same->inconclusive_inputs, 0u) << FormatText(*same);
  EXPECT_EQ(same->returned_inputs, same->inputs_run) << FormatText(*same);
  auto model = RunCheck(Check("env_probe", "env_probe_expected", "long f(int which)"));
  ASSERT_OK(model);
  EXPECT_EQ(model->verdict, Verdict::kEquivalent) << FormatText(*model);
}

TEST(Environment, OpeningAnotherPathDiverges) {
  const char* sig = "long f(int flags)";
  auto same = RunCheck(Check("open_config", "open_config_copy", sig));
  ASSERT_OK(same);
  EXPECT_EQ(same->verdict, Verdict::kEquivalent) << FormatText(*same);
  EXPECT_EQ(same->inconclusive_inputs, 0u);
  auto r = RunCheck(Check("open_config", "open_config_elsewhere", sig));
  ASSERT_OK(r);
  EXPECT_EQ(r->verdict, Verdict::kDiverges) << FormatText(*r);
  const Counterexample* c = FindKind(*r, "calls");
  ASSERT_NE(c, nullptr) << FormatText(*r);
  EXPECT_THAT(c->detail, HasSubstr("/etc/app.conf"));
  EXPECT_THAT(c->detail, HasSubstr("/etc/app.conf.d"));
  EXPECT_THAT(c->detail, HasSubstr("openat"));
}

TEST(Environment, AnonymousMemoryIsServedAndItsCallsCompared) {
  const char* sig = "long f(int n)";
  auto same = RunCheck(Check("map_message", "map_message", sig));
  ASSERT_OK(same);
  EXPECT_EQ(same->verdict, Verdict::kEquivalent) << FormatText(*same);
  EXPECT_EQ(same->returned_inputs, same->inputs_run);
  auto r = RunCheck(Check("map_message", "map_message_twice_as_big", sig));
  ASSERT_OK(r);
  EXPECT_EQ(r->verdict, Verdict::kDiverges) << FormatText(*r);
  const Counterexample* c = FindKind(*r, "calls");
  ASSERT_NE(c, nullptr) << FormatText(*r);
  EXPECT_THAT(c->detail, HasSubstr("mmap"));
}

// glibc's own entries need its DWARF (libc6-dbg).
std::string LibcWithDebugInfo() {
  const char* path = "/lib/x86_64-linux-gnu/libc.so.6";
  auto elf = ElfFile::Open(path);
  if (!elf || elf->build_id().empty() || !FindDebugFile(elf->build_id())) return "";
  return path;
}

TEST(Environment, AssemblyEntriesAreRefusedWithoutASignature) {
  const std::string libc = LibcWithDebugInfo();
  if (libc.empty()) GTEST_SKIP() << "glibc's debug file (libc6-dbg) is not installed";
  // DWARF describes these without a prototype (a unit in assembly): not f(void).
  for (const char* symbol : {"_mcount", "alarm", "pthread_spin_unlock"}) {
    CheckOptions o;
    o.old_fn = {libc, symbol};
    o.new_fn = {libc, symbol};
    o.inputs = 50;
    auto r = RunCheck(o);
    ASSERT_FALSE(r.has_value()) << symbol << ": " << FormatText(*r);
    EXPECT_THAT(r.error().ToString(),
                HasSubstr("is an assembly entry: no prototype in DWARF, pass --sig"))
        << symbol;
  }
  // With the prototype given, alarm runs (its timer on the sandbox's clock).
  CheckOptions o;
  o.old_fn = {libc, "alarm"};
  o.new_fn = {libc, "alarm"};
  o.signature = "unsigned int alarm(unsigned int seconds)";
  o.inputs = 200;
  auto r = RunCheck(o);
  ASSERT_OK(r);
  EXPECT_EQ(r->verdict, Verdict::kEquivalent) << FormatText(*r);
  EXPECT_EQ(r->returned_inputs, r->inputs_run) << FormatText(*r);
}

TEST(Environment, GlibcFunctionsThatOpenFilesAreJudged) {
  const std::string libc = LibcWithDebugInfo();
  if (libc.empty()) GTEST_SKIP() << "glibc's debug file (libc6-dbg) is not installed";
  // ctime_r reads /etc/localtime (absent: UTC);
  // truncate and access name a path; gethostname asks uname.
  for (const char* symbol : {"ctime_r", "truncate", "access", "gethostname"}) {
    CheckOptions o;
    o.old_fn = {libc, symbol};
    o.new_fn = {libc, symbol};
    o.inputs = 200;
    auto r = RunCheck(o);
    ASSERT_OK(r);
    EXPECT_EQ(r->verdict, Verdict::kEquivalent) << symbol << ": " << FormatText(*r);
    EXPECT_EQ(r->inconclusive_inputs, 0u) << symbol << ": " << FormatText(*r);
  }
}

}  // namespace
}  // namespace patchlab::emulator
