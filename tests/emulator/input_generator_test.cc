// The input stream: deterministic per seed, covering boundaries, both guard
// sides, NULL, length relations and the corpus.
#include "emulator/input_generator.h"

#include <gtest/gtest.h>

#include <set>

#include "tests/support/status_matchers.h"

namespace patchlab::emulator {
namespace {

Signature Sig(const char* text) {
  auto s = ParseSignature(text);
  EXPECT_OK(s);
  return *s;
}

TEST(InputGenerator, SameSeedSameStreamOtherSeedOtherStream) {
  Signature s = Sig("int f(const unsigned char *buf, size_t len, int k)");
  InputGenerator a(s, 1), b(s, 1), c(s, 2);
  bool differs = false;
  for (int i = 0; i < 500; ++i) {
    Input x = a.Next(), y = b.Next(), z = c.Next();
    EXPECT_EQ(RenderInput(s, x), RenderInput(s, y)) << i;
    differs |= RenderInput(s, x) != RenderInput(s, z);
  }
  EXPECT_TRUE(differs);
}

TEST(InputGenerator, CoversBoundariesGuardsNullAndLengthRelations) {
  Signature s = Sig("int f(const unsigned char *buf, size_t len, int k)");
  InputGenerator g(s, 3);
  std::set<int64_t> ks;
  std::set<int64_t> len_minus_size;
  bool null = false, leading = false, trailing = false, zeros = false, ones = false;
  for (int i = 0; i < 2000; ++i) {
    Input in = g.Next();
    ks.insert(SignedValue(s.params[2], in.args[2].value));
    if (in.args[0].is_null)
      null = true;
    else
      len_minus_size.insert(static_cast<int64_t>(in.args[1].value) -
                            static_cast<int64_t>(in.args[0].bytes.size()));
    (in.leading ? leading : trailing) = true;
    const auto& b = in.args[0].bytes;
    if (b.size() > 8 && std::all_of(b.begin(), b.end(), [](uint8_t x) { return x == 0; }))
      zeros = true;
    if (b.size() > 8 && std::all_of(b.begin(), b.end(), [](uint8_t x) { return x == 0xff; }))
      ones = true;
  }
  for (int64_t want : {0LL, 1LL, -1LL, 2147483647LL, -2147483648LL})
    EXPECT_TRUE(ks.count(want)) << want;
  EXPECT_TRUE(null && leading && trailing && zeros && ones);
  for (int64_t rel : {-1LL, 0LL, 1LL}) EXPECT_TRUE(len_minus_size.count(rel)) << rel;
}

TEST(InputGenerator, CorpusEntriesComeFirstAfterBoundariesAndAreMutated) {
  Signature s = Sig("int f(const char *text, size_t n)");
  std::vector<uint8_t> seed = {'1', '2', ',', '3', '4'};
  InputGenerator g(s, 1, {seed});
  bool exact = false, mutated = false;
  for (int i = 0; i < 3000; ++i) {
    Input in = g.Next();
    const auto& b = in.args[0].bytes;
    if (b == seed)
      exact = true;
    else if (b.size() >= 4 && b.size() <= 8 &&
             std::search(b.begin(), b.end(), seed.begin(), seed.begin() + 2) != b.end())
      mutated = true;
  }
  EXPECT_TRUE(exact);
  EXPECT_TRUE(mutated);
}

}  // namespace
}  // namespace patchlab::emulator
