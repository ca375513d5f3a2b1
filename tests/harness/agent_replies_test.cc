// The host's decoding of what the guest agent sends: each message shape the
// agent writes, and the hostile ones a guest can write instead.
#include "harness/vm/internal/agent_replies.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/support/status_matchers.h"

namespace patchlab::harness::internal {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

TEST(AgentReplies, LinesAreRepliesOrEvents) {
  auto reply = ParseAgentLine(R"({"id": 7, "ok": true, "pid": 42})");
  ASSERT_OK(reply);
  EXPECT_EQ(reply->kind, AgentLine::Kind::kReply);
  EXPECT_EQ(reply->id, 7u);
  EXPECT_TRUE(reply->ok);
  auto refused = ParseAgentLine(R"({"id": 8, "ok": false, "error": "no child 9"})");
  ASSERT_OK(refused);
  EXPECT_FALSE(refused->ok);
  EXPECT_EQ(refused->error, "no child 9");
  auto event = ParseAgentLine(R"({"event": "heartbeat", "seq": 3})");
  ASSERT_OK(event);
  EXPECT_EQ(event->kind, AgentLine::Kind::kEvent);
  EXPECT_EQ(event->event, "heartbeat");
}

TEST(AgentReplies, LinesOutsideTheProtocolAreErrors) {
  for (std::string_view line :
       {"Kernel panic - not JSON", "[1, 2]", R"({"id": -1, "ok": true})",
        R"({"id": 1, "ok": "yes"})", R"({"id": 1.5, "ok": true})", R"({"event": 5})",
        R"({"hello": "there"})", R"({"id": 1, "ok": false, "error": 3})",
        R"({"id": 179661e400, "ok": true})"}) {
    auto msg = ParseAgentLine(line);
    ASSERT_FALSE(msg.has_value()) << line;
    EXPECT_EQ(msg.error().code(), ErrorCode::kInfra) << line;
  }
  auto deep = ParseAgentLine("{\"event\": \"x\", \"a\": " + std::string(1 << 20, '['));
  ASSERT_FALSE(deep.has_value());
  EXPECT_THAT(deep.error().ToString(), HasSubstr("nested deeper than 64 levels"));
}

TEST(AgentReplies, FieldsAreCheckedForTypeAndRange) {
  auto exit = DecodeExit(json::parse(R"({"exited": false, "signal": 11, "core_dumped": true})"));
  ASSERT_OK(exit);
  EXPECT_EQ(exit->signal, 11);
  EXPECT_TRUE(exit->core_dumped);
  auto pid = DecodePid(json::parse(R"({"pid": 1e30})"));
  ASSERT_FALSE(pid.has_value());
  EXPECT_THAT(pid.error().ToString(), HasSubstr("malformed pid: field 'pid': expected an integer"));
  auto code = DecodeExit(json::parse(R"({"exited": true, "code": 4294967296})"));
  ASSERT_FALSE(code.has_value());
  EXPECT_THAT(code.error().ToString(), HasSubstr("field 'code'"));
  auto hello = DecodeHello(json::parse(R"({"agent_version": "1", "ncpus": "two"})"));
  ASSERT_FALSE(hello.has_value());
  EXPECT_THAT(hello.error().ToString(), HasSubstr("malformed hello reply: field 'ncpus'"));
  auto sample = DecodeSample(json::parse(R"({"rss_kib": -5})"), 42);
  ASSERT_FALSE(sample.has_value());
  EXPECT_THAT(sample.error().ToString(), HasSubstr("field 'rss_kib'"));
  auto ok_sample = DecodeSample(json::parse(R"({"rss_kib": 5, "load1": 0.25})"), 42);
  ASSERT_OK(ok_sample);
  EXPECT_EQ(ok_sample->pid, 42);
  EXPECT_EQ(ok_sample->rss_kib, 5u);
  EXPECT_EQ(ok_sample->clk_tck, 100) << "absent fields keep their defaults";
}

TEST(AgentReplies, ProcessListsAreCheckedPerEntry) {
  auto procs = DecodeProcesses(json::parse(
      R"({"processes": [{"pid": 7, "ppid": 1, "comm": "nginx", "start_ticks": 5, "cpu_ns": 9}]})"));
  ASSERT_OK(procs);
  ASSERT_EQ(procs->size(), 1u);
  EXPECT_EQ((*procs)[0].comm, "nginx");
  EXPECT_EQ((*procs)[0].cpu_ns, 9u);
  auto missing = DecodeProcesses(json::parse(R"({"ok": true})"));
  ASSERT_FALSE(missing.has_value());
  EXPECT_THAT(missing.error().ToString(), HasSubstr("field 'processes'"));
  auto bad = DecodeProcesses(json::parse(R"({"processes": [{"pid": 7, "comm": 3}]})"));
  ASSERT_FALSE(bad.has_value());
  EXPECT_THAT(bad.error().ToString(), HasSubstr("malformed procs reply: field 'comm'"));
  EXPECT_FALSE(DecodeProcesses(json::parse(R"({"processes": [1]})")).has_value());
}

TEST(AgentReplies, PayloadsAndKernelLogLines) {
  auto chunk = DecodeGetChunk(json::parse(R"({"data": "aGk=", "eof": false})"));
  ASSERT_OK(chunk);
  EXPECT_EQ(chunk->data, "hi");
  EXPECT_FALSE(chunk->eof);
  auto bad = DecodeGetChunk(json::parse(R"({"data": "a!"})"));
  ASSERT_FALSE(bad.has_value());
  EXPECT_THAT(bad.error().ToString(), HasSubstr("not base64"));
  auto lines = DecodeKernelLog(json::parse(
      R"({"lines": [{"seq": 1, "level": 6, "usec": 5, "text": "booted"}], "mark": 1})"));
  ASSERT_OK(lines);
  ASSERT_EQ(lines->size(), 1u);
  EXPECT_EQ((*lines)[0].text, "booted");
  EXPECT_FALSE(DecodeKernelLog(json::parse(R"({"lines": "all"})")).has_value());
  EXPECT_FALSE(DecodeKernelLog(json::parse(R"({"lines": [{"text": 1}]})")).has_value());
  EXPECT_FALSE(DecodeKernelLog(json::parse(R"({"lines": [7]})")).has_value());
  EXPECT_TRUE(ParseHotpatchJson("{\"applied\": true}").is_object());
  EXPECT_TRUE(ParseHotpatchJson("hotpatch: error").is_null());
  EXPECT_TRUE(ParseHotpatchJson(std::string(100000, '[')).is_null());
}

}  // namespace
}  // namespace patchlab::harness::internal
