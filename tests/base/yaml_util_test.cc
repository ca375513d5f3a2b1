#include "base/yaml_util.h"

#include <gtest/gtest.h>

#include "tests/support/status_matchers.h"

using ::testing::HasSubstr;

namespace patchlab {
namespace {

TEST(YamlUtil, SyntaxErrorNamesFileLineAndColumn) {
  auto r = LoadYamlString("a: 1\nb: [1, 2\n", "s.yaml");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kParse);
  EXPECT_EQ(r.error().message().rfind("s.yaml:", 0), 0u) << r.error().message();
}

TEST(YamlUtil, UnknownKeyIsRejectedWithItsLine) {
  auto doc = LoadYamlString("name: x\nworkload:\n  threads: 4\n  thredas: 5\n", "s.yaml");
  ASSERT_TRUE(doc.has_value());
  auto root = YamlMap::Of("s.yaml", *doc, "");
  ASSERT_TRUE(root.has_value());
  auto workload = root->Map("workload");
  ASSERT_TRUE(workload.has_value());
  auto s = workload->AllowOnly({"threads", "duration"});
  ASSERT_FALSE(s.has_value());
  EXPECT_THAT(s.error().message(), HasSubstr("s.yaml:4:3")) << s.error().message();
  EXPECT_THAT(s.error().message(), HasSubstr("workload.thredas"));
}

TEST(YamlUtil, WrongTypeNamesFieldAndValue) {
  auto doc = LoadYamlString("threads: many\n", "t.yaml");
  auto root = YamlMap::Of("t.yaml", *doc, "");
  auto r = root->Get<int>("threads");
  ASSERT_FALSE(r.has_value());
  EXPECT_THAT(r.error().message(), HasSubstr("t.yaml:1:10")) << r.error().message();
  EXPECT_THAT(r.error().message(), HasSubstr("'many'"));
}

TEST(YamlUtil, NegativeForUnsignedIsRejected) {
  auto doc = LoadYamlString("n: -1\n", "t.yaml");
  auto root = YamlMap::Of("t.yaml", *doc, "");
  EXPECT_FALSE(root->Get<uint64_t>("n").has_value());
}

TEST(YamlUtil, MissingFieldAndDefaults) {
  auto doc = LoadYamlString("a: 2\nlist: [x, y]\none: z\n", "t.yaml");
  auto root = YamlMap::Of("t.yaml", *doc, "");
  EXPECT_FALSE(root->Get<int>("b").has_value());
  EXPECT_EQ(*root->GetOr<int>("b", 7), 7);
  EXPECT_EQ(*root->Get<int>("a"), 2);
  EXPECT_EQ(root->GetStrings("list")->size(), 2u);
  EXPECT_EQ(root->GetStrings("one")->at(0), "z");
}

}  // namespace
}  // namespace patchlab
