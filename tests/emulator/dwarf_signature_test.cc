// Signatures from DWARF: from a file and from bytes, and on hostile debug
// information (fuzz/regressions/dwarf: a pointer type that points at itself,
// 16-byte integers), which must end in signatures or errors, not crashes.
#include "emulator/dwarf_signature.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "base/file_util.h"
#include "tests/support/status_matchers.h"

namespace patchlab::emulator {
namespace {

using ::testing::HasSubstr;

// A regression input of fuzz/dwarf_fuzzer.cc ("NAMES\x7fELF..."), its image
// written to a file of its own so that the file-path reader sees it too.
struct Regression {
  std::string image;
  std::string path;
};

Regression LoadRegression(const std::string& name) {
  auto input = ReadFile(std::string(PATCHLAB_SOURCE_DIR) + "/fuzz/regressions/dwarf/" + name);
  EXPECT_OK(input);
  Regression r;
  r.image =
      input->substr(input->find("\x7f"
                                "ELF"));
  r.path = (std::filesystem::path(::testing::TempDir()) /
            (name + "." + std::to_string(::getpid()) + ".so"))
               .string();
  EXPECT_OK(WriteFileAtomic(r.path, r.image));
  return r;
}

TEST(DwarfSignature, BytesReadAsTheFileDoes) {
  auto from_file = ReadDwarfSignature(FIXTURE_TARGET, "parse_number");
  ASSERT_OK(from_file);
  auto image = ReadFile(FIXTURE_TARGET);
  ASSERT_OK(image);
  auto from_bytes = ReadDwarfSignatureFromBytes(*image, "target.so", "parse_number");
  ASSERT_OK(from_bytes);
  EXPECT_EQ(from_bytes->text, from_file->text);
  ASSERT_EQ(from_bytes->params.size(), 3u);
  EXPECT_EQ(from_bytes->params[2].fixed_size, from_file->params[2].fixed_size);
}

TEST(DwarfSignature, BytesWithoutDwarfNameTheirOrigin) {
  auto image = ReadFile(FIXTURE_STRIPPED);
  ASSERT_OK(image);
  auto sig = ReadDwarfSignatureFromBytes(*image, "stripped.so", "parse_number");
  ASSERT_FALSE(sig.has_value());
  EXPECT_EQ(sig.error().code(), ErrorCode::kNotFound);
  EXPECT_THAT(sig.error().ToString(), HasSubstr("stripped.so has no debug information"));
  auto junk = ReadDwarfSignatureFromBytes("not an ELF file", "junk.so", "f");
  ASSERT_FALSE(junk.has_value());
  EXPECT_THAT(junk.error().ToString(), HasSubstr("junk.so"));
}

// `struct s **p` whose outer pointer type was edited to point at itself:
// following pointees recursed until the stack ran out. Now the chain is cut
// after 32 levels: p reads as a pointer to pointer slots, its type text short.
TEST(DwarfSignature, PointerTypeThatPointsAtItselfEnds) {
  Regression r = LoadRegression("pointer-to-itself");
  for (auto sig :
       {ReadDwarfSignature(r.path, "f"), ReadDwarfSignatureFromBytes(r.image, "x.so", "f")}) {
    ASSERT_OK(sig);
    ASSERT_EQ(sig->params.size(), 1u);
    EXPECT_TRUE(sig->params[0].pointer_slots);
    EXPECT_EQ(sig->params[0].fixed_size, 8u);
    EXPECT_LT(sig->text.size(), 200u) << sig->text;
  }
}

// __int128 is a real DWARF base type of 16 bytes; widths other than 1, 2, 4
// and 8 once reached shifts by the width in bits (undefined beyond 63). The
// checker now passes them as the SysV ABI does (two INTEGER eightbytes), so
// the fuzzed file reads as a 16-byte parameter and return, by either reader.
TEST(DwarfSignature, IntegersWiderThanARegisterAreReadAsSixteenBytes) {
  Regression r = LoadRegression("int128-parameter-and-return");
  auto param = ReadDwarfSignature(r.path, "wide");
  ASSERT_OK(param);
  ASSERT_EQ(param->params.size(), 1u);
  EXPECT_EQ(param->params[0].width, 16);
  EXPECT_THAT(param->text, HasSubstr("__int128"));
  auto ret = ReadDwarfSignatureFromBytes(r.image, "w.so", "wide_ret");
  ASSERT_OK(ret);
  EXPECT_THAT(ret->text, HasSubstr("__int128 wide_ret("));
}

}  // namespace
}  // namespace patchlab::emulator
