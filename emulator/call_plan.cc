#include "emulator/call_plan.h"

#include <algorithm>

namespace patchlab::emulator {
namespace {

enum class Class { kNone, kInteger, kSse, kSseUp, kX87, kX87Up, kMemory };

// A value as the classifier sees it: its size, alignment and leaves.
struct Shape {
  uint64_t size = 0;
  uint64_t align = 8;
  std::vector<Leaf> leaves;
};

Shape ShapeOf(ValueKind kind, int width, FloatFormat format, const RecordType& record) {
  Shape s;
  switch (kind) {
    case ValueKind::kInteger:
      s.size = static_cast<uint64_t>(width);
      s.align = s.size;
      for (uint64_t at = 0; at < s.size; at += 8)
        s.leaves.push_back(Leaf{at, static_cast<int>(std::min<uint64_t>(8, s.size - at)),
                                ValueKind::kInteger, FloatFormat::kNone, false});
      break;
    case ValueKind::kPointer:
    case ValueKind::kFunction:
      s.size = 8;
      s.leaves.push_back(Leaf{0, 8, ValueKind::kPointer, FloatFormat::kNone, false});
      break;
    case ValueKind::kFloat:
      s.size = static_cast<uint64_t>(FloatBytes(format));
      s.align = s.size;
      s.leaves.push_back(Leaf{0, static_cast<int>(s.size), ValueKind::kFloat, format, false});
      break;
    case ValueKind::kRecord:
      s.size = record.size;
      s.align = std::max<uint64_t>(record.align, 1);
      s.leaves = record.leaves;
      break;
    case ValueKind::kVoid:
      break;
  }
  return s;
}

Class Merge(Class a, Class b) {
  if (a == b) return a;
  if (a == Class::kNone) return b;
  if (b == Class::kNone) return a;
  if (a == Class::kMemory || b == Class::kMemory) return Class::kMemory;
  if (a == Class::kInteger || b == Class::kInteger) return Class::kInteger;
  if (a == Class::kX87 || a == Class::kX87Up || b == Class::kX87 || b == Class::kX87Up)
    return Class::kMemory;
  return Class::kSse;
}

// The classes of each eightbyte of `s` (psABI 3.2.3, the classification
// algorithm for aggregates, applied to scalars as one-leaf aggregates).
std::vector<Class> Classify(const Shape& s) {
  const size_t n = (s.size + 7) / 8;
  if (s.size > 16) return std::vector<Class>(n, Class::kMemory);
  std::vector<Class> c(n, Class::kNone);
  for (const Leaf& l : s.leaves) {
    const uint64_t natural = std::min<uint64_t>(static_cast<uint64_t>(l.size), 16);
    if (natural == 0 || l.offset % natural != 0) return std::vector<Class>(n, Class::kMemory);
    const size_t first = l.offset / 8, last = (l.offset + l.size - 1) / 8;
    for (size_t i = first; i <= last && i < n; ++i) {
      Class k = Class::kInteger;
      if (l.kind == ValueKind::kFloat) {
        k = l.format == FloatFormat::kX87    ? (i == first ? Class::kX87 : Class::kX87Up)
            : l.format == FloatFormat::kQuad ? (i == first ? Class::kSse : Class::kSseUp)
                                             : Class::kSse;
      }
      c[i] = Merge(c[i], k);
    }
  }
  for (size_t i = 0; i < n; ++i) {
    if (c[i] == Class::kX87Up && (i == 0 || c[i - 1] != Class::kX87))
      return std::vector<Class>(n, Class::kMemory);
    if (c[i] == Class::kSseUp && (i == 0 || (c[i - 1] != Class::kSse && c[i - 1] != Class::kSseUp)))
      c[i] = Class::kSse;
    if (c[i] == Class::kMemory) return std::vector<Class>(n, Class::kMemory);
  }
  return c;
}

bool InMemory(const std::vector<Class>& c) {
  return std::any_of(c.begin(), c.end(), [](Class k) {
    return k == Class::kMemory || k == Class::kX87 || k == Class::kX87Up;
  });
}

// Assigns argument registers and stack slots, in order.
class Assigner {
 public:
  explicit Assigner(int first_gpr) : gpr_(first_gpr) {}

  ValuePlan Place(const Shape& s, bool* used_sse) {
    const std::vector<Class> c = Classify(s);
    if (!InMemory(c)) {
      int ints = 0, sses = 0;
      for (Class k : c) {
        ints += k == Class::kInteger;
        sses += k == Class::kSse;
      }
      if (gpr_ + ints <= 6 && sse_ + sses <= 8) return InRegisters(s, c, used_sse);
    }
    return OnStack(s);
  }

  int sse() const { return sse_; }
  uint64_t stack() const { return stack_; }

