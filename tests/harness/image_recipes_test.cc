// The recipe reader of vm-images/images.yaml, from a file and from text.
#include <gtest/gtest.h>

#include "base/file_util.h"
#include "harness/vm/image_store.h"
#include "tests/support/status_matchers.h"

namespace patchlab::harness {
namespace {

using ::testing::HasSubstr;

TEST(ImageRecipes, TextReadsAsTheFileDoes) {
  const std::string path = std::string(PATCHLAB_SOURCE_DIR) + "/vm-images/images.yaml";
  auto from_file = LoadImageRecipes(path);
  ASSERT_OK(from_file);
  auto text = ReadFile(path);
  ASSERT_OK(text);
  auto from_text = ParseImageRecipes(*text, path);
  ASSERT_OK(from_text);
  ASSERT_EQ(from_text->size(), from_file->size());
  for (size_t i = 0; i < from_file->size(); ++i) {
    EXPECT_EQ((*from_text)[i].name, (*from_file)[i].name);
    EXPECT_EQ((*from_text)[i].kernel_package, (*from_file)[i].kernel_package);
    EXPECT_EQ((*from_text)[i].where, (*from_file)[i].where);
  }
}

TEST(ImageRecipes, ErrorsNameTheGivenFileLineAndColumn) {
  auto r = ParseImageRecipes("images:\n  - name: a\n    kernel: k\n    memory: 5\n", "my.yaml");
  ASSERT_FALSE(r.has_value());
  EXPECT_THAT(r.error().ToString(), HasSubstr("my.yaml:4:5"));
  EXPECT_THAT(r.error().ToString(), HasSubstr("memory"));
}

TEST(ImageRecipes, ADebianSystemsRootIsTheInitramfsUnlessItSaysDisk) {
  auto r = ParseImageRecipes(
      "images:\n  - name: a\n    kernel: k\n    system: {packages: [nginx-light]}\n"
      "  - name: b\n    kernel: k\n    system: {packages: [nginx-light], root: disk}\n",
      "my.yaml");
  ASSERT_OK(r);
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].system->root, SystemRoot::kInitramfs);
  EXPECT_EQ((*r)[1].system->root, SystemRoot::kDisk);
  auto bad = ParseImageRecipes(
      "images:\n  - name: a\n    kernel: k\n    system:\n      root: cdrom\n", "my.yaml");
  ASSERT_FALSE(bad.has_value());
  EXPECT_THAT(bad.error().ToString(), HasSubstr("my.yaml:5:13"));
  EXPECT_THAT(bad.error().ToString(), HasSubstr("initramfs or disk"));
}

}  // namespace
}  // namespace patchlab::harness
