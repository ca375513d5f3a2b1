// The prologue rules on hand-assembled byte sequences.
#include "patchcore/prologue_check.h"

#include <gtest/gtest.h>

#include "tests/support/status_matchers.h"

using ::testing::HasSubstr;

namespace patchlab::patchcore {
namespace {

TEST(PrologueCheck, WholeInstructionsOfAtLeastFiveBytes) {
  // push rbp; mov rbp,rsp; mov eax,1; pop rbp; ret
  const uint8_t code[] = {0x55, 0x48, 0x89, 0xe5, 0xb8, 0x01, 0, 0, 0, 0x5d, 0xc3};
  auto r = CheckPrologue("f", 0x1000, code);
  ASSERT_OK(r);
  EXPECT_EQ(r->patch_offset, 0u);
  EXPECT_EQ(r->patch_size, 9u);  // 1 + 3 + 5: the mov is not cut
  EXPECT_FALSE(r->endbr64);
}

TEST(PrologueCheck, KeepsEndbr64) {
  const uint8_t code[] = {0xf3, 0x0f, 0x1e, 0xfa, 0xb8, 0x01, 0, 0, 0, 0xc3};
  auto r = CheckPrologue("g", 0x1000, code);
  ASSERT_OK(r);
  EXPECT_EQ(r->patch_offset, 4u);
  EXPECT_EQ(r->patch_size, 5u);
}

TEST(PrologueCheck, Adler32ShapeOverwritesBothInstructions) {
  // mov edx,edx; jmp rel32 (libz's adler32 on Debian)
  const uint8_t code[] = {0x89, 0xd2, 0xe9, 0x10, 0x20, 0, 0};
  auto r = CheckPrologue("adler32", 0x1000, code);
  ASSERT_OK(r);
  EXPECT_EQ(r->patch_size, 7u);
}

TEST(PrologueCheck, RefusesTooShort) {
  const uint8_t code[] = {0x31, 0xc0, 0xc3};
  auto r = CheckPrologue("tiny", 0x1000, code);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kRefused);
  EXPECT_THAT(r.error().message(), HasSubstr("tiny"));
  EXPECT_THAT(r.error().message(), HasSubstr("too short"));
}

TEST(PrologueCheck, RefusesBranchIntoOverwrittenBytes) {
  // mov rax,rdi; L: dec rax; jnz L; ret
  const uint8_t code[] = {0x48, 0x89, 0xf8, 0x48, 0xff, 0xc8, 0x75, 0xfb, 0xc3};
  auto r = CheckPrologue("loop", 0x1000, code);
  ASSERT_FALSE(r.has_value());
  EXPECT_THAT(r.error().message(), HasSubstr("no branch into the overwritten bytes"))
      << r.error().message();
}

TEST(PrologueCheck, BranchToTheEntryItselfIsFine) {
  // L: dec rdi; mov eax,0; jnz L; ret  (jumps back to the entry)
  const uint8_t code[] = {0x48, 0xff, 0xcf, 0xb8, 0, 0, 0, 0, 0x75, 0xf6, 0xc3};
  EXPECT_TRUE(CheckPrologue("spin", 0x1000, code).has_value());
}

TEST(PrologueCheck, RefusesUndecodableBytes) {
  // mov eax,1; then a lone 0x0f 0xff (ud0 without ModRM in Capstone 4) at the end
  const uint8_t code[] = {0xb8, 0x01, 0, 0, 0, 0xc3, 0x0f};
  auto r = CheckPrologue("odd", 0x1000, code);
  ASSERT_FALSE(r.has_value());
  EXPECT_THAT(r.error().message(), HasSubstr("undecodable")) << r.error().message();
}

}  // namespace
}  // namespace patchlab::patchcore
