// Reference images built for real from Debian's archive: the first build
// fetches the kernel package, the second finds everything in the cache.
#include "harness/vm/image_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

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
