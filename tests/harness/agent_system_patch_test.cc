// The system-wide form of the agent's apply/revert (issue 15 item 5): the real
// patchlab-agent on the host starts real processes on the system's libz, and
// AgentClient::ApplySystem/RevertSystem run the real hotpatch through it,
// narrowed to the agent's own children (the machine is shared).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "base/file_util.h"
#include "base/subprocess.h"
#include "harness/vm/agent_client.h"
#include "harness/vm/system_patch_summary.h"
#include "tests/support/local_agent.h"
#include "tests/support/status_matchers.h"

namespace patchlab::harness {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr const char* kLibz = "/lib/x86_64-linux-gnu/libz.so.1";

TEST(SystemPatchSummary, ReadsCountsAndEveryProcess) {
  auto s = ParseSystemPatchSummary(
      R"({"patch_id":"z1","module":"libz.so.1","build_id":"ab12","processes":[)"
      R"({"pid":10,"comm":"a","result":"applied","reason":"","pause_us":300},)"
      R"({"pid":11,"comm":"b","result":"refused","reason":"another tracer","pause_us":0},)"
      R"({"pid":12,"comm":"c","result":"applied","reason":"","pause_us":9,"followed":true,)"
      R"("inherited_from":10}],"applied":2,"refused":1,)"
      R"("uninspected":[{"pid":13,"comm":"d","reason":"other user namespace"}],)"
      R"("scanned":40,"wall_us":1234})",
      "test");
  ASSERT_OK(s);
  EXPECT_EQ(s->patch_id, "z1");
  EXPECT_EQ(s->build_id, "ab12");
  EXPECT_EQ(s->applied, 2);
  EXPECT_EQ(s->refused, 2) << "the uninspected process counts as refused";
  EXPECT_EQ(s->scanned, 40);
  EXPECT_EQ(s->wall_us, 1234);
  EXPECT_FALSE(s->Complete());
  ASSERT_EQ(s->processes.size(), 4u);
  EXPECT_EQ(s->processes[1].reason, "another tracer");
  EXPECT_EQ(s->processes[0].pause_us, 300);
  EXPECT_TRUE(s->processes[2].followed);
  EXPECT_EQ(s->processes[2].inherited_from, 10);
  EXPECT_EQ(s->processes[3].result, "uninspected");
  EXPECT_EQ(s->processes[3].pid, 13);
}

TEST(SystemPatchSummary, MalformedSummariesAreErrorsNamingTheOriginAndField) {
  for (const char* bad :
       {R"({"applied":1})", R"({"processes":[{"pid":"x","result":"applied"}]})",
        R"({"processes":[{"pid":1}]})", R"({"processes":[],"applied":1.5})", "not json", "[]"}) {
    auto s = ParseSystemPatchSummary(bad, "guest 3: hotpatch apply");
    ASSERT_FALSE(s) << bad;
    EXPECT_EQ(s.error().code(), ErrorCode::kParse) << bad;
    EXPECT_THAT(s.error().message(), HasSubstr("guest 3: hotpatch apply")) << bad;
  }
  auto s = ParseSystemPatchSummary(R"({"processes":[{"pid":"x","result":"applied"}]})", "o");
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().message(), HasSubstr("pid"));
}

