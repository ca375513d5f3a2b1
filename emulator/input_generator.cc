#include "emulator/input_generator.h"

#include <algorithm>
#include <cstring>
#include <iterator>

#include "base/file_util.h"
#include "emulator/callback.h"
#include "emulator/float_value.h"

namespace patchlab::emulator {

Result<std::vector<std::vector<uint8_t>>> ReadCorpus(const std::filesystem::path& dir) {
  std::error_code ec;
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.is_regular_file()) files.push_back(e.path());
  }
  if (ec) return Fail(ErrorCode::kNotFound, "corpus folder {}: {}", dir.string(), ec.message());
  std::sort(files.begin(), files.end());
  std::vector<std::vector<uint8_t>> out;
  for (const auto& f : files) {
    auto data = ReadFile(f);
    if (!data) return std::unexpected(data.error());
    out.emplace_back(data->begin(),
                     data->begin() + std::min<size_t>(data->size(), kMaxBufferBytes - 1));
  }
  return out;
}

InputGenerator::InputGenerator(const Signature& sig, uint64_t seed,
                               std::vector<std::vector<uint8_t>> corpus)
    : sig_(sig), state_(seed ^ 0x9e3779b97f4a7c15ull), corpus_(std::move(corpus)) {
  for (size_t i = 0; i < sig_.params.size(); ++i) {
    if (sig_.params[i].is_pointer && sig_.params[i].fixed_size == 0) {
      first_buffer_ = static_cast<int>(i);
      break;
    }
  }
  BuildBoundaries();
}

