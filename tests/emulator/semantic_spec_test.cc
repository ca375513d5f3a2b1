// The scenario file's `semantic:` section: keys, defaults, relative paths and
// errors that name file, line and field.
#include "emulator/semantic_spec.h"

#include <gtest/gtest.h>

#include "tests/support/status_matchers.h"

using ::testing::HasSubstr;

namespace patchlab::emulator {
namespace {

Result<CheckOptions> ParseText(const std::string& text) {
  auto doc = LoadYamlString(text, "/lab/scenarios/s1/scenario.yaml");
  EXPECT_TRUE(doc.has_value());
  auto root = YamlMap::Of("/lab/scenarios/s1/scenario.yaml", *doc, "");
  EXPECT_TRUE(root.has_value());
  auto section = root->Map("semantic");
  if (!section) return std::unexpected(section.error());
  return ParseSemanticSection(*section);
}

TEST(SemanticSpec, ReadsEveryKeyWithPathsRelativeToTheScenario) {
  auto o = ParseText(R"yaml(
name: other keys belong to the scenario parser
semantic:
  old: target/app:parse_header
  new: /abs/patch.so:parse_header_v2
  signature: "int parse_header(const char *buf, size_t len)"
  inputs: 5000
  seed: 42
  expect:
    - "ret == -1 when len > 64"
    - "old.fault && new.ret == -22"
  corpus: corpus/headers
  max_blocks: 50000
  shrink_evaluations: 200
  cpu: x86-64-v2
)yaml");
  ASSERT_OK(o);
  EXPECT_EQ(o->cpu, "x86-64-v2");
  EXPECT_EQ(o->old_fn.elf, "/lab/scenarios/s1/target/app");
  EXPECT_EQ(o->old_fn.symbol, "parse_header");
  EXPECT_EQ(o->new_fn.elf, "/abs/patch.so");
  EXPECT_EQ(o->inputs, 5000u);
  EXPECT_EQ(o->seed, 42u);
  EXPECT_EQ(o->expects.size(), 2u);
  EXPECT_EQ(o->corpus_dir, "/lab/scenarios/s1/corpus/headers");
  EXPECT_EQ(o->max_blocks, 50000u);
  EXPECT_EQ(o->shrink_evaluations, 200);
}

TEST(SemanticSpec, DefaultsAndASingleExpectString) {
  auto o = ParseText("semantic:\n  old: a:f\n  new: b:g\n  expect: ret == 0\n");
  ASSERT_OK(o);
  EXPECT_EQ(o->inputs, CheckOptions{}.inputs);
  EXPECT_TRUE(o->signature.empty());
  ASSERT_EQ(o->expects.size(), 1u);
  EXPECT_EQ(o->expects[0], "ret == 0");
}

TEST(SemanticSpec, ErrorsNameLineAndField) {
  auto unknown = ParseText("semantic:\n  old: a:f\n  new: b:g\n  input: 5\n");
  ASSERT_FALSE(unknown.has_value());
  EXPECT_THAT(unknown.error().ToString(), HasSubstr("scenario.yaml:4"))
      << unknown.error().ToString();
  EXPECT_THAT(unknown.error().ToString(), HasSubstr("semantic.input"))
      << unknown.error().ToString();

  auto no_colon = ParseText("semantic:\n  old: just-a-file\n  new: b:g\n");
  ASSERT_FALSE(no_colon.has_value());
  EXPECT_THAT(no_colon.error().ToString(), HasSubstr("semantic.old"))
      << no_colon.error().ToString();
  EXPECT_THAT(no_colon.error().ToString(), HasSubstr(":2")) << no_colon.error().ToString();

  auto bad_type = ParseText("semantic:\n  old: a:f\n  new: b:g\n  inputs: many\n");
  ASSERT_FALSE(bad_type.has_value());
  EXPECT_THAT(bad_type.error().ToString(), HasSubstr("semantic.inputs"))
      << bad_type.error().ToString();

  EXPECT_FALSE(ParseText("semantic:\n  new: b:g\n").has_value()) << "old is required";
}

TEST(SemanticSpec, LoadSemanticSpecSaysWhenThereIsNoSection) {
  std::string path = ::testing::TempDir() + "/no_semantic.yaml";
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs("name: x\n", f);
  std::fclose(f);
  auto o = LoadSemanticSpec(path);
  ASSERT_FALSE(o.has_value());
  EXPECT_THAT(o.error().ToString(), HasSubstr("semantic"));
  EXPECT_THAT(o.error().ToString(), HasSubstr(path));
}

}  // namespace
}  // namespace patchlab::emulator
