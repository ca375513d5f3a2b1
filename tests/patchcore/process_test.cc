// The patch core against real running programs, driven through the real
// hotpatch binary. Targets check every result themselves and print counts;
// a test reads those counts (v<k>: results of patch version k).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/elf_file.h"
#include "base/file_util.h"
#include "base/subprocess.h"
#include "patchcore/patch_package.h"
#include "patchcore/patch_state.h"
#include "patchcore/patcher.h"
#include "patchcore/process_memory.h"
#include "test_support.h"
#include "tests/support/status_matchers.h"

using ::testing::HasSubstr;
using ::testing::Not;

namespace patchlab::patchcore::testing {
namespace {

const std::vector<std::string> kRefs = {"--ref", "private_helper", "--ref", "private_calls"};

std::vector<std::string> Func(const std::string& f) {
  std::vector<std::string> v = {"--func", f};
  v.insert(v.end(), kRefs.begin(), kRefs.end());
  return v;
}

// Applies and reverts `cycles` times while the target hammers compute(), then
// checks that every call returned a right answer and both versions ran.
void CycleUnderLoad(const std::string& binary, int threads, int cycles) {
  Workspace ws;
  auto target = Target::Start(binary, {"--threads", std::to_string(threads)}, ws.dir);
  ASSERT_NE(target, nullptr);
  std::string pkg = ws.Pack(binary, PATCH_COMPUTE, "p1", 1, Func("compute=compute_v1"));
  // The cycles go through the library (the same code the CLI runs) so that
  // 200 of them fit in a test's time; every 20th is checked to have taken.
  {  // the Patcher holds the process's state lock until it goes
    auto package = ReadPackage(pkg);
    ASSERT_OK(package);
    auto patcher = Patcher::Open(target->pid());
    ASSERT_OK(patcher);
    ApplyOptions options;
    options.pubkey = ws.pub();
    for (int i = 0; i < cycles; ++i) {
      auto a = patcher->Apply(*package, options);
      ASSERT_TRUE(a) << "cycle " << i << ": " << a.error().ToString();
      if (i % 20 == 0) {
        long v1 = target->Tick()["v1"];
        ASSERT_TRUE(target->WaitFor([&](const auto& t) { return t.at("v1") > v1; }));
      }
      auto r = patcher->Revert("p1");
      ASSERT_TRUE(r) << "cycle " << i << ": " << r.error().ToString();
    }
  }
  long v0 = target->Tick()["v0"];
  ASSERT_TRUE(target->WaitFor([&](const auto& t) { return t.at("v0") > v0; }));
  auto tick = target->Tick();
  EXPECT_TRUE(target->Alive());
  EXPECT_EQ(tick["wrong"], 0);
  EXPECT_GT(tick["v1"], 0);
  // compute_v1 increments the target's own private counter.
  EXPECT_GT(tick["private"], 0);
  // A last cycle through the command line, then verify.
  auto a = Hotpatch({"apply", "--pid", std::to_string(target->pid()), "--pubkey", ws.pub(), pkg});
  ASSERT_EQ(a.status.code, 0) << a.stderr_data;
  EXPECT_EQ(Hotpatch({"verify", "--pid", std::to_string(target->pid())}).status.code, 0);
  EXPECT_EQ(Hotpatch({"revert", "--pid", std::to_string(target->pid()), "p1"}).status.code, 0);
  EXPECT_EQ(target->Tick()["wrong"], 0);
}

TEST(HotpatchProcess, ApplyRevertCyclesSingleThreadPie) { CycleUnderLoad(TARGET_PIE, 1, 200); }

TEST(HotpatchProcess, ApplyRevertCycles64ThreadsPie) { CycleUnderLoad(TARGET_PIE, 64, 200); }

TEST(HotpatchProcess, ApplyRevertCyclesNonPie) { CycleUnderLoad(TARGET_NOPIE, 4, 5); }

TEST(HotpatchProcess, EndbrEntryIsKept) {
  Workspace ws;
  auto target = Target::Start(TARGET_CET, {"--threads", "2"}, ws.dir);
  ASSERT_NE(target, nullptr);
  std::string pkg = ws.Pack(TARGET_CET, PATCH_COMPUTE, "p1", 1, Func("compute=compute_v2"));
  auto a = Hotpatch(
      {"apply", "--pid", std::to_string(target->pid()), "--pubkey", ws.pub(), "--json", pkg});
  ASSERT_EQ(a.status.code, 0) << a.stderr_data;
  ASSERT_TRUE(target->WaitFor([](const auto& t) { return t.at("v2") > 0; }));
  auto report = nlohmann::json::parse(a.stdout_data, nullptr, false);
  ASSERT_FALSE(report.is_discarded()) << a.stdout_data;
  const uint64_t entry =
      std::stoull(report["functions"][0]["old_addr"].get<std::string>(), nullptr, 16);
  const uint64_t replacement =
      std::stoull(report["functions"][0]["new_addr"].get<std::string>(), nullptr, 16);
  // The entry still starts with endbr64, and the jump follows it: e9 rel32
  // to the replacement, or to an island slot whose 8-byte address is it.
  auto mem = ProcessMemory::Open(target->pid());
  ASSERT_OK(mem);
  auto bytes = mem->Read(RemotePtr(entry), 9);
  ASSERT_OK(bytes);
  const std::vector<uint8_t> endbr64 = {0xf3, 0x0f, 0x1e, 0xfa};
  EXPECT_EQ(std::vector<uint8_t>(bytes->begin(), bytes->begin() + 4), endbr64);
  ASSERT_EQ((*bytes)[4], 0xe9) << HexBytes(*bytes);
  int32_t rel = 0;
  std::memcpy(&rel, bytes->data() + 5, 4);
  const uint64_t jump_to = entry + 9 + static_cast<int64_t>(rel);
  if (jump_to != replacement) {
    auto slot = mem->Read(RemotePtr(jump_to), 14);
    ASSERT_OK(slot);
    EXPECT_EQ(std::vector<uint8_t>(slot->begin(), slot->begin() + 6),
              (std::vector<uint8_t>{0xff, 0x25, 0, 0, 0, 0}));
    uint64_t slot_target = 0;
    std::memcpy(&slot_target, slot->data() + 6, 8);
    EXPECT_EQ(slot_target, replacement);
  }
  EXPECT_EQ(Hotpatch({"verify", "--pid", std::to_string(target->pid())}).status.code, 0);
  EXPECT_EQ(target->Tick()["wrong"], 0);
}

TEST(HotpatchProcess, ThreadInsideFunctionIsRefusedThenApplied) {
  Workspace ws;
  std::string release = (ws.dir / "release").string();
  auto target = Target::Start(TARGET_PIE, {"--block", release}, ws.dir);
  ASSERT_NE(target, nullptr);
  std::string pkg = ws.Pack(TARGET_PIE, PATCH_COMPUTE, "p1", 1, Func("slow_path=slow_path_v1"));
  std::string pid = std::to_string(target->pid());
  auto refused = Hotpatch({"apply", "--pid", pid, "--pubkey", ws.pub(), "--timeout", "200", pkg});
  EXPECT_EQ(refused.status.code, 3) << refused.stderr_data;
  EXPECT_THAT(refused.stderr_data, HasSubstr("slow_path")) << refused.stderr_data;
  auto status = Hotpatch({"status", "--pid", pid, "--json"});
  EXPECT_THAT(status.stdout_data, HasSubstr("\"patches\":[]")) << status.stdout_data;
  // The patch object was mapped before the stop; the refusal took it out.
  EXPECT_THAT(AnonymousCodeMappings(target->pid()), ::testing::IsEmpty());
  std::ofstream(release) << "go";
  auto applied = Hotpatch({"apply", "--pid", pid, "--pubkey", ws.pub(), "--timeout", "5000", pkg});
  EXPECT_EQ(applied.status.code, 0) << applied.stderr_data;
  EXPECT_THAT(AnonymousCodeMappings(target->pid()), ::testing::Not(::testing::IsEmpty()));
  EXPECT_EQ(target->Tick()["wrong"], 0);
}

TEST(HotpatchProcess, UnpatchableShapesAreRefusedWithTheRule) {
  Workspace ws;
  auto target = Target::Start(TARGET_PIE, {"--shapes"}, ws.dir);
  ASSERT_NE(target, nullptr);
  std::string pid = std::to_string(target->pid());
  struct Case {
    const char* func;
    const char* rule;
  } cases[] = {{"too_short=too_short_v1", "too short"},
               {"branch_back=branch_back_v1", "no branch into the overwritten bytes"}};
  int seq = 1;
  for (const Case& c : cases) {
    std::string pkg =
        ws.Pack(TARGET_PIE, PATCH_COMPUTE, "shape" + std::to_string(seq), seq, Func(c.func));
    ++seq;
    auto r = Hotpatch({"apply", "--pid", pid, "--pubkey", ws.pub(), pkg});
    EXPECT_EQ(r.status.code, 3) << c.func << ": " << r.stderr_data;
    EXPECT_THAT(r.stderr_data, HasSubstr(c.rule)) << r.stderr_data;
  }
  EXPECT_TRUE(target->Alive());
}

TEST(HotpatchProcess, StackingRevertOrderReplaceAllAndSequence) {
  Workspace ws;
  auto target = Target::Start(TARGET_PIE, {"--threads", "2"}, ws.dir);
  ASSERT_NE(target, nullptr);
  std::string pid = std::to_string(target->pid());
  auto p1 = ws.Pack(TARGET_PIE, PATCH_COMPUTE, "p1", 1, Func("compute=compute_v1"));
  auto p2 = ws.Pack(TARGET_PIE, PATCH_COMPUTE, "p2", 2, Func("compute=compute_v2"));
  auto low = ws.Pack(TARGET_PIE, PATCH_COMPUTE, "low", 2, Func("compute=compute_v3"));
  auto all = ws.Pack(TARGET_PIE, PATCH_COMPUTE, "p3", 3, [] {
    auto v = Func("compute=compute_v3");
    v.insert(v.end(), {"--replaces", "all"});
    return v;
  }());
  auto seen = [&](const char* v) {
    long before = target->Tick()[v];
    return target->WaitFor([&](const auto& t) { return t.at(v) > before + 1000; });
  };
  ASSERT_EQ(Hotpatch({"apply", "--pid", pid, "--pubkey", ws.pub(), p1}).status.code, 0);
  ASSERT_TRUE(seen("v1"));
  ASSERT_EQ(Hotpatch({"apply", "--pid", pid, "--pubkey", ws.pub(), p2}).status.code, 0);
  ASSERT_TRUE(seen("v2"));
  auto refused = Hotpatch({"apply", "--pid", pid, "--pubkey", ws.pub(), low});
  EXPECT_EQ(refused.status.code, 3) << refused.stderr_data;
  EXPECT_THAT(refused.stderr_data, HasSubstr("sequence"));
  // Revert the top: patch 1 is live again.
  ASSERT_EQ(Hotpatch({"revert", "--pid", pid, "p2"}).status.code, 0);
  long v2 = target->Tick()["v2"];
  ASSERT_TRUE(seen("v1"));
  ASSERT_EQ(Hotpatch({"verify", "--pid", pid}).status.code, 0);
  // Cumulative patch 3 supersedes the whole stack in one step.
  ASSERT_EQ(Hotpatch({"apply", "--pid", pid, "--pubkey", ws.pub(), all}).status.code, 0);
  ASSERT_TRUE(seen("v3"));
  auto status = Hotpatch({"status", "--pid", pid, "--json"});
  EXPECT_THAT(status.stdout_data, Not(HasSubstr("\"p1\""))) << status.stdout_data;
  EXPECT_THAT(status.stdout_data, HasSubstr("\"p3\"")) << status.stdout_data;
  EXPECT_EQ(Hotpatch({"verify", "--pid", pid}).status.code, 0);
  ASSERT_EQ(Hotpatch({"revert", "--pid", pid, "--all"}).status.code, 0);
  ASSERT_TRUE(seen("v0"));
  EXPECT_GE(target->Tick()["v2"], v2);
  EXPECT_EQ(target->Tick()["wrong"], 0);
}

TEST(HotpatchProcess, SecurityRefusals) {
  Workspace ws;
  auto target = Target::Start(TARGET_PIE, {}, ws.dir);
  ASSERT_NE(target, nullptr);
  std::string pid = std::to_string(target->pid());
  // Wrong build-id: a package made for the non-PIE build of the same source.
  auto other = ws.Pack(TARGET_NOPIE, PATCH_COMPUTE, "other", 1, Func("compute=compute_v1"));
  auto r = Hotpatch({"apply", "--pid", pid, "--pubkey", ws.pub(), other});
  EXPECT_EQ(r.status.code, 3) << r.stderr_data;
  // Unsigned.
  auto unsigned_pkg = ws.Pack(TARGET_PIE, PATCH_COMPUTE, "u", 1, Func("compute=compute_v1"), false);
  r = Hotpatch({"apply", "--pid", pid, "--pubkey", ws.pub(), unsigned_pkg});
  EXPECT_EQ(r.status.code, 3) << r.stderr_data;
  EXPECT_THAT(r.stderr_data, HasSubstr("unsigned"));
  // Wrong key.
  ASSERT_EQ(Hotpatch({"keygen", "--out", (ws.dir / "other").string()}).status.code, 0);
  auto good = ws.Pack(TARGET_PIE, PATCH_COMPUTE, "g", 1, Func("compute=compute_v1"));
  r = Hotpatch(
      {"apply", "--pid", pid, "--pubkey", (ws.dir / "other" / "patch.pub").string(), good});
  EXPECT_EQ(r.status.code, 3) << r.stderr_data;
  // Tampered: one byte of the manifest changed.
  auto bytes = *ReadFile(good);
  size_t at = bytes.find("\"seq\": 1");
  ASSERT_NE(at, std::string::npos);
  bytes[at + 7] = '9';
  std::string tampered = (ws.dir / "tampered.hpk").string();
  ASSERT_TRUE(WriteFileAtomic(tampered, bytes).has_value());
  r = Hotpatch({"apply", "--pid", pid, "--pubkey", ws.pub(), tampered});
  EXPECT_EQ(r.status.code, 3) << r.stderr_data;
  EXPECT_THAT(r.stderr_data, HasSubstr("signature"));
  // Nothing changed; the unsigned package goes in with --allow-unsigned.
  EXPECT_EQ(target->Tick()["v1"], 0);
  r = Hotpatch({"apply", "--pid", pid, "--allow-unsigned", unsigned_pkg});
  EXPECT_EQ(r.status.code, 0) << r.stderr_data;
  EXPECT_THAT(r.stderr_data, HasSubstr("warning"));
  // State files are private.
  for (const auto& e : std::filesystem::recursive_directory_iterator(ws.dir / "state")) {
    if (e.is_regular_file()) {
      EXPECT_EQ(static_cast<int>(e.status().permissions() & std::filesystem::perms::all), 0600)
          << e.path();
    }
  }
}

TEST(HotpatchProcess, KilledAtEachFaultPointThenRecovered) {
  for (const char* fault :
       {"mid-cave-call", "mid-staging", "after-map", "after-write-1", "before-commit"}) {
    SCOPED_TRACE(fault);
    Workspace ws;
    auto target = Target::Start(TARGET_PIE, {"--threads", "4"}, ws.dir);
    ASSERT_NE(target, nullptr);
    std::string pid = std::to_string(target->pid());
    auto pkg = ws.Pack(TARGET_PIE, PATCH_COMPUTE, "p1", 1, Func("compute=compute_v1"));
    ::setenv("HOTPATCH_FAULT", fault, 1);
    auto killed = Hotpatch({"apply", "--pid", pid, "--pubkey", ws.pub(), pkg});
    ::unsetenv("HOTPATCH_FAULT");
    EXPECT_EQ(killed.status.signal, SIGKILL) << killed.status.ToString();
    auto rec = Hotpatch({"recover", "--pid", pid});
    EXPECT_EQ(rec.status.code, 0) << rec.stderr_data;
    EXPECT_EQ(Hotpatch({"verify", "--pid", pid}).status.code, 0);
    // Nothing the killed apply mapped stays behind, and no thread waits at a
    // stub (mid-cave-call: the old patcher ran that first call from the
    // target's own syscall instruction, and the thread ran on with the
    // patcher's registers: the target crashed).
    EXPECT_THAT(AnonymousCodeMappings(target->pid()), ::testing::IsEmpty());
    EXPECT_EQ(StrandedStubs(target->pid()), 0u);
    long v0 = target->Tick()["v0"];
    ASSERT_TRUE(target->WaitFor([&](const auto& t) { return t.at("v0") > v0 + 1000; }));
    // Consistent: after recovery the stack says what runs, and apply works again.
    auto again = Hotpatch({"apply", "--pid", pid, "--pubkey", ws.pub(), pkg});
    EXPECT_EQ(again.status.code, 0) << again.stderr_data;
    EXPECT_EQ(target->Tick()["wrong"], 0);
    EXPECT_TRUE(target->Alive());
  }
}

TEST(HotpatchProcess, RevertKilledAtEachFaultPointThenRecovered) {
  // mid-cave-call: in the munmap of the last island page, which runs from a
  // code cave (the island's own stub goes with the page).
  for (const char* fault : {"after-write-1", "before-commit", "mid-cave-call"}) {
    SCOPED_TRACE(fault);
    Workspace ws;
    auto target = Target::Start(TARGET_PIE, {"--threads", "4"}, ws.dir);
    ASSERT_NE(target, nullptr);
    std::string pid = std::to_string(target->pid());
    auto pkg = ws.Pack(TARGET_PIE, PATCH_COMPUTE, "p1", 1, Func("compute=compute_v1"));
    ASSERT_EQ(Hotpatch({"apply", "--pid", pid, "--pubkey", ws.pub(), pkg}).status.code, 0);
    ::setenv("HOTPATCH_FAULT", fault, 1);
    auto killed = Hotpatch({"revert", "--pid", pid, "p1"});
    ::unsetenv("HOTPATCH_FAULT");
    EXPECT_EQ(killed.status.signal, SIGKILL) << killed.status.ToString();
    auto rec = Hotpatch({"recover", "--pid", pid});
    EXPECT_EQ(rec.status.code, 0) << rec.stderr_data;
    EXPECT_EQ(Hotpatch({"verify", "--pid", pid}).status.code, 0);
    // The revert was completed: the original code runs and the stack is empty.
    auto status = Hotpatch({"status", "--pid", pid, "--json"});
    EXPECT_THAT(status.stdout_data, HasSubstr("\"patches\":[]")) << status.stdout_data;
    EXPECT_THAT(AnonymousCodeMappings(target->pid()), ::testing::IsEmpty());
    EXPECT_EQ(StrandedStubs(target->pid()), 0u);
    long v0 = target->Tick()["v0"];
    ASSERT_TRUE(target->WaitFor([&](const auto& t) { return t.at("v0") > v0 + 1000; }));
    EXPECT_EQ(target->Tick()["wrong"], 0);
    EXPECT_TRUE(target->Alive());
  }
}

TEST(HotpatchProcess, SharedLibraryFunctionAdler32) {
  Workspace ws;
  auto target = Target::Start(TARGET_PIE, {"--zlib"}, ws.dir);
  ASSERT_NE(target, nullptr);
  ASSERT_TRUE(target->WaitFor([](const auto& t) { return t.at("z") == 1; }));
  std::string libz;
  std::ifstream maps("/proc/" + std::to_string(target->pid()) + "/maps");
  for (std::string line; std::getline(maps, line);) {
    size_t slash = line.find('/');
    if (slash != std::string::npos && line.find("libz.so") != std::string::npos) {
      libz = line.substr(slash);
      break;
    }
  }
  ASSERT_FALSE(libz.empty());
  auto pkg = ws.Pack(libz, PATCH_ZLIB, "z1", 1, {"--func", "adler32=adler32_v1"});
  auto r = Hotpatch({"apply", "--pid", std::to_string(target->pid()), "--pubkey", ws.pub(), pkg});
  ASSERT_EQ(r.status.code, 0) << r.stderr_data;
  EXPECT_TRUE(target->WaitFor([](const auto& t) { return t.at("z") == 0x600d; }));
  EXPECT_EQ(Hotpatch({"verify", "--pid", std::to_string(target->pid())}).status.code, 0);
  ASSERT_EQ(Hotpatch({"revert", "--pid", std::to_string(target->pid()), "z1"}).status.code, 0);
  EXPECT_TRUE(target->WaitFor([](const auto& t) { return t.at("z") == 1; }));
  EXPECT_EQ(target->Tick()["wrong"], 0);
}

TEST(HotpatchProcess, ForkAndSignalHandlerSeeThePatch) {
  Workspace ws;
  auto target = Target::Start(TARGET_PIE, {}, ws.dir);
  ASSERT_NE(target, nullptr);
  auto pkg = ws.Pack(TARGET_PIE, PATCH_COMPUTE, "p2", 2, Func("compute=compute_v2"));
  ASSERT_EQ(Hotpatch({"apply", "--pid", std::to_string(target->pid()), "--pubkey", ws.pub(), pkg})
                .status.code,
            0);
  ::kill(target->pid(), SIGUSR1);
  EXPECT_TRUE(target->WaitFor([](const auto& t) { return t.at("sig") == 2; }));
  ::kill(target->pid(), SIGUSR2);
  EXPECT_TRUE(target->WaitFor([](const auto& t) { return t.at("child") == 2; }));
  EXPECT_EQ(target->Tick()["wrong"], 0);
}

TEST(HotpatchProcess, ThreadChurnAndMallocDlopenHammering) {
  Workspace ws;
  auto target = Target::Start(TARGET_PIE, {"--threads", "2", "--churn", "--spawn"}, ws.dir);
  ASSERT_NE(target, nullptr);
  std::string pid = std::to_string(target->pid());
  auto pkg = ws.Pack(TARGET_PIE, PATCH_COMPUTE, "p1", 1, Func("compute=compute_v1"));
  for (int i = 0; i < 5; ++i) {
    auto a = Hotpatch({"apply", "--pid", pid, "--pubkey", ws.pub(), pkg});
    ASSERT_EQ(a.status.code, 0) << a.stderr_data;
    auto r = Hotpatch({"revert", "--pid", pid, "p1"});
    ASSERT_EQ(r.status.code, 0) << r.stderr_data;
  }
  EXPECT_TRUE(target->Alive());
  EXPECT_EQ(target->Tick()["wrong"], 0);
}

TEST(HotpatchProcess, VanishedTargetExitsFive) {
  Workspace ws;
  pid_t child = ::fork();
  if (child == 0) _exit(0);
  ::waitpid(child, nullptr, 0);
  auto pkg = ws.Pack(TARGET_PIE, PATCH_COMPUTE, "p1", 1, Func("compute=compute_v1"));
  auto r = Hotpatch({"apply", "--pid", std::to_string(child), "--pubkey", ws.pub(), pkg});
  EXPECT_EQ(r.status.code, 5) << r.stderr_data;
}

TEST(HotpatchProcess, HotFunctionInEveryThreadIsApplied) {
  // Four threads spend nearly all their time inside hot_sum(): stopping the
  // whole process at random almost never finds all four outside at once. The
  // patcher parks the threads found outside and lets only the busy ones run
  // until they leave.
  Workspace ws;
  auto target = Target::Start(TARGET_PIE, {"--hot", "4"}, ws.dir);
  ASSERT_NE(target, nullptr);
  std::string pid = std::to_string(target->pid());
  auto pkg = ws.Pack(TARGET_PIE, PATCH_COMPUTE, "p1", 1, Func("hot_sum=hot_sum_v1"));
  for (int cycle = 0; cycle < 5; ++cycle) {
    SCOPED_TRACE(cycle);
    auto applied = Hotpatch({"apply", "--pid", pid, "--pubkey", ws.pub(), "--json", pkg});
    ASSERT_EQ(applied.status.code, 0) << applied.stderr_data;
    long v1 = target->Tick()["v1"];
    ASSERT_TRUE(target->WaitFor([&](const auto& t) { return t.at("v1") > v1 + 4; }));
    auto reverted = Hotpatch({"revert", "--pid", pid, "p1"});
    ASSERT_EQ(reverted.status.code, 0) << reverted.stderr_data;
  }
  EXPECT_EQ(Hotpatch({"verify", "--pid", pid}).status.code, 0);
  EXPECT_EQ(target->Tick()["wrong"], 0);
  EXPECT_TRUE(target->Alive());
}

TEST(HotpatchProcess, DependsIsCheckedOnApplyAndKeptOnRevert) {
  Workspace ws;
  auto target = Target::Start(TARGET_PIE, {"--threads", "2"}, ws.dir);
  ASSERT_NE(target, nullptr);
  std::string pid = std::to_string(target->pid());
  auto base = ws.Pack(TARGET_PIE, PATCH_COMPUTE, "base", 1, Func("compute=compute_v1"));
  auto needs = ws.Pack(TARGET_PIE, PATCH_COMPUTE, "needs-base", 2, [] {
    auto v = Func("slow_path=slow_path_v1");
    v.insert(v.end(), {"--depends", "base"});
    return v;
  }());
  auto early = Hotpatch({"apply", "--pid", pid, "--pubkey", ws.pub(), needs});
  EXPECT_EQ(early.status.code, 3) << early.stderr_data;
  EXPECT_THAT(early.stderr_data, HasSubstr("depends on base")) << early.stderr_data;
  ASSERT_EQ(Hotpatch({"apply", "--pid", pid, "--pubkey", ws.pub(), base}).status.code, 0);
  ASSERT_EQ(Hotpatch({"apply", "--pid", pid, "--pubkey", ws.pub(), needs}).status.code, 0);
  // base cannot go while needs-base is live; nothing changes.
  auto refused = Hotpatch({"revert", "--pid", pid, "base"});
  EXPECT_EQ(refused.status.code, 3) << refused.stderr_data;
  EXPECT_THAT(refused.stderr_data, HasSubstr("needed by live patch needs-base"))
      << refused.stderr_data;
  auto status = Hotpatch({"status", "--pid", pid, "--json"});
  EXPECT_THAT(status.stdout_data, HasSubstr("\"base\"")) << status.stdout_data;
  EXPECT_EQ(Hotpatch({"verify", "--pid", pid}).status.code, 0);
  // In order, or all at once, it works.
  ASSERT_EQ(Hotpatch({"revert", "--pid", pid, "needs-base"}).status.code, 0);
  ASSERT_EQ(Hotpatch({"revert", "--pid", pid, "base"}).status.code, 0);
  EXPECT_EQ(target->Tick()["wrong"], 0);
  EXPECT_TRUE(target->Alive());
}

TEST(HotpatchProcess, StrippedTargetIsPatchedThroughItsDebugFile) {
  // A stripped executable has no symbol table: its functions and private
  // symbols are found in the separate debug file named by its build-id.
  Workspace ws;
  const auto stripped = ws.dir / "stripped-target";
  const auto debug = ws.dir / "target.debug";
  auto run = [](std::vector<std::string> argv) {
    SubprocessOptions o;
    o.argv = std::move(argv);
    auto r = RunSubprocess(o);
    return r && r->status.Success();
  };
  std::filesystem::copy_file(TARGET_PIE, stripped);
  ASSERT_TRUE(run({"objcopy", "--only-keep-debug", stripped.string(), debug.string()}));
  ASSERT_TRUE(run({"strip", "--strip-all", stripped.string()}));
  auto elf = ElfFile::Open(stripped);
  ASSERT_OK(elf);
  ASSERT_EQ(elf->FindSymbol("private_helper"), nullptr) << "not stripped";
  const std::string id = elf->build_id();
  ASSERT_GT(id.size(), 2u);
  const auto root = ws.dir / "debug-root";
  std::filesystem::create_directories(root / ".build-id" / id.substr(0, 2));
  std::filesystem::copy_file(debug,
                             root / ".build-id" / id.substr(0, 2) / (id.substr(2) + ".debug"));

  auto target = Target::Start(stripped.string(), {"--threads", "2"}, ws.dir);
  ASSERT_NE(target, nullptr);
  std::string pid = std::to_string(target->pid());
  std::vector<std::string> pack = {"pack",
                                   "--target",
                                   stripped.string(),
                                   "--object",
                                   PATCH_COMPUTE,
                                   "--id",
                                   "p1",
                                   "--seq",
                                   "1",
                                   "--func",
                                   "compute=compute_v1",
                                   "--ref",
                                   "private_helper",
                                   "--ref",
                                   "private_calls",
                                   "--key",
                                   ws.key(),
                                   "-o",
                                   (ws.dir / "p1.hpk").string()};
  auto without = Hotpatch(pack);
  EXPECT_NE(without.status.code, 0);
  EXPECT_THAT(without.stderr_data, HasSubstr("compute")) << without.stderr_data;

  ::setenv("PATCHLAB_DEBUG_DIR", root.c_str(), 1);
  auto packed = Hotpatch(pack);
  auto applied =
      Hotpatch({"apply", "--pid", pid, "--pubkey", ws.pub(), (ws.dir / "p1.hpk").string()});
  auto verified = Hotpatch({"verify", "--pid", pid});
  ::unsetenv("PATCHLAB_DEBUG_DIR");
  ASSERT_EQ(packed.status.code, 0) << packed.stderr_data;
  ASSERT_EQ(applied.status.code, 0) << applied.stderr_data;
  EXPECT_EQ(verified.status.code, 0) << verified.stdout_data;
  long v1 = target->Tick()["v1"];
  ASSERT_TRUE(target->WaitFor([&](const auto& t) { return t.at("v1") > v1 + 1000; }));
  EXPECT_GT(target->Tick()["private"], 0);
  EXPECT_EQ(target->Tick()["wrong"], 0);
}

TEST(HotpatchProcess, RecursionOnTheStackIsRefusedThenApplied) {
  // Eight frames of recurse() sit on one thread's stack: the return addresses
  // into the function (not only the PC) keep the patch out.
  Workspace ws;
  std::string release = (ws.dir / "release").string();
  auto target = Target::Start(TARGET_PIE, {"--recurse", release}, ws.dir);
  ASSERT_NE(target, nullptr);
  std::string pid = std::to_string(target->pid());
  auto pkg = ws.Pack(TARGET_PIE, PATCH_COMPUTE, "p1", 1, Func("recurse=recurse_v1"));
  auto refused = Hotpatch({"apply", "--pid", pid, "--pubkey", ws.pub(), "--timeout", "300", pkg});
  EXPECT_EQ(refused.status.code, 3) << refused.stderr_data;
  EXPECT_THAT(refused.stderr_data, HasSubstr("recurse")) << refused.stderr_data;
  EXPECT_THAT(refused.stderr_data, HasSubstr("returns to")) << refused.stderr_data;
  std::ofstream(release) << "go";
  auto applied = Hotpatch({"apply", "--pid", pid, "--pubkey", ws.pub(), "--timeout", "5000", pkg});
  EXPECT_EQ(applied.status.code, 0) << applied.stderr_data;
  EXPECT_EQ(Hotpatch({"verify", "--pid", pid}).status.code, 0);
  EXPECT_EQ(target->Tick()["wrong"], 0);
  EXPECT_TRUE(target->Alive());
}

}  // namespace
}  // namespace patchlab::patchcore::testing
