// InputGenerator: the deterministic stream of inputs a check runs, from a
// Signature, a seed and an optional corpus. Same signature, seed and corpus:
// same stream, on any machine (its own PRNG, no std distributions).
//
// In order: boundary inputs (per parameter, the others typical: integer
// limits and small values; floating-point zeros, signs, limits, subnormals,
// infinities and NaN; records with every member 0, 1, -1 and random (their
// pointers NULL); each generated callback; buffer lengths 0, 1, powers of two and their
// neighbours up to kMaxBufferBytes; a length argument equal to, one less than
// and one more than its buffer, 0 and 1; content classes zeros, 0xFF, digits
// and separators, ASCII, random; NULL for pointers not marked nonnull), each
// once against the trailing and once against the leading guard; then every
// corpus file as the first buffer argument; then mutations of corpus entries
// (bit flips, boundary bytes, insertions, deletions, splices) and seeded
// random inputs, alternating guard sides. Byte buffers of random inputs are
// built from dictionary tokens half of the time when there is a dictionary.
//
// Thread-safety: none; one generator per thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "base/error.h"
#include "emulator/input.h"
#include "emulator/signature.h"

namespace patchlab::emulator {

// Reads every regular file of `dir` (sorted by name) as one corpus entry.
// Fails naming the folder or file that cannot be read.
Result<std::vector<std::vector<uint8_t>>> ReadCorpus(const std::filesystem::path& dir);

class InputGenerator {
 public:
  // REQUIRES: `sig` outlives the generator.
  InputGenerator(const Signature& sig, uint64_t seed,
                 std::vector<std::vector<uint8_t>> corpus = {});

  // Tokens (e.g. "GET ", ":", "\n") that random and mutated byte buffers are
  // built from half of the time, so that parsers get past their first
  // comparison. See ExtractTokens (listing.h). Call before the first Next().
  void SetDictionary(std::vector<std::vector<uint8_t>> tokens) { dictionary_ = std::move(tokens); }

  // The next input of the stream.
  Input Next();

  // Boundary values of an integer parameter, as raw 64-bit values.
  static std::vector<uint64_t> IntegerBoundaries(const Param& p);

 private:
  enum class Content { kZeros, kOnes, kDigits, kAscii, kRandom };
  uint64_t Rand();
  uint64_t Below(uint64_t n) { return n == 0 ? 0 : Rand() % n; }
  Input Typical();
  // Values of a parameter that is neither a pointer nor an integer of up
  // to 8 bytes' width (floats, records, __int128, callbacks) as well.
  std::vector<ArgValue> ValueBoundaries(const Param& p);
  ArgValue RandomValue(const Param& p);
  ArgValue TypicalValue(const Param& p);
  double RandomDouble();
  // A record leaf: how 0 zero, 1 one, 2 all ones / -1, else random.
  void FillRecordLeaf(const Leaf& l, uint8_t* at, int how);
  void FillBuffer(const Param& p, ArgValue& v, uint64_t size, Content c);
  void FillFromDictionary(const Param& p, ArgValue& v);
  void SetLength(Input& in, int ptr_index, int relation);
  Input RandomInput();
  Input Mutate(const std::vector<uint8_t>& base);
  void BuildBoundaries();

  const Signature& sig_;
  uint64_t state_;
  std::vector<std::vector<uint8_t>> corpus_;
  std::vector<std::vector<uint8_t>> dictionary_;
  std::vector<Input> boundaries_;
  size_t next_boundary_ = 0;
  size_t next_corpus_ = 0;
  uint64_t random_count_ = 0;
  int first_buffer_ = -1;
};

}  // namespace patchlab::emulator
