// A real application's library patch is packed against one build of the
// library: on a Debian-system image whose file is that build it runs; on one
// with another build the cell is refused before any machine starts, naming
// both build-ids (the image roots here are folders holding real Debian ELF
// files from this host).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

#include "base/elf_file.h"
#include "harness/lab/internal/runner_build.h"
#include "tests/support/status_matchers.h"

namespace patchlab::harness::internal {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr const char* kLibz = "/lib/x86_64-linux-gnu/libz.so.1";
constexpr const char* kLibm = "/lib/x86_64-linux-gnu/libm.so.6";

struct ImageRoot {
  ImageRoot() {
    char tmpl[] = "/tmp/patchlab-apps-library-build-XXXXXX";
    dir = ::mkdtemp(tmpl);
    fs::create_directories(dir / "lib/x86_64-linux-gnu");
  }
  ~ImageRoot() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  // Puts `host_file` at the patch's module path in this root.
  void Holds(const char* host_file) {
    fs::copy_file(host_file, dir / fs::path(kLibz).relative_path(),
                  fs::copy_options::overwrite_existing);
  }
  fs::path dir;
};

struct LibzPatch {
  LibzPatch() {
    spec.id = "zfix";
    spec.module = kLibz;
    spec.where = "s/scenario.yaml:6:3";
    patch.spec = &spec;
    auto elf = ElfFile::Open(kLibz);
    EXPECT_OK(elf);
    if (elf) patch.target_build_id = elf->build_id();
  }
  PatchSpec spec;
  BuiltPatch patch;
};

TEST(LibraryBuildMismatch, TheSameBuildOnAnotherImageFits) {
  LibzPatch p;
  ImageRoot root;
  root.Holds(kLibz);
  EXPECT_EQ(LibraryBuildMismatch(p.patch, root.dir, "debian12-apps-generic"), "");
}

TEST(LibraryBuildMismatch, AnotherBuildIsRefusedNamingBothBuildIds) {
  LibzPatch p;
  ImageRoot root;
  root.Holds(kLibm);  // another build (of another library, as far as build-ids go)
  auto other = ElfFile::Open(kLibm);
  ASSERT_OK(other);
  std::string why = LibraryBuildMismatch(p.patch, root.dir, "debian12-apps-generic");
  EXPECT_THAT(why, HasSubstr("s/scenario.yaml:6:3: patch 'zfix' was packed against"));
  EXPECT_THAT(why, HasSubstr(p.patch.target_build_id));
  EXPECT_THAT(why, HasSubstr("image debian12-apps-generic has build-id " + other->build_id()));
}

TEST(LibraryBuildMismatch, AnImageWithoutTheLibraryIsRefused) {
  LibzPatch p;
  ImageRoot root;
  std::string why = LibraryBuildMismatch(p.patch, root.dir, "debian12-apps");
  EXPECT_THAT(why, HasSubstr("is not a library in image debian12-apps"));
}

TEST(LibraryBuildMismatch, APatchOfTheProgramItselfIsNotChecked) {
  LibzPatch p;
  p.spec.module.clear();
  ImageRoot root;
  EXPECT_EQ(LibraryBuildMismatch(p.patch, root.dir, "debian12-apps"), "");
}

}  // namespace
}  // namespace patchlab::harness::internal