class AgentSystemPatch : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("patchcore-agent-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "out");
    auto p = testing_support::StartLocalAgent(PATCHLAB_AGENT_BINARY, dir_);
    ASSERT_OK(p);
    agent_.emplace(std::move(*p));
    AgentClientOptions co;
    co.default_timeout = milliseconds(60000);
    co.log_path = dir_ / "agent.log";
    co.hotpatch_path = HOTPATCH_BIN;
    co.hotpatch_env = {{"HOTPATCH_STATE_DIR", (dir_ / "state").string()}};
    auto c = AgentClient::Connect(dir_ / "agent.sock", co, milliseconds(20000));
    ASSERT_OK(c);
    client_ = std::move(*c);
    ASSERT_OK(client_->WaitReady(milliseconds(20000)));
    request_.descendants_of = agent_->pid();
  }
  void TearDown() override {
    client_.reset();
    agent_.reset();
    if (!HasFailure()) fs::remove_all(dir_);
  }

  // Starts zlib_idle through the agent; its output goes to out/N.out.
  pid_t StartZlibProcess(int n) {
    auto pid =
        client_->Exec({.argv = {ZLIB_IDLE, "--period", "20"},
                       .stdout_path = Out(n).string(),
                       .stderr_path = (dir_ / "out" / (std::to_string(n) + ".err")).string()});
    EXPECT_OK(pid);
    return pid ? *pid : 0;
  }
  fs::path Out(int n) const { return dir_ / "out" / (std::to_string(n) + ".out"); }
  // Waits (bounded, for liveness only) until process n's last line says z=`z`.
  bool Says(int n, const std::string& z) const {
    for (int i = 0; i < 1500; ++i) {
      std::string text = ReadFile(Out(n)).value_or("");
      size_t at = text.rfind("z=");
      if (at != std::string::npos && text.compare(at, z.size() + 3, "z=" + z + " ") == 0) {
        return true;
      }
      std::this_thread::sleep_for(milliseconds(20));
    }
    return false;
  }
  std::string Pack(const std::string& target, const std::string& func) {
    const std::string out = (dir_ / "z1.hpk").string();
    auto r =
        RunSubprocess({.argv = {HOTPATCH_BIN, "pack", "--target", target, "--object", PATCH_ZLIB,
                                "--id", "z1", "--seq", "1", "--func", func, "-o", out}});
    EXPECT_TRUE(r && r->status.Success()) << (r ? r->stderr_data : r.error().ToString());
    return out;
  }

  fs::path dir_;
  std::optional<Subprocess> agent_;
  std::unique_ptr<AgentClient> client_;
  SystemPatchRequest request_;
};

TEST_F(AgentSystemPatch, ApplyAndRevertEveryProcessOfTheAgentAndReturnTheirResults) {
  std::vector<pid_t> pids;
  for (int n = 0; n < 3; ++n) pids.push_back(StartZlibProcess(n));
  for (int n = 0; n < 3; ++n) ASSERT_TRUE(Says(n, "1")) << "process " << n << " never printed";
  const std::string pkg = Pack(kLibz, "adler32=adler32_v1");

  // The package is unsigned: hotpatch refuses it unless told otherwise, and
  // the client returns that refusal as hotpatch worded it.
  auto refused = client_->ApplySystem(pkg, request_, milliseconds(60000));
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused.error().message(), HasSubstr("unsigned"));
  for (int n = 0; n < 3; ++n) EXPECT_TRUE(Says(n, "1"));

  request_.allow_unsigned = true;
  auto applied = client_->ApplySystem(pkg, request_, milliseconds(60000));
  ASSERT_OK(applied);
  EXPECT_EQ(applied->run.exit_code, 0) << applied->run.stderr_data;
  const SystemPatchSummary& a = applied->summary;
  EXPECT_EQ(a.patch_id, "z1");
  EXPECT_EQ(a.module, "libz.so.1");
  EXPECT_EQ(a.applied, 3);
  EXPECT_TRUE(a.Complete());
  ASSERT_EQ(a.processes.size(), 3u);
  for (const SystemProcessResult& p : a.processes) {
    EXPECT_EQ(p.result, "applied") << p.pid << ": " << p.reason;
    EXPECT_EQ(p.comm, "pc_zlib_idle");
    EXPECT_NE(std::find(pids.begin(), pids.end(), p.pid), pids.end()) << p.pid;
  }
  for (int n = 0; n < 3; ++n) EXPECT_TRUE(Says(n, "600d")) << "process " << n << " not patched";

  auto reverted = client_->RevertSystem("z1", request_, milliseconds(60000));
  ASSERT_OK(reverted);
  EXPECT_EQ(reverted->run.exit_code, 0) << reverted->run.stderr_data;
  EXPECT_EQ(reverted->summary.reverted, 3);
  for (const SystemProcessResult& p : reverted->summary.processes) {
    EXPECT_EQ(p.result, "reverted") << p.pid << ": " << p.reason;
  }
  for (int n = 0; n < 3; ++n) EXPECT_TRUE(Says(n, "1")) << "process " << n << " not restored";

  // Nothing runs z1 any more: hotpatch's reason comes back as the error.
  auto again = client_->RevertSystem("z1", request_, milliseconds(60000));
  ASSERT_FALSE(again);
  EXPECT_THAT(again.error().message(), HasSubstr("z1"));
}

}  // namespace
}  // namespace patchlab::harness
