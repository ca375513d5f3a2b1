// Signatures from DWARF: from a file and from bytes.
#include "emulator/dwarf_signature.h"

#include <gtest/gtest.h>

#include <string>

#include "base/file_util.h"
#include "tests/support/status_matchers.h"

namespace patchlab::emulator {
namespace {

using testing::HasSubstr;

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

}  // namespace
}  // namespace patchlab::emulator