uint64_t InputGenerator::Rand() {
  // splitmix64: small, fast, and the same everywhere.
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::vector<uint64_t> InputGenerator::IntegerBoundaries(const Param& p) {
  int bits = p.width * 8;
  uint64_t mask = bits >= 64 ? ~0ull : (1ull << bits) - 1;
  std::vector<uint64_t> v = {0,  1,  2,   3,   7,   8,   15,  16,   17,   31,    32,   33,
                             63, 64, 100, 127, 128, 255, 256, 1000, 4096, 65535, 65536};
  if (p.is_signed) {
    uint64_t max = mask >> 1, min = ~max;
    for (uint64_t x :
         {~uint64_t{0}, ~uint64_t{1}, ~uint64_t{15}, ~uint64_t{127}, max, max - 1, min, min + 1}) {
      v.push_back(x);
    }
  } else {
    for (uint64_t x : {mask, mask - 1, mask >> 1, (mask >> 1) + 1}) v.push_back(x);
  }
  std::vector<uint64_t> out;
  for (uint64_t x : v) {
    uint64_t t = x & mask;
    if (p.is_signed && bits < 64 && (t >> (bits - 1))) t |= ~mask;  // keep the sign in 64 bits
    if (std::find(out.begin(), out.end(), t) == out.end()) out.push_back(t);
  }
  return out;
}

void InputGenerator::FillBuffer(const Param& p, ArgValue& v, uint64_t size, Content c) {
  v.is_null = false;
  if (p.fixed_size != 0) size = p.fixed_size;
  if (p.cstring) size = std::min<uint64_t>(size, kMaxBufferBytes - 1);
  size = std::min<uint64_t>(size, kMaxBufferBytes);
  v.bytes.resize(size);
  static constexpr char kDigits[] = "0123456789,.;:- \n+x";
  for (uint64_t i = 0; i < size; ++i) {
    uint8_t b = 0;
    if (p.pointer_slots)
      b = 0;
    else
      switch (c) {
        case Content::kZeros:
          b = 0;
          break;
        case Content::kOnes:
          b = 0xff;
          break;
        case Content::kDigits:
          b = kDigits[Below(sizeof kDigits - 1)];
          break;
        case Content::kAscii:
          b = static_cast<uint8_t>(0x20 + Below(0x5f));
          break;
        case Content::kRandom:
          b = static_cast<uint8_t>(Rand());
          break;
      }
    // A NUL inside a string only shortens it; keep strings as long as asked.
    if (p.cstring && b == 0) b = '0';
    v.bytes[i] = b;
  }
  for (uint64_t off : p.null_offsets) {
    if (off + 8 <= size) std::memset(v.bytes.data() + off, 0, 8);
  }
}

// relation: 0 exact, 1 one less, 2 one more, 3 zero, 4 one.
void InputGenerator::SetLength(Input& in, int ptr_index, int relation) {
  const Param& p = sig_.params[ptr_index];
  if (p.length_param < 0) return;
  uint64_t n = in.args[ptr_index].is_null ? 0 : in.args[ptr_index].bytes.size();
  uint64_t len = n;
  switch (relation) {
    case 1:
      len = n == 0 ? 0 : n - 1;
      break;
    case 2:
      len = n + 1;
      break;
    case 3:
      len = 0;
      break;
    case 4:
      len = 1;
      break;
    default:
      break;
  }
  in.args[p.length_param].value = len;
}

namespace {

// The values every check tries for a floating-point parameter.
constexpr double kFloatBoundaries[] = {0.0,
                                       -0.0,
                                       1.0,
                                       -1.0,
                                       0.5,
                                       -0.5,
                                       2.0,
                                       3.0,
                                       10.0,
                                       100.0,
                                       255.0,
                                       65535.0,
                                       1e6,
                                       -1e6,
                                       0.1,
                                       1.0 / 3,
                                       3.141592653589793,
                                       2.2250738585072014e-308 /* smallest normal */,
                                       4.9406564584124654e-324 /* smallest subnormal */,
                                       1.7976931348623157e308,
                                       -1.7976931348623157e308,
                                       __builtin_inf(),
                                       -__builtin_inf(),
                                       __builtin_nan(""),
                                       9007199254740992.0 /* 2^53 */,
                                       9223372036854775808.0 /* 2^63 */,
                                       -9223372036854775808.0,
                                       18446744073709551616.0 /* 2^64 */,
                                       1e-300,
                                       1e300};

// An argument of kind float holding `v`.
ArgValue FloatArg(const Param& p, double v) {
  ArgValue a;
  uint8_t image[16] = {};
  EncodeFloat(p.format, v, image);
  if (HeldInValue(p))
    std::memcpy(&a.value, image, static_cast<size_t>(FloatBytes(p.format)));
  else
    a.bytes.assign(image, image + 16);
  return a;
}

}  // namespace

double InputGenerator::RandomDouble() {
  switch (Below(5)) {
    case 0:
    case 1:
      return static_cast<double>(static_cast<int64_t>(Below(201)) - 100);
    case 2:
      return static_cast<double>(static_cast<int64_t>(Rand() % 2000001) - 1000000) /
             static_cast<double>(1u << Below(20));
    case 3:
      return kFloatBoundaries[Below(std::size(kFloatBoundaries))];
    default: {
      const uint64_t bits = Rand();
      double d;
      std::memcpy(&d, &bits, 8);
      return d;
    }
  }
}

// A record's (or __int128's) image with each leaf from `leaf_value`.
template <typename F>
std::vector<uint8_t> RecordImage(const Param& p, F leaf_value) {
  std::vector<uint8_t> bytes(static_cast<size_t>(p.width), 0);
  const std::vector<Leaf> int128 = {
      Leaf{0, 8, ValueKind::kInteger, FloatFormat::kNone, false},
      Leaf{8, 8, ValueKind::kInteger, FloatFormat::kNone, p.is_signed}};
  const std::vector<Leaf>& leaves = p.kind == ValueKind::kRecord ? p.record.leaves : int128;
  for (const Leaf& l : leaves) {
    if (l.offset + static_cast<uint64_t>(l.size) > bytes.size()) continue;
    leaf_value(l, bytes.data() + l.offset);
  }
  return bytes;
}

void InputGenerator::FillRecordLeaf(const Leaf& l, uint8_t* at, int how) {
  if (l.kind == ValueKind::kPointer) return;  // pointers in records by value: NULL
  if (l.kind == ValueKind::kFloat) {
    const double v = how == 0 ? 0.0 : how == 1 ? 1.0 : how == 2 ? -1.0 : RandomDouble();
    uint8_t image[16] = {};
    EncodeFloat(l.format, v, image);
    std::memcpy(at, image, static_cast<size_t>(std::min(l.size, FloatBytes(l.format))));
    return;
  }
  const uint64_t v = how == 0 ? 0 : how == 1 ? 1 : how == 2 ? ~0ull : Rand();
  std::memcpy(at, &v, static_cast<size_t>(std::min(l.size, 8)));
}

std::vector<ArgValue> InputGenerator::ValueBoundaries(const Param& p) {
  std::vector<ArgValue> out;
  switch (p.kind) {
    case ValueKind::kFloat:
      for (double v : kFloatBoundaries) out.push_back(FloatArg(p, v));
      break;
    case ValueKind::kFunction:
      for (int b = 0; b < kCallbackBehaviours; ++b)
        out.push_back(ArgValue{static_cast<uint64_t>(b), false, {}});
      if (!p.callback_target.empty()) out.resize(1);
      break;
    case ValueKind::kRecord:
    case ValueKind::kInteger:
      if (p.kind == ValueKind::kInteger && p.width <= 8) {
        for (uint64_t v : IntegerBoundaries(p)) out.push_back(ArgValue{v, false, {}});
        break;
      }
      for (int how = 0; how < 4; ++how) {
        ArgValue a;
        a.bytes = RecordImage(p, [&](const Leaf& l, uint8_t* at) { FillRecordLeaf(l, at, how); });
        out.push_back(std::move(a));
      }
      break;
    default:
      break;
  }
  return out;
}

ArgValue InputGenerator::RandomValue(const Param& p) {
  switch (p.kind) {
    case ValueKind::kFloat:
      return FloatArg(p, RandomDouble());
    case ValueKind::kFunction:
      return ArgValue{Below(kCallbackBehaviours), false, {}};
    case ValueKind::kRecord:
    case ValueKind::kInteger:
      if (p.kind == ValueKind::kRecord || p.width > 8) {
        ArgValue a;
        a.bytes = RecordImage(p, [&](const Leaf& l, uint8_t* at) {
          FillRecordLeaf(l, at, static_cast<int>(Below(5)));
        });
        return a;
      }
      break;
    default:
      break;
  }
  ArgValue v;
  uint64_t r = Below(10);
  if (r < 4)
    v.value =
        p.is_signed ? static_cast<uint64_t>(static_cast<int64_t>(Below(317)) - 16) : Below(301);
  else if (r < 6) {
    auto b = IntegerBoundaries(p);
    v.value = b[Below(b.size())];
  } else {
    v.value = SignedValue(p, Rand());
  }
  return v;
}

ArgValue InputGenerator::TypicalValue(const Param& p) {
  switch (p.kind) {
    case ValueKind::kFloat:
      return FloatArg(p, 1.0);
    case ValueKind::kFunction:
      return ArgValue{3, false, {}};  // a comparator that compares
    case ValueKind::kRecord:
    case ValueKind::kInteger:
      if (p.kind == ValueKind::kRecord || p.width > 8) {
        ArgValue a;
        a.bytes = RecordImage(p, [&](const Leaf& l, uint8_t* at) { FillRecordLeaf(l, at, 1); });
        return a;
      }
      break;
    default:
      break;
  }
  return ArgValue{1, false, {}};
}

Input InputGenerator::Typical() {
  Input in;
  in.args.resize(sig_.params.size());
  for (size_t i = 0; i < sig_.params.size(); ++i) {
    const Param& p = sig_.params[i];
    if (p.is_pointer)
      FillBuffer(p, in.args[i], 16, Content::kDigits);
    else
      in.args[i] = TypicalValue(p);
  }
  for (size_t i = 0; i < sig_.params.size(); ++i) SetLength(in, static_cast<int>(i), 0);
  return in;
}

void InputGenerator::BuildBoundaries() {
  std::vector<std::vector<Input>> per_param(sig_.params.size());
  static constexpr uint64_t kSizes[] = {0,  1,  2,   3,   7,   8,   9,
                                        15, 16, 17,  31,  32,  33,  63,
                                        64, 65, 127, 128, 255, 256, kMaxBufferBytes - 1};
  static constexpr Content kContents[] = {Content::kZeros, Content::kOnes, Content::kDigits,
                                          Content::kAscii, Content::kRandom};
  for (size_t i = 0; i < sig_.params.size(); ++i) {
    const Param& p = sig_.params[i];
    if (p.length_of >= 0) continue;  // varied with its buffer
    if (!p.is_pointer) {
      for (ArgValue& v : ValueBoundaries(p)) {
        Input in = Typical();
        in.args[i] = std::move(v);
        per_param[i].push_back(std::move(in));
      }
      continue;
    }
    if (!p.nonnull) {
      Input in = Typical();
      in.args[i].is_null = true;
      in.args[i].bytes.clear();
      SetLength(in, static_cast<int>(i), 0);
      per_param[i].push_back(std::move(in));
    }
    if (p.fixed_size != 0) {
      for (Content c : kContents) {
        Input in = Typical();
        FillBuffer(p, in.args[i], p.fixed_size, c);
        per_param[i].push_back(std::move(in));
      }
      continue;
    }
    size_t k = 0;
    for (uint64_t size : kSizes) {
      for (int rel = 0; rel < (p.length_param >= 0 ? 5 : 1); ++rel) {
        if (rel >= 3 && size > 2) continue;  // 0 and 1 only matter against short buffers once
        Input in = Typical();
        FillBuffer(p, in.args[i], size, kContents[k++ % std::size(kContents)]);
        SetLength(in, static_cast<int>(i), rel);
        per_param[i].push_back(std::move(in));
      }
    }
    for (Content c : kContents) {  // every class at a typical length
      Input in = Typical();
      FillBuffer(p, in.args[i], 24, c);
      SetLength(in, static_cast<int>(i), 0);
      per_param[i].push_back(std::move(in));
    }
  }
  if (sig_.params.empty()) per_param.push_back({Input{}});
  // Round robin over parameters, so a short run still tries each of them.
  for (size_t round = 0;; ++round) {
    bool any = false;
    for (auto& list : per_param) {
      if (round < list.size()) {
        boundaries_.push_back(list[round]);
        boundaries_.push_back(list[round]);
        boundaries_.back().leading = true;
        any = true;
      }
    }
    if (!any) break;
  }
}

void InputGenerator::FillFromDictionary(const Param& p, ArgValue& v) {
  v.is_null = false;
  v.bytes.clear();
  for (uint64_t pieces = 1 + Below(6); pieces > 0; --pieces) {
    if (Below(3) != 0) {
      const auto& t = dictionary_[Below(dictionary_.size())];
      v.bytes.insert(v.bytes.end(), t.begin(), t.end());
    } else {
      ArgValue chunk;
      FillBuffer(p, chunk, 1 + Below(12), static_cast<Content>(Below(5)));
      v.bytes.insert(v.bytes.end(), chunk.bytes.begin(), chunk.bytes.end());
    }
  }
  if (p.cstring) std::replace(v.bytes.begin(), v.bytes.end(), uint8_t{0}, uint8_t{'0'});
  if (v.bytes.size() >= kMaxBufferBytes) v.bytes.resize(kMaxBufferBytes - 1);
}

Input InputGenerator::RandomInput() {
  Input in;
  in.args.resize(sig_.params.size());
  for (size_t i = 0; i < sig_.params.size(); ++i) {
    const Param& p = sig_.params[i];
    ArgValue& v = in.args[i];
    if (!p.is_pointer) {
      v = RandomValue(p);
      continue;
    }
    if (!p.nonnull && Below(32) == 0) {
      v.is_null = true;
      continue;
    }
    if (!dictionary_.empty() && p.fixed_size == 0 && (p.byte_pointee || p.cstring) &&
        Below(2) == 0) {
      FillFromDictionary(p, v);
      continue;
    }
    uint64_t size = Below(4) == 0 ? Below(257) : Below(65);
    FillBuffer(p, v, size, static_cast<Content>(Below(5)));
  }
  for (size_t i = 0; i < sig_.params.size(); ++i) {
    uint64_t r = Below(20);
    SetLength(in, static_cast<int>(i), r < 16 ? 0 : static_cast<int>(r - 15));
  }
  return in;
}

Input InputGenerator::Mutate(const std::vector<uint8_t>& base) {
  Input in = RandomInput();
  if (first_buffer_ < 0) return in;
  const Param& p = sig_.params[first_buffer_];
  std::vector<uint8_t> b = base;
  for (uint64_t n = 1 + Below(4); n > 0; --n) {
    switch (Below(5)) {
      case 0:
        if (!b.empty()) b[Below(b.size())] ^= static_cast<uint8_t>(1u << Below(8));
        break;
      case 1: {
        static constexpr uint8_t kBytes[] = {0, 0xff, 0x7f, 0x80, '0', '9', ',', '\n', ' '};
        if (!b.empty()) b[Below(b.size())] = kBytes[Below(std::size(kBytes))];
        break;
      }
      case 2:
        if (b.size() + 1 < kMaxBufferBytes)
          b.insert(b.begin() + Below(b.size() + 1), static_cast<uint8_t>(Rand()));
        break;
      case 3:
        if (!b.empty()) b.erase(b.begin() + Below(b.size()));
        break;
      case 4: {
        const auto& other = corpus_[Below(corpus_.size())];
        size_t cut = Below(b.size() + 1);
        b.resize(cut);
        size_t from = Below(other.size() + 1);
        b.insert(b.end(), other.begin() + from, other.end());
        if (b.size() >= kMaxBufferBytes) b.resize(kMaxBufferBytes - 1);
        break;
      }
    }
  }
  if (p.cstring) std::replace(b.begin(), b.end(), uint8_t{0}, uint8_t{'0'});
  in.args[first_buffer_].is_null = false;
  in.args[first_buffer_].bytes = std::move(b);
  SetLength(in, first_buffer_, 0);
  return in;
}

Input InputGenerator::Next() {
  if (next_boundary_ < boundaries_.size()) return boundaries_[next_boundary_++];
  if (first_buffer_ >= 0 && next_corpus_ < 2 * corpus_.size()) {
    Input in = Typical();
    const Param& p = sig_.params[first_buffer_];
    in.args[first_buffer_].bytes = corpus_[next_corpus_ / 2];
    if (p.cstring) {
      auto& b = in.args[first_buffer_].bytes;
      std::replace(b.begin(), b.end(), uint8_t{0}, uint8_t{'0'});
    }
    SetLength(in, first_buffer_, 0);
    in.leading = next_corpus_ % 2 == 1;
    ++next_corpus_;
    return in;
  }
  ++random_count_;
  Input in = (!corpus_.empty() && first_buffer_ >= 0 && random_count_ % 2 == 0)
                 ? Mutate(corpus_[Below(corpus_.size())])
                 : RandomInput();
  in.leading = random_count_ % 4 == 3;
  return in;
}

}  // namespace patchlab::emulator
