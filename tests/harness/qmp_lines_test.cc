// Lines from QEMU's monitor (QMP), classified without a QEMU: the shapes QEMU
// sends, and the malformed ones that used to throw out of the reader thread.
#include <gtest/gtest.h>

#include <string>

#include "harness/vm/internal/qmp_client.h"
#include "tests/support/status_matchers.h"

namespace patchlab::harness::internal {
namespace {

using ::testing::HasSubstr;

TEST(QmpLines, GreetingEventAndReply) {
  auto greeting =
      ParseQmpLine(R"({"QMP": {"version": {"qemu": {"major": 7}}, "capabilities": []}})");
  ASSERT_TRUE(greeting);
  EXPECT_EQ(greeting->kind, QmpMessage::Kind::kGreeting);
  auto event = ParseQmpLine(
      R"({"timestamp": {"seconds": 1, "microseconds": 2}, "event": "GUEST_PANICKED", "data": {"action": "pause"}})");
  ASSERT_TRUE(event);
  EXPECT_EQ(event->kind, QmpMessage::Kind::kEvent);
  EXPECT_EQ(event->event.name, "GUEST_PANICKED");
  EXPECT_EQ(event->event.data["action"], "pause");
  auto reply = ParseQmpLine(R"({"return": {"status": "running", "running": true}, "id": 7})");
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->kind, QmpMessage::Kind::kReply);
  EXPECT_EQ(reply->id, 7u);
  auto value = QmpReplyValue("query-status", reply->reply);
  ASSERT_OK(value);
  EXPECT_EQ((*value)["status"], "running");
  auto error = QmpReplyValue(
      "migrate",
      nlohmann::json::parse(R"({"error": {"class": "GenericError", "desc": "no"}, "id": 8})"));
  ASSERT_FALSE(error.has_value());
  EXPECT_THAT(error.error().ToString(), HasSubstr("QMP migrate: no"));
}

// An event name that is not a string, or an error that is not an object,
// threw nlohmann's type_error out of the reader thread (std::terminate).
TEST(QmpLines, MalformedMessagesAreDroppedOrErrors) {
  EXPECT_FALSE(ParseQmpLine(R"({"event": 5})"));
  EXPECT_FALSE(ParseQmpLine(R"({"id": -1, "return": {}})"));
  EXPECT_FALSE(ParseQmpLine("[1, 2]"));
  EXPECT_FALSE(ParseQmpLine("not json"));
  EXPECT_FALSE(ParseQmpLine("{\"event\": \"X\", \"data\": " + std::string(100000, '[')));
  auto odd = QmpReplyValue("stop", nlohmann::json::parse(R"({"error": "just text", "id": 1})"));
  ASSERT_FALSE(odd.has_value());
  EXPECT_THAT(odd.error().ToString(), HasSubstr("QMP stop: \"just text\""));
  auto no_desc = QmpReplyValue("stop", nlohmann::json::parse(R"({"error": {"desc": 3}, "id": 1})"));
  ASSERT_FALSE(no_desc.has_value());
  EXPECT_THAT(no_desc.error().ToString(), HasSubstr("{\"desc\":3}"));
}

}  // namespace
}  // namespace patchlab::harness::internal
