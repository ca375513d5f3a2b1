// The initramfs writer, checked by the real cpio(1) reading its archives back,
// and the image recipe parser's errors.
#include "harness/vm/internal/cpio_writer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "base/file_util.h"
#include "base/subprocess.h"
#include "harness/vm/image_store.h"
#include "harness/vm/internal/debian_system.h"
#include "tests/support/status_matchers.h"

namespace patchlab::harness {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/cpio-test-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

TEST(CpioWriter, GnuCpioUnpacksWhatItWrites) {
  internal::CpioWriter w;
  w.AddFile("/usr/bin/tool", 0755, "#!/bin/sh\necho hi\n");
  w.AddFile("etc/odd-size", 0600, std::string(1001, 'x'));
  w.AddSymlink("/bin/sh", "/bin/busybox");
  w.AddDirectory("/empty", 0700);
  std::string archive = w.Finish();
  EXPECT_EQ(archive.size() % 512, 0u);
  TempDir dir;
  ASSERT_TRUE(WriteFileAtomic(dir.path() / "a.cpio", archive));
  SubprocessOptions o;
  o.argv = {"cpio", "-idm", "--quiet", "-F", (dir.path() / "a.cpio").string()};
  o.cwd = (dir.path()).string();
  auto r = RunSubprocess(std::move(o));
  ASSERT_TRUE(r);
  ASSERT_TRUE(r->status.Success()) << r->stderr_data;
  EXPECT_EQ(*ReadFile(dir.path() / "usr/bin/tool"), "#!/bin/sh\necho hi\n");
  EXPECT_EQ(fs::status(dir.path() / "usr/bin/tool").permissions() & fs::perms::all,
            static_cast<fs::perms>(0755));
  EXPECT_EQ(fs::file_size(dir.path() / "etc/odd-size"), 1001u);
  EXPECT_EQ(fs::read_symlink(dir.path() / "bin/sh"), "/bin/busybox");
  EXPECT_TRUE(fs::is_directory(dir.path() / "empty"));
}

TEST(CpioWriter, SameInputsGiveTheSameBytes) {
  auto make = [] {
    internal::CpioWriter w;
    w.AddFile("/a/b", 0644, "data");
    w.AddSymlink("/c", "a/b");
    return w.Finish();
  };
  EXPECT_EQ(make(), make());
}

TEST(ImageRecipes, BundledRecipesLoadAndDiffer) {
  auto recipes = LoadImageRecipes(fs::path(PATCHLAB_SOURCE_DIR) / "vm-images/images.yaml");
  ASSERT_OK(recipes);
  ASSERT_GE(recipes->size(), 2u);
  EXPECT_NE((*recipes)[0].kernel_package, (*recipes)[1].kernel_package);
  for (const auto& r : *recipes) EXPECT_FALSE(r.cpus.empty()) << r.name;
}

TEST(ImageRecipes, ErrorsNameFileLineAndField) {
  TempDir dir;
  fs::path file = dir.path() / "images.yaml";
  ASSERT_TRUE(WriteFileAtomic(
      file, "images:\n  - name: a\n    kernel: linux-image-amd64\n    kernal: typo\n"));
  auto r = LoadImageRecipes(file);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().ToString(), HasSubstr(file.string() + ":4:")) << r.error().ToString();
  EXPECT_THAT(r.error().ToString(), HasSubstr("kernal")) << r.error().ToString();

  ASSERT_TRUE(WriteFileAtomic(file, "images:\n  - name: a\n    cpus: [qemu64]\n"));
  r = LoadImageRecipes(file);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().ToString(), HasSubstr("kernel")) << r.error().ToString();

  ASSERT_TRUE(
      WriteFileAtomic(file, "images:\n  - name: a\n    kernel: k\n  - name: a\n    kernel: k\n"));
  r = LoadImageRecipes(file);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().ToString(), HasSubstr("already defined")) << r.error().ToString();
  EXPECT_THAT(r.error().ToString(), HasSubstr(":4:")) << r.error().ToString();
}

TEST(ImageRecipes, SystemSectionIsReadStrictly) {
  TempDir dir;
  fs::path file = dir.path() / "images.yaml";
  ASSERT_OK(WriteFileAtomic(file,
                            "images:\n  - name: apps\n    kernel: linux-image-cloud-amd64\n"
                            "    system:\n      packages: [nginx-light, redis-server]\n"));
  auto r = LoadImageRecipes(file);
  ASSERT_OK(r);
  ASSERT_TRUE((*r)[0].system.has_value());
  EXPECT_EQ((*r)[0].system->suite, "bookworm");
  EXPECT_THAT((*r)[0].system->packages, ::testing::ElementsAre("nginx-light", "redis-server"));

  ASSERT_OK(WriteFileAtomic(file,
                            "images:\n  - name: apps\n    kernel: k\n    system:\n"
                            "      suite: bookworm\n      pakages: [nginx-light]\n"));
  r = LoadImageRecipes(file);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().ToString(), HasSubstr(file.string() + ":6:"));
  EXPECT_THAT(r.error().ToString(), HasSubstr("pakages"));

  ASSERT_OK(WriteFileAtomic(file,
                            "images:\n  - name: apps\n    kernel: k\n    system:\n"
                            "      packages: [nginx-light, --allow-unauthenticated]\n"));
  r = LoadImageRecipes(file);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().ToString(), HasSubstr(file.string() + ":5:"));
  EXPECT_THAT(r.error().ToString(), HasSubstr("system.packages"));
  EXPECT_THAT(r.error().ToString(), HasSubstr("not a Debian package name"));

  ASSERT_OK(WriteFileAtomic(file, "images:\n  - name: apps\n    kernel: k\n    system: [nginx]\n"));
  r = LoadImageRecipes(file);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().ToString(), HasSubstr(":4:"));
}

TEST(DebianSystem, AptErrorLinesKeepsTheLinesThatSayWhy) {
  EXPECT_EQ(internal::AptErrorLines("I: downloading\nE: Unable to locate package nginx-lite\n"
                                    "E: apt-get install failed\n"),
            "E: Unable to locate package nginx-lite; E: apt-get install failed");
  EXPECT_EQ(internal::AptErrorLines("Setting up x\ndpkg: error processing package redis-server "
                                    "(--configure):\n installed post-installation script "
                                    "returned error exit status 1\nI: done\n"),
            "dpkg: error processing package redis-server (--configure):");
  EXPECT_EQ(internal::AptErrorLines("one\nlast line\n"), "last line");
  EXPECT_EQ(internal::AptErrorLines(""), "no output");
}

TEST(DebianSystem, KeyCoversSuiteAndPackagesButNotTheirOrder) {
  internal::DebianSystemSpec a{"bookworm", {"nginx-light", "redis-server"}, ""};
  internal::DebianSystemSpec b{"bookworm", {"redis-server", "nginx-light"}, ""};
  internal::DebianSystemSpec c{"trixie", {"redis-server", "nginx-light"}, ""};
  internal::DebianSystemSpec d{"bookworm", {"nginx-light"}, ""};
  EXPECT_EQ(internal::DebianSystemKey(a), internal::DebianSystemKey(b));
  EXPECT_NE(internal::DebianSystemKey(a), internal::DebianSystemKey(c));
  EXPECT_NE(internal::DebianSystemKey(a), internal::DebianSystemKey(d));
}

}  // namespace
}  // namespace patchlab::harness
