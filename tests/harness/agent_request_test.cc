// The agent's decoding of the host's requests: each op as the host sends it,
// and lines that would have the agent (PID 1 in the guest) signal every
// process, cast a float or trust a C string with a NUL in it.
#include "harness/agent/agent_request.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/support/status_matchers.h"

namespace patchlab::agent {
namespace {

using ::testing::HasSubstr;

TEST(AgentRequest, EachOpDecodesItsFields) {
  auto run = ParseAgentRequest(
      R"({"id": 3, "op": "run", "argv": ["/bin/sh", "-c", "true"], "env": {"A": "1"},
          "cwd": "/tmp", "stdin": "x\u0000y"})");
  ASSERT_TRUE(run.has_value()) << run.error().message;
  EXPECT_EQ(run->id, 3u);
  EXPECT_EQ(run->op, AgentOp::kRun);
  EXPECT_EQ(run->argv, (std::vector<std::string>{"/bin/sh", "-c", "true"}));
  EXPECT_EQ(run->env.front(), "A=1");
  EXPECT_EQ(run->env.back().rfind("PATH=", 0), 0u) << "a PATH when the request has none";
  EXPECT_EQ(run->cwd, "/tmp");
  EXPECT_EQ(run->stdin_data, std::string("x\0y", 3)) << "stdin may hold any byte";
  EXPECT_EQ(run->timeout_ms, 60000);
  auto put = ParseAgentRequest(
      R"({"id": 4, "op": "put", "path": "/run/f", "mode": 493, "data": "aGk=", "offset": 2})");
  ASSERT_TRUE(put.has_value()) << put.error().message;
  EXPECT_EQ(put->data, "hi");
  EXPECT_EQ(put->mode, 0755u);
  EXPECT_EQ(put->offset, 2u);
  auto get = ParseAgentRequest(R"({"id": 5, "op": "get", "path": "/f", "length": 1e0})");
  ASSERT_FALSE(get.has_value()) << "a float length is not an integer";
  get = ParseAgentRequest(R"({"id": 5, "op": "get", "path": "/f", "length": 99999999})");
  ASSERT_TRUE(get.has_value()) << get.error().message;
  EXPECT_EQ(get->length, harness::agent_protocol::kMaxChunkBytes) << "one chunk at most";
  auto kill = ParseAgentRequest(R"({"id": 6, "op": "kill", "pid": 42, "signal": 15})");
  ASSERT_TRUE(kill.has_value()) << kill.error().message;
  EXPECT_EQ(kill->pid, 42);
  EXPECT_EQ(kill->signal, 15);
  auto wait = ParseAgentRequest(R"({"id": 7, "op": "wait", "pid": 42})");
  ASSERT_TRUE(wait.has_value()) << wait.error().message;
  EXPECT_EQ(wait->timeout_ms, 0);
  auto kmsg = ParseAgentRequest(R"({"id": 8, "op": "kmsg", "since": 12})");
  ASSERT_TRUE(kmsg.has_value()) << kmsg.error().message;
  EXPECT_EQ(kmsg->since, 12u);
  auto procs = ParseAgentRequest(R"({"id": 9, "op": "procs", "exe": "/usr/sbin/nginx"})");
  ASSERT_TRUE(procs.has_value()) << procs.error().message;
  EXPECT_EQ(procs->op, AgentOp::kProcs);
  EXPECT_EQ(procs->path, "/usr/sbin/nginx");
  for (const char* op : {"hello", "kmsg_mark", "shutdown"}) {
    auto r = ParseAgentRequest(std::string(R"({"id": 1, "op": ")") + op + "\"}");
    EXPECT_TRUE(r.has_value()) << op;
  }
}

// Each case: the line, and what the error must say. All of these carry an id,
// so the agent answers them with ok false.
TEST(AgentRequest, BadFieldsAreRefusedNamingTheField) {
  const std::pair<std::string, std::string> kCases[] = {
      {R"({"id": 1, "op": "kill", "pid": -1, "signal": 9})", "field 'pid': -1 is outside 1.."},
      {R"({"id": 1, "op": "kill", "pid": 0, "signal": 9})", "field 'pid': 0 is outside"},
      {R"({"id": 1, "op": "kill", "pid": 5, "signal": 65})", "field 'signal': 65 is outside"},
      {R"({"id": 1, "op": "kill", "pid": 5})", "field 'signal': missing"},
      {R"({"id": 1, "op": "wait", "pid": 1e30})", "field 'pid': expected an integer, got 1e+30"},
      {R"({"id": 1, "op": "wait", "pid": 5, "timeout_ms": 1e30})", "field 'timeout_ms'"},
      {R"({"id": 1, "op": "run", "argv": ["x"], "timeout_ms": 9223372036854775807})",
       "field 'timeout_ms'"},
      {R"({"id": 1, "op": "sample", "pid": "5"})", "field 'pid': expected an integer, got string"},
      {R"({"id": 1, "op": "exec", "argv": []})", "field 'argv': empty"},
      {R"({"id": 1, "op": "exec", "argv": "ls"})", "field 'argv': expected a list"},
      {R"({"id": 1, "op": "exec", "argv": ["ls", 3]})", "field 'argv[1]': expected a string"},
      {R"({"id": 1, "op": "exec", "argv": ["ls\u0000-la"]})", "field 'argv[0]': holds a NUL"},
      {R"({"id": 1, "op": "exec", "argv": ["ls"], "env": {"A=B": "1"}})", "field 'env'"},
      {R"({"id": 1, "op": "exec", "argv": ["ls"], "env": {"A": 1}})", "field 'env.A'"},
      {R"({"id": 1, "op": "exec", "argv": ["ls"], "stdout": ["x"]})", "field 'stdout'"},
      {R"({"id": 1, "op": "put", "path": "/f", "data": "a!"})", "field 'data': not base64"},
      {R"({"id": 1, "op": "put", "path": "/f", "data": "", "mode": 65535})", "field 'mode'"},
      {R"({"id": 1, "op": "put", "path": "/f", "data": "", "offset": 18446744073709551615})",
       "field 'offset'"},
      {R"({"id": 1, "op": "get", "path": ""})", "field 'path': empty"},
      {R"({"id": 1, "op": "get", "path": "/f", "length": -1})", "field 'length'"},
      {R"({"id": 1, "op": "kmsg"})", "field 'since': missing"},
      {R"({"id": 1, "op": "procs", "exe": "nginx"})", "field 'exe': not an absolute path"},
      {R"({"id": 1, "op": "procs"})", "field 'exe': missing"},
      {R"({"id": 1, "op": 7})", "field 'op'"},
      {R"({"id": 1, "op": "format_disk"})", "unknown op 'format_disk'"},
  };
  for (const auto& [line, message] : kCases) {
    auto r = ParseAgentRequest(line);
    ASSERT_FALSE(r.has_value()) << line;
    EXPECT_EQ(r.error().id, 1u) << line;
    EXPECT_THAT(r.error().message, HasSubstr(message)) << line;
  }
}

TEST(AgentRequest, LinesWithoutAnIdAreNotRequests) {
  for (const char* line : {"", "hello", "[1]", R"({"op": "hello"})", R"({"id": -1, "op": "hello"})",
                           R"({"id": 1.0, "op": "hello"})", R"({"id": "1", "op": "hello"})"}) {
    auto r = ParseAgentRequest(line);
    ASSERT_FALSE(r.has_value()) << line;
    EXPECT_FALSE(r.error().id.has_value()) << line;
  }
  auto deep = ParseAgentRequest(R"({"id": 1, "op": "hello", "x": )" + std::string(1 << 20, '['));
  ASSERT_FALSE(deep.has_value());
  EXPECT_THAT(deep.error().message, HasSubstr("nested deeper than 16 levels"));
}

}  // namespace
}  // namespace patchlab::agent
