// A Debian system on a read-only disk (`root: disk`), booted for real: the
// small initramfs loads the modules, mounts the ext4 disk under an overlay on
// tmpfs and hands over to the agent. Files written before the ready state is
// saved are there after a restore, and files of the disk the saved VM never
// read come from the same disk, byte for byte. Needs debian12-apps's system
// (mmdebstrap, minutes the first time on a machine).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "base/file_util.h"
#include "base/subprocess.h"
#include "harness/vm/image_store.h"
#include "harness/vm/qemu_backend.h"
#include "tests/harness/vm_test_env.h"
#include "tests/support/status_matchers.h"

using ::testing::HasSubstr;
using ::testing::StartsWith;

namespace patchlab::harness {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

// The bundled recipes plus debian12-apps's system as `root: disk`.
Result<fs::path> DiskRecipes(const fs::path& dir) {
  fs::path bundled = fs::path(PATCHLAB_SOURCE_DIR) / "vm-images/images.yaml";
  auto recipes = LoadImageRecipes(bundled);
  if (!recipes) return std::unexpected(recipes.error());
  auto apps = std::find_if(recipes->begin(), recipes->end(),
                           [](const ImageRecipe& r) { return r.name == "debian12-apps"; });
  if (apps == recipes->end() || !apps->system)
    return Fail(ErrorCode::kNotFound, "no debian12-apps system in {}", bundled.string());
  std::string packages;
  for (const auto& p : apps->system->packages) packages += (packages.empty() ? "" : ", ") + p;
  std::string text = fmt::format(
      "images:\n  - name: disk-root-test\n    kernel: {}\n    system:\n      suite: {}\n"
      "      packages: [{}]\n      root: disk\n    memory_mib: {}\n",
      apps->kernel_package, apps->system->suite, packages, apps->memory_mib);
  if (auto s = WriteFileAtomic(dir / "images.yaml", text); !s) return std::unexpected(s.error());
  return dir / "images.yaml";
}

std::string Sh(Vm& vm, const std::string& script) {
  auto r = vm.agent().Run({.argv = {"/bin/sh", "-c", script}}, seconds(60));
  EXPECT_OK(r);
  if (!r) return "";
  EXPECT_TRUE(r->exit.Success()) << script << ": " << r->stdout_data << r->stderr_data;
  return r->stdout_data;
}

TEST(DiskRoot, BootsAndRestoresWithTheSameDiskAndItsWrites) {
  if (auto why = testing::MissingVmPrerequisite(); !why.empty()) GTEST_SKIP() << why;
  if (::access("/usr/bin/mmdebstrap", X_OK) != 0) GTEST_SKIP() << "mmdebstrap is not installed";
  fs::path dir = fs::temp_directory_path() / fmt::format("disk_root_test.{}", ::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto recipes = DiskRecipes(dir);
  ASSERT_OK(recipes);
  ImageStoreOptions options = testing::StoreOptions();
  options.recipes = *recipes;
  auto store = ImageStore::Open(options);
  ASSERT_OK(store);
  auto image = store->Build("disk-root-test");
  ASSERT_OK(image);
  ASSERT_FALSE(image->root_disk.empty());
  EXPECT_EQ(image->root_disk.filename(), "root.ext4");

  QemuBackend backend({});
  VmSpec spec;
  spec.memory_mib = 1024;
  spec.name = "disk-root-boot";
  spec.artefacts_dir = dir / spec.name;
  auto vm = backend.Boot(*image, spec);
  ASSERT_OK(vm);
  // The root is the overlay, its lower layer the disk; the lab's files are in it.
  EXPECT_THAT(Sh(**vm, "grep ' / ' /proc/mounts"), StartsWith("overlay / overlay rw"));
  EXPECT_THAT(Sh(**vm, "ls /usr/bin/hotpatch /usr/sbin/nginx"), HasSubstr("/usr/sbin/nginx"));
  Sh(**vm, "echo written-before-save > /etc/patchlab-marker");
  auto saved = backend.SaveReady(**vm, dir / "ready.state");
  ASSERT_OK(saved);
  ASSERT_OK((*vm)->Shutdown(seconds(2)));

  spec.name = "disk-root-restore";
  spec.artefacts_dir = dir / spec.name;
  auto restored = backend.RestoreReady(*saved, spec);
  ASSERT_OK(restored);
  EXPECT_EQ(Sh(**restored, "cat /etc/patchlab-marker"), "written-before-save\n");
  // A file nothing read before the save: read now from the disk.
  auto root = SystemRootOf(*recipes, "disk-root-test", options.cache_dir);
  ASSERT_OK(root);
  ASSERT_TRUE(root->has_value());
  auto host = RunSubprocess({.argv = {"md5sum", (**root / "usr/bin/redis-check-aof").string()}});
  ASSERT_OK(host);
  std::string guest = Sh(**restored, "md5sum /usr/bin/redis-check-aof");
  EXPECT_EQ(guest.substr(0, 32), host->stdout_data.substr(0, 32));
  EXPECT_OK((*restored)->Shutdown(seconds(2)));
  if (!::testing::Test::HasFailure()) fs::remove_all(dir);
}

// The lab's files reach a disk root through the initramfs's inner lab.cpio:
// hotpatch and the agent go there without their debug info.
TEST(DiskRoot, TheLabsBinariesGoInWithoutDebugInfo) {
  if (auto why = testing::MissingVmPrerequisite(); !why.empty()) GTEST_SKIP() << why;
  if (::access("/usr/bin/mmdebstrap", X_OK) != 0) GTEST_SKIP() << "mmdebstrap is not installed";
  fs::path dir = fs::temp_directory_path() / fmt::format("disk_root_strip_test.{}", ::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto recipes = DiskRecipes(dir);
  ASSERT_OK(recipes);
  ImageStoreOptions options = testing::StoreOptions();
  ASSERT_FALSE(options.hotpatch_binary.empty()) << "the hotpatch target is not built";
  options.recipes = *recipes;
  auto store = ImageStore::Open(options);
  ASSERT_OK(store);
  auto image = store->Build("disk-root-test");
  ASSERT_OK(image);
  auto lab = testing::CpioMember(image->initrd, "lab.cpio");
  ASSERT_OK(lab);
  ASSERT_OK(WriteFileAtomic(dir / "lab.cpio", *lab));
  for (auto [member, host] : {std::pair{"usr/bin/hotpatch", options.hotpatch_binary},
                              std::pair{"usr/sbin/patchlab-agent", options.agent_binary}}) {
    auto bytes = testing::CpioMember(dir / "lab.cpio", member);
    ASSERT_OK(bytes);
    EXPECT_EQ(testing::DebugInfoLeft(*bytes, host), "") << member;
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace patchlab::harness
