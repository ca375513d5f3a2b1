// The --expect language: names, operators, `when`, and errors that point at
// the column.
#include "emulator/expect.h"

#include <gtest/gtest.h>

#include "tests/support/status_matchers.h"

using ::testing::HasSubstr;

namespace patchlab::emulator {
namespace {

Signature Sig() {
  auto s = ParseSignature("int parse(const char *buf, size_t len, int flags)");
  EXPECT_TRUE(s.has_value());
  return *s;
}

struct Case {
  Input in;
  RunOutcome old_out, new_out;
};

Case Make(std::string buf, int64_t old_ret, int64_t new_ret, bool old_fault = false) {
  Case c;
  c.in.args.resize(3);
  c.in.args[0].bytes.assign(buf.begin(), buf.end());
  c.in.args[1].value = buf.size();
  c.in.args[2].value = static_cast<uint64_t>(-2);
  c.old_out.ret = static_cast<uint64_t>(old_ret) & 0xffffffff;
  c.new_out.ret = static_cast<uint64_t>(new_ret) & 0xffffffff;
  if (old_fault) c.old_out.ending = Ending::kFault;
  return c;
}

bool Eval(const std::string& text, const Case& c) {
  auto e = Expect::Parse(text, Sig());
  EXPECT_TRUE(e.has_value()) << text << ": " << e.error().ToString();
  return e && e->Evaluate(c.in, c.old_out, c.new_out);
}

TEST(Expect, WhenLimitsAnExpectationToAnInputClass) {
  Case long_input = Make(std::string(20, 'x'), 5, 0);
  Case short_input = Make("abc", 5, 0);
  EXPECT_TRUE(Eval("ret == 0 when len > 16", long_input));
  EXPECT_FALSE(Eval("ret == 0 when len > 16", short_input));
  EXPECT_FALSE(Eval("ret == 1 when len > 16", long_input));
}

TEST(Expect, ReturnValuesAreSignedAsDeclared) {
  Case c = Make("", 7, -1, /*old_fault=*/true);
  EXPECT_TRUE(Eval("old.fault && new.ret == -1", c));
  EXPECT_TRUE(Eval("new.ret < 0 && !new.fault && new.returned", c));
  EXPECT_TRUE(Eval("flags == -2", c)) << "an int argument reads signed";
}

TEST(Expect, BytesLengthsAndArithmetic) {
  Case c = Make("9,x", 0, 1);
  EXPECT_TRUE(Eval("buf[0] == '9' && buf[1] == 0x2c && buf[99] == 0", c));
  EXPECT_TRUE(Eval("len(buf) * 2 + 1 == 7 && (len % 2) == 1", c));
  EXPECT_TRUE(Eval("buf && (new.ret - old.ret) == 1", c));
  EXPECT_TRUE(Eval("~0 == -1 && 7 / 0 == 0 && (6 & 3 | 8 ^ 1) == 11", c));
}

TEST(Expect, ErrorsNameTheColumnAndTheKnownNames) {
  Signature s = Sig();
  auto e = Expect::Parse("ret == 0 when size > 3", s);
  ASSERT_FALSE(e.has_value());
  EXPECT_THAT(e.error().ToString(), HasSubstr("column 15")) << e.error().ToString();
  EXPECT_THAT(e.error().ToString(), HasSubstr("'size'"));
  EXPECT_THAT(e.error().ToString(), HasSubstr("len")) << "lists the parameters";
  EXPECT_FALSE(Expect::Parse("(ret == 0", s).has_value());
  EXPECT_FALSE(Expect::Parse("ret == ", s).has_value());
  EXPECT_FALSE(Expect::Parse("len(flags) > 1", s).has_value()) << "flags is not a pointer";
}

// Found by fuzz/expect_fuzzer.cc: a literal past 64 bits threw out of the
// parser (std::stoull's out_of_range) and ended the process.
TEST(Expect, NumberPastSixtyFourBitsIsAnError) {
  auto s = ParseSignature("int f(long a, long b)");
  ASSERT_OK(s);
  auto e = Expect::Parse("a / b == a % b || -a == a when a <= -93233720368547758036854", *s);
  ASSERT_FALSE(e.has_value());
  EXPECT_THAT(e.error().ToString(), ::testing::HasSubstr("column 38: number out of range"));
  EXPECT_OK(Expect::Parse("a == 18446744073709551615 || b == 0xffffffffffffffff", *s));
}

// Parsing, evaluating and freeing the tree recurse along its height: deep
// nesting and long chains stop at a bound with an error, not a blown stack.
TEST(Expect, NestingAndLengthAreBounded) {
  Signature s = Sig();
  Case c = Make("abc", 0, 0);
  EXPECT_TRUE(Eval(std::string(50, '(') + "len == 3" + std::string(50, ')'), c));
  EXPECT_TRUE(Eval(std::string(99, '!') + "0", c));
  auto parens = Expect::Parse(std::string(100000, '(') + "1", s);
  ASSERT_FALSE(parens.has_value());
  EXPECT_THAT(parens.error().ToString(),
              ::testing::HasSubstr("column 101: nested deeper than 100"));
  EXPECT_LT(parens.error().ToString().size(), 300u) << "quotes the start of the expression only";
  auto negations = Expect::Parse(std::string(100000, '-') + "1", s);
  ASSERT_FALSE(negations.has_value());
  EXPECT_THAT(negations.error().ToString(), ::testing::HasSubstr("nested deeper than 100"));
  std::string chain = "1";
  for (int i = 0; i < 100000; ++i) chain += "+1";
  auto sum = Expect::Parse(chain, s);
  ASSERT_FALSE(sum.has_value());
  EXPECT_THAT(sum.error().ToString(), ::testing::HasSubstr("more than 1000 terms"));
  std::string short_chain = "len";
  for (int i = 0; i < 400; ++i) short_chain += "+0";
  EXPECT_TRUE(Eval(short_chain + " == 3", c));
}

}  // namespace
}  // namespace patchlab::emulator
