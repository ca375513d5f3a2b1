// C prototypes as users write them: widths, signedness, pointers, sizes,
// (pointer, length) pairs, annotations, and clear refusals.
#include "emulator/signature.h"

#include <gtest/gtest.h>

#include "tests/support/status_matchers.h"

using ::testing::HasSubstr;

namespace patchlab::emulator {
namespace {

TEST(Signature, ParsesTheIssueExample) {
  auto s = ParseSignature("int parse(const char *buf, size_t len, struct out *o /* 24 bytes */)");
  ASSERT_OK(s);
  EXPECT_EQ(s->name, "parse");
  EXPECT_EQ(s->ret_width, 4);
  EXPECT_TRUE(s->ret_signed);
  ASSERT_EQ(s->params.size(), 3u);
  EXPECT_TRUE(s->params[0].is_pointer);
  EXPECT_TRUE(s->params[0].pointee_const);
  EXPECT_EQ(s->params[0].length_param, 1);
  EXPECT_FALSE(s->params[0].cstring) << "a buffer with a length is not a string";
  EXPECT_EQ(s->params[1].length_of, 0);
  EXPECT_EQ(s->params[1].width, 8);
  EXPECT_FALSE(s->params[1].is_signed);
  EXPECT_EQ(s->params[2].fixed_size, 24u);
  EXPECT_FALSE(s->params[2].pointee_const);
}

TEST(Signature, IntegerWidthsAndSignedness) {
  auto s = ParseSignature(
      "unsigned long long f(signed char a, unsigned short b, long c, uint8_t d, int32_t e, bool "
      "g)");
  ASSERT_OK(s);
  EXPECT_EQ(s->ret_width, 8);
  EXPECT_FALSE(s->ret_signed);
  int widths[] = {1, 2, 8, 1, 4, 1};
  bool signs[] = {true, false, true, false, true, false};
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(s->params[i].width, widths[i]) << i;
    EXPECT_EQ(s->params[i].is_signed, signs[i]) << i;
  }
}

TEST(Signature, PointeeSizesArraysAndStrings) {
  auto s = ParseSignature("void f(const char *name, int *out, uint64_t table[4], char **slot)");
  ASSERT_OK(s);
  EXPECT_EQ(s->ret_width, 0);
  EXPECT_TRUE(s->params[0].cstring);
  EXPECT_EQ(s->params[1].fixed_size, 4u);
  EXPECT_EQ(s->params[2].fixed_size, 32u);
  EXPECT_TRUE(s->params[3].pointer_slots);
  EXPECT_EQ(s->params[3].fixed_size, 8u);
}

TEST(Signature, AnnotationsPairAndMark) {
  auto s = ParseSignature(
      "int f(unsigned char *data /* nonnull */, int count /* len(data) */, char *dst /* buffer, 16 "
      "bytes */)");
  ASSERT_OK(s);
  EXPECT_TRUE(s->params[0].nonnull);
  EXPECT_EQ(s->params[0].length_param, 1);
  EXPECT_EQ(s->params[1].length_of, 0);
  EXPECT_FALSE(s->params[2].cstring);
  EXPECT_EQ(s->params[2].fixed_size, 16u);
}

TEST(Signature, UnknownSizeIsRefusedNamingTheParameter) {
  auto s = ParseSignature("int f(struct thing *t)");
  ASSERT_FALSE(s.has_value());
  EXPECT_THAT(s.error().ToString(), HasSubstr("'t'")) << s.error().ToString();
  EXPECT_THAT(s.error().ToString(), HasSubstr("bytes")) << s.error().ToString();
}

TEST(Signature, ClearErrorsForWhatIsNotSupported) {
  struct Case {
    const char* text;
    ErrorCode code;
    const char* mentions;
  } cases[] = {
      {"int f(int a, ...)", ErrorCode::kUnsupported, "variadic"},
      {"int f(int a, ... /* int, frob_t */)", ErrorCode::kParse, "frob_t"},
      {"int f(int a, ..., int b)", ErrorCode::kParse, "last"},
      {"int f(struct point p)", ErrorCode::kParse, "struct point is not defined"},
      {"struct big { char b[3000]; }; int f(struct big b)", ErrorCode::kUnsupported, "stack"},
      {"int f(int (*cb)(int) /* fn = */)", ErrorCode::kParse, "unknown annotation"},
      {"int f(int x /* fn = g */)", ErrorCode::kParse, "non-function pointer"},
      {"int f(void x)", ErrorCode::kInvalidArgument, "void"},
      {"int f(frob_t x)", ErrorCode::kParse, "frob_t"},
      {"int f(int x", ErrorCode::kParse, "')'"},
      {"int f(int *p /* 4 parsecs */)", ErrorCode::kParse, "unknown annotation"},
  };
  for (const Case& c : cases) {
    auto s = ParseSignature(c.text);
    ASSERT_FALSE(s.has_value()) << c.text;
    EXPECT_EQ(s.error().code(), c.code) << c.text << ": " << s.error().ToString();
    EXPECT_THAT(s.error().ToString(), HasSubstr(c.mentions)) << s.error().ToString();
  }
}

// Array sizes are read strictly: one past 64 bits used to throw out of the
// parser (std::stoull), one whose size in bytes wraps was taken as its
// remainder, and trailing letters were ignored.
TEST(Signature, ArraySizesAreCheckedNumbers) {
  auto ok = ParseSignature("int f(uint32_t t[0x10], char s[010])");
  ASSERT_OK(ok);
  EXPECT_EQ(ok->params[0].fixed_size, 64u);
  EXPECT_EQ(ok->params[1].fixed_size, 8u) << "010 is octal, as in C";
  struct Case {
    const char* text;
    ErrorCode code;
    const char* mentions;
  } cases[] = {
      {"int f(int x[99999999999999999999])", ErrorCode::kParse,
       "column 13: array size '99999999999999999999' is not a number"},
      {"int f(uint64_t x[0x2000000000000001])", ErrorCode::kUnsupported,
       "an array of 2305843009213693953 elements; at most 4096 bytes"},
      {"int f(char x[9abc])", ErrorCode::kParse, "array size '9abc' is not a number"},
      {"int f(char x[08])", ErrorCode::kParse, "array size '08' is not a number"},
  };
  for (const Case& c : cases) {
    auto s = ParseSignature(c.text);
    ASSERT_FALSE(s.has_value()) << c.text;
    EXPECT_EQ(s.error().code(), c.code) << c.text << ": " << s.error().ToString();
    EXPECT_THAT(s.error().ToString(), HasSubstr(c.mentions)) << s.error().ToString();
  }
}

}  // namespace
}  // namespace patchlab::emulator
