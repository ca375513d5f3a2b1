// Old functions named as a person names them (issue 16, patch core): an
// IFUNC of glibc, patched in the implementation the running process's loader
// chose, and a C++ member function by its C++ name, patched live.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "base/elf_file.h"
#include "base/file_util.h"
#include "test_support.h"
#include "tests/support/status_matchers.h"

namespace patchlab::patchcore::testing {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

constexpr const char* kLibc = "/lib/x86_64-linux-gnu/libc.so.6";
constexpr const char* kNoEvex = "glibc.cpu.hwcaps=-AVX512VL";

bool CpuHas(const std::string& flag) {
  return ReadFile("/proc/cpuinfo").value_or("").find(" " + flag + " ") != std::string::npos;
}

// The debug file of the installed libc (libc6-dbg): glibc's implementations
// of its IFUNCs are local symbols only the debug file sizes.
bool LibcDebugFileInstalled() {
  auto libc = ElfFile::Open(kLibc);
  if (!libc) return false;
  const std::string& id = libc->build_id();
  return id.size() > 2 && std::filesystem::exists("/usr/lib/debug/.build-id/" + id.substr(0, 2) +
                                                  "/" + id.substr(2) + ".debug");
}

SubprocessResult Pack(const Workspace& ws, std::vector<std::string> args) {
  args.insert(args.begin(), "pack");
  args.insert(args.end(), {"--key", ws.key(), "-o", (ws.dir / "p.hpk").string()});
  return Hotpatch(std::move(args));
}

TEST(HotpatchNames, IfuncIsPatchedInTheImplementationTheProcessRunsAndRestored) {
  if (!LibcDebugFileInstalled()) {
    GTEST_SKIP() << "libc6-dbg is not installed: glibc's IFUNC implementations have no sizes";
  }
  Workspace ws;
  // Without AVX512VL glibc binds an AVX2 (VEX) or SSE2 implementation, which
  // Capstone 4 decodes; the EVEX one is refused (next test).
  auto target =
      Target::Start("/usr/bin/env", {"GLIBC_TUNABLES=" + std::string(kNoEvex), LIBC_CALLS}, ws.dir);
  ASSERT_NE(target, nullptr);
  ASSERT_TRUE(target->WaitFor([](const auto& t) { return t.at("strlen") == 8; }));
  const std::string pid = std::to_string(target->pid());

  auto pkg = ws.Pack(kLibc, PATCH_LIBC, "s1", 1, {"--func", "strlen=strlen_v1"});
  auto applied = Hotpatch({"apply", "--pid", pid, "--pubkey", ws.pub(), "--json", pkg});
  ASSERT_EQ(applied.status.code, 0) << applied.stderr_data;
  // The report names the implementation replaced (which one depends on the CPU).
  json j = json::parse(applied.stdout_data, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << applied.stdout_data;
  const std::string name = j["functions"][0]["name"];
  EXPECT_THAT(name, HasSubstr("strlen (IFUNC: __strlen_"));
  EXPECT_TRUE(target->WaitFor([](const auto& t) { return t.at("strlen") == 0x600d; }));
  auto status = Hotpatch({"status", "--pid", pid});
  EXPECT_THAT(status.stdout_data, HasSubstr(name));
  EXPECT_EQ(Hotpatch({"verify", "--pid", pid}).status.code, 0);

  ASSERT_EQ(Hotpatch({"revert", "--pid", pid, "s1"}).status.code, 0);
  EXPECT_TRUE(target->WaitFor([](const auto& t) { return t.at("strlen") == 8; }));
  EXPECT_EQ(target->Tick()["wrong"], 0);
  EXPECT_TRUE(target->Alive());
}

TEST(HotpatchNames, IfuncSharingItsImplementationIsRefusedNamingTheOther) {
  if (!LibcDebugFileInstalled()) {
    GTEST_SKIP() << "libc6-dbg is not installed: glibc's IFUNC implementations have no sizes";
  }
  Workspace ws;
  auto target = Target::Start(LIBC_CALLS, {}, ws.dir);
  ASSERT_NE(target, nullptr);
  ASSERT_TRUE(target->WaitFor([](const auto& t) { return t.at("calls") > 1; }));
  const std::string pid = std::to_string(target->pid());
  auto pkg = ws.Pack(kLibc, PATCH_LIBC, "m1", 1, {"--func", "memcpy=memcpy_v1"});
  auto refused = Hotpatch({"apply", "--pid", pid, "--pubkey", ws.pub(), pkg});
  EXPECT_EQ(refused.status.code, 3) << refused.stdout_data << refused.stderr_data;
  EXPECT_THAT(refused.stderr_data, HasSubstr("function memcpy: its implementation"));
  EXPECT_THAT(refused.stderr_data, HasSubstr("memmove"));
  EXPECT_TRUE(AnonymousCodeMappings(target->pid()).empty()) << "the refused apply left a mapping";
  EXPECT_EQ(target->Tick()["wrong"], 0);
}

TEST(HotpatchNames, IfuncImplementationCapstoneCannotDecodeIsRefusedAndNothingChanges) {
  if (!LibcDebugFileInstalled()) {
    GTEST_SKIP() << "libc6-dbg is not installed: glibc's IFUNC implementations have no sizes";
  }
  if (!CpuHas("avx512vl") || !CpuHas("avx512bw")) {
    GTEST_SKIP() << "this CPU has no AVX-512: glibc binds no EVEX strlen here";
  }
  Workspace ws;
  auto target = Target::Start(LIBC_CALLS, {}, ws.dir);
  ASSERT_NE(target, nullptr);
  ASSERT_TRUE(target->WaitFor([](const auto& t) { return t.at("strlen") == 8; }));
  auto pkg = ws.Pack(kLibc, PATCH_LIBC, "s1", 1, {"--func", "strlen=strlen_v1"});
  auto refused =
      Hotpatch({"apply", "--pid", std::to_string(target->pid()), "--pubkey", ws.pub(), pkg});
  EXPECT_EQ(refused.status.code, 3) << refused.stdout_data << refused.stderr_data;
  EXPECT_THAT(refused.stderr_data,
              HasSubstr("function strlen (IFUNC: __strlen_evex): undecodable"));
  EXPECT_TRUE(AnonymousCodeMappings(target->pid()).empty()) << "the refused apply left a mapping";
  EXPECT_TRUE(
      target->WaitFor([](const auto& t) { return t.at("calls") > 2 && t.at("strlen") == 8; }));
}

TEST(HotpatchNames, CxxMemberFunctionByItsCxxNameWithOverloadsRefusedUntilChosen) {
  Workspace ws;
  auto target = Target::Start(PRICER, {}, ws.dir);
  ASSERT_NE(target, nullptr);
  ASSERT_TRUE(target->WaitFor([](const auto& t) { return t.at("sku") == 103; }));
  const std::string pid = std::to_string(target->pid());

  auto ambiguous = Pack(ws, {"--target", PRICER, "--object", PATCH_PRICER, "--id", "q1", "--seq",
                             "1", "--func", "Pricer::Quote=pricer_fix::QuoteSku"});
  EXPECT_EQ(ambiguous.status.code, 2);
  EXPECT_THAT(ambiguous.stderr_data, HasSubstr("names 2 functions"));
  EXPECT_THAT(ambiguous.stderr_data, HasSubstr("Pricer::Quote(long) const"));
  EXPECT_THAT(ambiguous.stderr_data, HasSubstr("Pricer::Quote(std::"));

  auto packed =
      Pack(ws, {"--target", PRICER, "--object", PATCH_PRICER, "--id", "q1", "--seq", "1", "--func",
                "Pricer::Quote(std::string const&) const=pricer_fix::QuoteSku"});
  ASSERT_EQ(packed.status.code, 0) << packed.stderr_data;
  const std::string pkg = (ws.dir / "p.hpk").string();
  auto applied = Hotpatch({"apply", "--pid", pid, "--pubkey", ws.pub(), pkg});
  ASSERT_EQ(applied.status.code, 0) << applied.stderr_data;
  EXPECT_TRUE(target->WaitFor([](const auto& t) { return t.at("sku") == 1103; }));
  EXPECT_EQ(target->Tick()["units"], 200) << "the other overload must not change";

  ASSERT_EQ(Hotpatch({"revert", "--pid", pid, "q1"}).status.code, 0);
  EXPECT_TRUE(target->WaitFor([](const auto& t) { return t.at("sku") == 103; }));
  EXPECT_EQ(target->Tick()["units"], 200);
}

TEST(HotpatchNames, OperatorNamesKeepTheirEqualsSigns) {
  Workspace ws;
  auto r = Pack(ws, {"--target", PRICER, "--object", PATCH_PRICER, "--id", "q1", "--seq", "1",
                     "--func", "Pricer::operator==(Pricer const&) const=pricer_fix::QuoteSku"});
  EXPECT_EQ(r.status.code, 2);
  EXPECT_THAT(r.stderr_data, HasSubstr("no function Pricer::operator==(Pricer const&) const"));
}

}  // namespace
}  // namespace patchlab::patchcore::testing
