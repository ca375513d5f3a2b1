// Reference images built for real from Debian's archive: the first build
// fetches the kernel package, the second finds everything in the cache.
#include "harness/vm/image_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "base/elf_file.h"
#include "base/file_util.h"
#include "base/subprocess.h"
#include "tests/harness/vm_test_env.h"
#include "tests/support/status_matchers.h"

using ::testing::HasSubstr;
using ::testing::Not;

namespace patchlab::harness {
namespace {

namespace fs = std::filesystem;

TEST(ImageStore, SecondBuildIsACacheHitWithIdenticalFiles) {
  if (auto why = testing::MissingVmPrerequisite(); !why.empty()) GTEST_SKIP() << why;
  auto store = ImageStore::Open(testing::StoreOptions());
  ASSERT_OK(store);
  auto first = store->Build("debian12-cloud");
  ASSERT_OK(first);
  EXPECT_TRUE(fs::exists(first->kernel));
  EXPECT_THAT(first->kernel_release, HasSubstr("cloud-amd64")) << first->kernel_release;
  auto bytes = ReadFile(first->initrd);
  ASSERT_TRUE(bytes);
  struct stat before {};
  ASSERT_EQ(::stat(first->initrd.c_str(), &before), 0);

  auto second = store->Build("debian12-cloud");
  ASSERT_OK(second);
  EXPECT_EQ(second->initrd, first->initrd);
  EXPECT_EQ(second->kernel, first->kernel);
  EXPECT_EQ(second->content_hash, first->content_hash);
  struct stat after {};
  ASSERT_EQ(::stat(second->initrd.c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino) << "the cached file was rewritten";
  EXPECT_EQ(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
  EXPECT_EQ(*ReadFile(second->initrd), *bytes);
  auto cached = store->Cached("debian12-cloud");
  ASSERT_TRUE(cached && cached->has_value());
  EXPECT_EQ((*cached)->initrd, first->initrd);

  // The initramfs holds what the guest needs, at the paths it runs them from.
  SubprocessOptions list;
  list.argv = {"cpio", "-t", "--quiet", "-F", first->initrd.string()};
  auto r = RunSubprocess(std::move(list));
  ASSERT_TRUE(r && r->status.Success());
  for (const char* path :
       {"init", "bin/busybox", "usr/sbin/patchlab-agent", "lib/x86_64-linux-gnu/libz.so.1",
        "lib/x86_64-linux-gnu/libc.so.6", "lib64/ld-linux-x86-64.so.2", "dev/console"}) {
    EXPECT_THAT(r->stdout_data, HasSubstr(std::string(path) + "\n")) << path;
  }
}

// The lab's binaries (-O2 -g builds, hotpatch ~52 MB) go in without their
// debug info; the build's own files keep it.
TEST(ImageStore, TheLabsBinariesGoInWithoutDebugInfo) {
  if (auto why = testing::MissingVmPrerequisite(); !why.empty()) GTEST_SKIP() << why;
  auto options = testing::StoreOptions();
  ASSERT_FALSE(options.hotpatch_binary.empty()) << "the hotpatch target is not built";
  auto store = ImageStore::Open(options);
  ASSERT_OK(store);
  auto image = store->Build("debian12-cloud");
  ASSERT_OK(image);
  for (auto [member, host] : {std::pair{"usr/bin/hotpatch", options.hotpatch_binary},
                              std::pair{"usr/sbin/patchlab-agent", options.agent_binary}}) {
    auto bytes = testing::CpioMember(image->initrd, member);
    ASSERT_OK(bytes);
    EXPECT_EQ(testing::DebugInfoLeft(*bytes, host), "") << member;
  }
  auto hotpatch = ElfFile::Open(options.hotpatch_binary);
  ASSERT_OK(hotpatch);
  EXPECT_NE(hotpatch->FindSection(".debug_info"), nullptr)
      << "the build's own hotpatch was touched (or built without -g)";
}

// The image's content hash covers the binaries it holds (stripped): another
// hotpatch makes another image, the same one finds the first again.
TEST(ImageStore, AnotherHotpatchMakesAnotherImage) {
  if (auto why = testing::MissingVmPrerequisite(); !why.empty()) GTEST_SKIP() << why;
  auto options = testing::StoreOptions();
  ASSERT_FALSE(options.hotpatch_binary.empty()) << "the hotpatch target is not built";
  auto store = ImageStore::Open(options);
  ASSERT_OK(store);
  auto first = store->Build("debian12-cloud");
  ASSERT_OK(first);
  auto other_options = options;
  other_options.hotpatch_binary = PATCHLAB_CRASHER_BINARY;  // any other program
  auto other_store = ImageStore::Open(other_options);
  ASSERT_OK(other_store);
  auto other = other_store->Build("debian12-cloud");
  ASSERT_OK(other);
  EXPECT_NE(other->content_hash, first->content_hash);
  EXPECT_NE(other->initrd, first->initrd);
  auto again = store->Build("debian12-cloud");
  ASSERT_OK(again);
  EXPECT_EQ(again->content_hash, first->content_hash);
  EXPECT_EQ(again->initrd, first->initrd);
  if (other->initrd != first->initrd) {
    std::error_code ec;
    fs::remove_all(other->initrd.parent_path(), ec);  // the crasher-as-hotpatch image
  }
}

TEST(ImageStore, TheTwoBundledImagesUseDifferentKernels) {
  if (auto why = testing::MissingVmPrerequisite(); !why.empty()) GTEST_SKIP() << why;
  auto store = ImageStore::Open(testing::StoreOptions());
  ASSERT_OK(store);
  auto generic = store->Build("debian12-generic");
  ASSERT_OK(generic);
  auto cloud = store->Build("debian12-cloud");
  ASSERT_OK(cloud);
  EXPECT_NE(generic->kernel_release, cloud->kernel_release);
  EXPECT_THAT(generic->kernel_release, Not(HasSubstr("cloud")));
}

TEST(ImageStore, AnUnknownPackageIsAClearError) {
  if (auto why = testing::MissingVmPrerequisite(); !why.empty()) GTEST_SKIP() << why;
  char tmpl[] = "/tmp/images-test-XXXXXX";
  fs::path dir = ::mkdtemp(tmpl);
  ASSERT_TRUE(
      WriteFileAtomic(dir / "images.yaml",
                      "images:\n  - name: gone\n    kernel: linux-image-0.0.0-99-nosuch-amd64\n"));
  auto options = testing::StoreOptions();
  options.recipes = dir / "images.yaml";
  options.cache_dir = dir / "cache";
  auto store = ImageStore::Open(options);
  ASSERT_OK(store);
  auto image = store->Build("gone");
  ASSERT_FALSE(image);
  EXPECT_EQ(image.error().code(), ErrorCode::kNotFound);
  std::string msg = image.error().ToString();
  EXPECT_THAT(msg, HasSubstr("linux-image-0.0.0-99-nosuch-amd64")) << msg;
  EXPECT_THAT(msg, HasSubstr("images.yaml:2:")) << msg;
  EXPECT_FALSE(fs::exists(dir / "cache/images")) << "nothing half-built may stay";
  auto missing = store->Build("nonesuch");
  ASSERT_FALSE(missing);
  EXPECT_THAT(missing.error().ToString(), HasSubstr("gone")) << "lists the names it has";
  std::error_code ec;
  fs::remove_all(dir, ec);
}

TEST(ImageStore, ADebianSystemWithAnUnknownPackageNamesItBeforeDownloading) {
  if (auto why = testing::MissingVmPrerequisite(); !why.empty()) GTEST_SKIP() << why;
  char tmpl[] = "/tmp/images-apps-test-XXXXXX";
  fs::path dir = ::mkdtemp(tmpl);
  ASSERT_TRUE(WriteFileAtomic(dir / "images.yaml",
                              "images:\n  - name: apps\n    kernel: linux-image-cloud-amd64\n"
                              "    system:\n      packages: [nginx-light, nginx-lite-nosuch]\n"));
  auto options = testing::StoreOptions();
  options.recipes = dir / "images.yaml";
  options.cache_dir = dir / "cache";
  auto store = ImageStore::Open(options);
  ASSERT_OK(store);
  auto image = store->Build("apps");
  ASSERT_FALSE(image);
  EXPECT_EQ(image.error().code(), ErrorCode::kNotFound);
  std::string msg = image.error().ToString();
  EXPECT_THAT(msg, HasSubstr("nginx-lite-nosuch")) << msg;
  EXPECT_THAT(msg, HasSubstr("images.yaml:2:")) << msg;
  EXPECT_THAT(msg, HasSubstr("system.packages")) << msg;
  EXPECT_FALSE(fs::exists(dir / "cache/systems")) << "nothing may be half-built";
  EXPECT_FALSE(fs::exists(dir / "cache/images"));
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace
}  // namespace patchlab::harness