 private:
  ValuePlan InRegisters(const Shape& s, const std::vector<Class>& c, bool* used_sse) {
    ValuePlan v;
    for (size_t i = 0; i < c.size(); ++i) {
      const auto off = static_cast<uint32_t>(i * 8);
      const auto size = static_cast<uint32_t>(std::min<uint64_t>(8, s.size - i * 8));
      switch (c[i]) {
        case Class::kInteger:
          v.pieces.push_back({off, size, Piece::kGpr, static_cast<uint32_t>(gpr_++)});
          break;
        case Class::kSse:
          v.pieces.push_back({off, size, Piece::kXmm, static_cast<uint32_t>(sse_++)});
          *used_sse = true;
          break;
        case Class::kSseUp:
          v.pieces.push_back({off, size, Piece::kXmmHigh, static_cast<uint32_t>(sse_ - 1)});
          break;
        default:
          break;  // an eightbyte of padding only: nothing to pass
      }
    }
    return v;
  }

  ValuePlan OnStack(const Shape& s) {
    const uint64_t align = std::max<uint64_t>(8, std::min<uint64_t>(s.align, 16));
    stack_ = (stack_ + align - 1) / align * align;
    ValuePlan v;
    if (s.size > 0)
      v.pieces.push_back(
          {0, static_cast<uint32_t>(s.size), Piece::kStack, static_cast<uint32_t>(stack_)});
    stack_ += (s.size + 7) / 8 * 8;
    return v;
  }

  int gpr_;
  int sse_ = 0;
  uint64_t stack_ = 0;
};

// Where the return value comes back.
Status PlanReturn(const Signature& sig, CallPlan& plan) {
  if (sig.ret_kind == ValueKind::kVoid) return {};
  const Shape s = ShapeOf(sig.ret_kind, sig.ret_width, sig.ret_format, sig.ret_record);
  plan.return_size = s.size;
  const std::vector<Class> c = Classify(s);
  const bool x87 = !c.empty() && c[0] == Class::kX87 && s.size == 16;
  if (x87) {
    // A long double (or a struct of one) comes back in st0.
    plan.ret.pieces.push_back({0, 10, Piece::kX87, 0});
    return {};
  }
  if (InMemory(c)) {
    if (std::any_of(s.leaves.begin(), s.leaves.end(),
                    [](const Leaf& l) { return l.format == FloatFormat::kX87; }) &&
        s.size == 32 && sig.ret_kind == ValueKind::kRecord && s.leaves.size() == 2) {
      return Fail(ErrorCode::kUnsupported,
                  "{}: returns a complex long double (st0 and st1): not supported", sig.name);
    }
    plan.hidden_return = true;
    return {};
  }
  uint32_t gpr = 0, sse = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    const auto off = static_cast<uint32_t>(i * 8);
    const auto size = static_cast<uint32_t>(std::min<uint64_t>(8, s.size - i * 8));
    if (c[i] == Class::kInteger) plan.ret.pieces.push_back({off, size, Piece::kGpr, gpr++});
    if (c[i] == Class::kSse) plan.ret.pieces.push_back({off, size, Piece::kXmm, sse++});
    if (c[i] == Class::kSseUp) plan.ret.pieces.push_back({off, size, Piece::kXmmHigh, sse - 1});
  }
  return {};
}

}  // namespace

uint64_t ImageBytes(const Param& p) { return ShapeOf(p.kind, p.width, p.format, p.record).size; }

Result<CallPlan> PlanCall(const Signature& sig) {
  CallPlan plan;
  if (auto s = PlanReturn(sig, plan); !s) return std::unexpected(s.error());
  Assigner assign(plan.hidden_return ? 1 : 0);
  bool used_sse = false;
  for (const Param& p : sig.params) {
    plan.params.push_back(assign.Place(ShapeOf(p.kind, p.width, p.format, p.record), &used_sse));
  }
  plan.stack_bytes = (assign.stack() + 15) / 16 * 16;
  if (plan.stack_bytes > kMaxStackArgBytes) {
    return Fail(ErrorCode::kUnsupported,
                "{}: its arguments need {} bytes of stack; at most {} are supported", sig.name,
                plan.stack_bytes, kMaxStackArgBytes);
  }
  plan.sse_registers = assign.sse();
  plan.needs_sse_entry = used_sse || sig.variadic;
  plan.simple = !plan.hidden_return && plan.stack_bytes == 0 && !plan.needs_sse_entry &&
                (sig.ret_kind == ValueKind::kVoid || sig.ret_kind == ValueKind::kPointer ||
                 (sig.ret_kind == ValueKind::kInteger && sig.ret_width <= 8));
  for (const ValuePlan& v : plan.params) {
    if (v.pieces.size() != 1 || v.pieces[0].where != Piece::kGpr) plan.simple = false;
  }
  return plan;
}

}  // namespace patchlab::emulator
