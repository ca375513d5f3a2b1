#include "emulator/comparator.h"

#include <fmt/format.h>
#include <unicorn/unicorn.h>

#include <algorithm>
#include <cstring>

#include "emulator/float_value.h"
#include "emulator/input.h"
#include "emulator/internal/byte_scan.h"
#include "emulator/layout.h"

namespace patchlab::emulator {

std::string_view DivergenceKindName(DivergenceKind k) {
  switch (k) {
    case DivergenceKind::kReturn:
      return "return";
    case DivergenceKind::kMemory:
      return "memory";
    case DivergenceKind::kCalls:
      return "calls";
    case DivergenceKind::kFault:
      return "fault";
    case DivergenceKind::kNewCrash:
      return "new-crash";
    case DivergenceKind::kFixedCrash:
      return "fixed-crash";
    case DivergenceKind::kNewHang:
      return "new-hang";
    case DivergenceKind::kFixedHang:
      return "fixed-hang";
    case DivergenceKind::kInconclusive:
      return "inconclusive";
  }
  return "?";
}

namespace {

// The leaves a return value's image is compared by.
std::vector<Leaf> ReturnLeaves(const Signature& sig) {
  switch (sig.ret_kind) {
    case ValueKind::kFloat:
      return {Leaf{0, FloatBytes(sig.ret_format), ValueKind::kFloat, sig.ret_format, false}};
    case ValueKind::kRecord:
      return sig.ret_record.leaves;
    default:  // an __int128
      return {Leaf{0, 8, ValueKind::kInteger, FloatFormat::kNone, false},
              Leaf{8, 8, ValueKind::kInteger, FloatFormat::kNone, sig.ret_signed}};
  }
}

// Whether the return value is rax alone (at its declared width).
bool InRax(const Signature& sig) {
  return sig.ret_kind == ValueKind::kVoid || sig.ret_kind == ValueKind::kPointer ||
         (sig.ret_kind == ValueKind::kInteger && sig.ret_width <= 8);
}

std::string RenderLeaf(const Leaf& l, const uint8_t* at) {
  if (l.kind == ValueKind::kFloat) return RenderFloat(l.format, at);
  uint64_t v = 0;
  std::memcpy(&v, at, std::min(l.size, 8));
  if (l.kind == ValueKind::kPointer) return fmt::format("{:#x}", v);
  const int64_t sv = SignedValueOf(std::min(l.size, 8), l.is_signed, v);
  return l.is_signed ? fmt::format("{}", sv) : fmt::format("{}", static_cast<uint64_t>(sv));
}

}  // namespace

std::string RenderReturn(const Signature& sig, const RunOutcome& out) {
  if (sig.ret_kind == ValueKind::kVoid) return "void";
  if (InRax(sig)) {
    if (sig.ret_pointer) return fmt::format("{:#x}", out.ret);
    int64_t v = SignedValueOf(sig.ret_width, sig.ret_signed, out.ret);
    return sig.ret_signed ? fmt::format("{}", v) : fmt::format("{}", static_cast<uint64_t>(v));
  }
  const std::vector<Leaf> leaves = ReturnLeaves(sig);
  if (sig.ret_kind == ValueKind::kFloat && out.ret_image.size() >= 4)
    return RenderFloat(sig.ret_format, out.ret_image.data());
  if (sig.ret_kind == ValueKind::kInteger) {
    std::string hex;
    for (size_t i = out.ret_image.size(); i-- > 0;) hex += fmt::format("{:02x}", out.ret_image[i]);
    return "0x" + hex;
  }
  std::string s;
  for (const Leaf& l : leaves) {
    if (l.offset + static_cast<uint64_t>(l.size) > out.ret_image.size()) continue;
    s += fmt::format("{}+{}: {}", s.empty() ? "" : ", ", l.offset,
                     RenderLeaf(l, out.ret_image.data() + l.offset));
  }
  return "{" + s + "}";
}

namespace {

std::optional<Divergence> CompareReturn(const Signature& sig, const RunOutcome& o,
                                        const RunOutcome& n) {
  if (InRax(sig)) {
    const uint64_t mask = sig.ret_width == 0   ? 0
                          : sig.ret_width >= 8 ? ~0ull
                                               : (1ull << (sig.ret_width * 8)) - 1;
    if ((o.ret & mask) == (n.ret & mask)) return std::nullopt;
  } else {
    bool equal = o.ret_image.size() == n.ret_image.size();
    for (const Leaf& l : ReturnLeaves(sig)) {
      if (!equal || l.offset + static_cast<uint64_t>(l.size) > o.ret_image.size()) break;
      const uint8_t* a = o.ret_image.data() + l.offset;
      const uint8_t* b = n.ret_image.data() + l.offset;
      equal = l.kind == ValueKind::kFloat ? FloatsEqual(l.format, a, b)
                                          : std::memcmp(a, b, static_cast<size_t>(l.size)) == 0;
    }
    // Behind a hidden pointer (a record over 16 bytes), the pointer comes
    // back in rax too.
    if (sig.ret_kind == ValueKind::kRecord && sig.ret_record.size > 16 && o.ret != n.ret) {
      return Divergence{DivergenceKind::kReturn,
                        fmt::format("old returned the pointer {:#x}, new {:#x}", o.ret, n.ret)};
    }
    if (equal) return std::nullopt;
  }
  RunOutcome om = o, nm = n;
  if (InRax(sig) && sig.ret_width < 8 && sig.ret_width > 0) {
    om.ret &= (1ull << (sig.ret_width * 8)) - 1;
    nm.ret &= (1ull << (sig.ret_width * 8)) - 1;
  }
  return Divergence{DivergenceKind::kReturn,
                    fmt::format("old returned {}, new returned {}", RenderReturn(sig, om),
                                RenderReturn(sig, nm))};
}

}  // namespace

namespace {

// How the runs ended, when either did not return.
std::optional<Divergence> CompareEndings(const RunOutcome& o, const RunOutcome& n) {
  if (o.ending == Ending::kInconclusive || n.ending == Ending::kInconclusive) {
    const RunOutcome& which = o.ending == Ending::kInconclusive ? o : n;
    return Divergence{DivergenceKind::kInconclusive,
                      fmt::format("{} side: {}", &which == &o ? "old" : "new", which.where)};
  }
  if (o.ending == Ending::kHang || n.ending == Ending::kHang) {
    if (o.ending == n.ending) return std::nullopt;
    if (n.ending == Ending::kHang) {
      return Divergence{
          DivergenceKind::kNewHang,
          fmt::format("new ran past {} basic blocks; old {}", n.blocks - 1, DescribeOutcome(o))};
    }
    return Divergence{
        DivergenceKind::kFixedHang,
        fmt::format("old ran past {} basic blocks; new {}", o.blocks - 1, DescribeOutcome(n))};
  }
  // Both faulted.
  if (o.ending == Ending::kFault && n.ending == Ending::kFault) {
    if (o.fault == n.fault && o.fault_addr == n.fault_addr) return std::nullopt;
    return Divergence{DivergenceKind::kFault,
                      fmt::format("old: {}; new: {}", DescribeOutcome(o), DescribeOutcome(n))};
  }
  if (n.ending == Ending::kFault) return Divergence{DivergenceKind::kNewCrash, DescribeOutcome(n)};
  return Divergence{DivergenceKind::kFixedCrash, "old: " + DescribeOutcome(o)};
}

// The first differing byte of the region pair (a, b) at one address, or
// nullopt when they are equal; records clean argument pages in `seen`.
std::optional<Divergence> CompareRegion(const Sandbox& old_side, const Region& a,
                                        const Sandbox& new_side, const Region& b,
                                        CleanArgPages& seen) {
  // Image pages: the bytes their segments cover (what lies past a segment's
  // end in its last page belongs to no object). Heap: the part handed out.
  uint64_t off = a.kind == RegionKind::kImageData ? a.reset_begin : 0;
  uint64_t size = a.kind == RegionKind::kHeap
                      ? std::min(a.size, std::max(old_side.heap_used(), new_side.heap_used()))
                  : a.kind == RegionKind::kImageData ? a.reset_end
                                                     : a.size;
  if (a.kind == RegionKind::kArg) {
    if ((a.prot & UC_PROT_WRITE) == 0 && (b.prot & UC_PROT_WRITE) == 0) return std::nullopt;
    // One pass tells both whether the pages are equal and whether the next
    // Reset may refill only the placed bytes.
    PagePairScan scan =
        ScanPagePair(a.host, b.host, a.size, kFillByte, a.placed_begin, a.placed_end);
    if (scan.equal) {
      if (scan.a_clean && seen.count < seen.addrs.size()) seen.addrs[seen.count++] = a.addr;
      return std::nullopt;
    }
  } else if (a.kind == RegionKind::kImageData) {
    // Granules neither side wrote hold the same snapshot on both. Of the
    // others, each compared once, the lowest that differs is reported,
    // whatever order they were written in.
    auto differs = [&](uint32_t g) {
      const uint64_t lo = a.GranuleBegin(g), hi = a.GranuleEnd(g);
      return lo < hi && std::memcmp(a.host + lo, b.host + lo, hi - lo) != 0;
    };
    uint64_t lowest = a.written.size();
    for (uint32_t g : a.touched) {
      if (g < lowest && differs(g)) lowest = g;
    }
    for (uint32_t g : b.touched) {
      if (g < lowest && a.written[g] == Region::kCold && differs(g)) lowest = g;
    }
    if (lowest == a.written.size()) return std::nullopt;
    off = a.GranuleBegin(lowest);
    size = a.GranuleEnd(lowest);
  } else if (size <= off || std::memcmp(a.host + off, b.host + off, size - off) == 0) {
    return std::nullopt;
  }
  while (off < size && a.host[off] == b.host[off]) ++off;
  return Divergence{
      DivergenceKind::kMemory,
      fmt::format("first differing byte at {:#x} ({}+{:#x}): old {:#04x}, new {:#04x}",
                  a.addr + off, a.name, off, a.host[off], b.host[off])};
}

std::optional<Divergence> CompareCalls(const RunOutcome& o, const RunOutcome& n) {
  size_t calls = std::max(o.calls.size(), n.calls.size());
  for (size_t i = 0; i < calls; ++i) {
    if (i < o.calls.size() && i < n.calls.size() && o.calls[i] == n.calls[i]) continue;
    std::string oc = i < o.calls.size() ? o.calls[i].ToString() : "nothing";
    std::string nc = i < n.calls.size() ? n.calls[i].ToString() : "nothing";
    return Divergence{DivergenceKind::kCalls,
                      fmt::format("library call {}: old {}, new {}", i + 1, oc, nc)};
  }
  return std::nullopt;
}

}  // namespace

namespace {

// "name+0x10" for a pointer into side `side`'s program; "" otherwise.
std::string PointerName(const SeparateSpaces& s, int side, uint64_t p) {
  if (s.program[side] == nullptr || p < s.bias[side]) return "";
  const ElfSymbol* sym = s.program[side]->SymbolAt(p - s.bias[side]);
  if (sym == nullptr) return "";
  return fmt::format("{}+{:#x}", sym->name, p - s.bias[side] - sym->value);
}

// Variables either side wrote, matched by name.
std::optional<Divergence> CompareGlobals(const Sandbox& old_side, const Sandbox& new_side,
                                         const SeparateSpaces& s) {
  for (const GlobalPair& g : s.globals) {
    if (!old_side.WrittenAt(g.old_addr, g.size) && !new_side.WrittenAt(g.new_addr, g.size))
      continue;
    const uint8_t* a = old_side.HostPtr(g.old_addr, g.size);
    const uint8_t* b = new_side.HostPtr(g.new_addr, g.size);
    if (a == nullptr || b == nullptr || std::memcmp(a, b, g.size) == 0) continue;
    uint64_t off = 0;
    while (a[off] == b[off]) ++off;
    return Divergence{DivergenceKind::kMemory,
                      fmt::format("first differing byte of global '{}' at +{:#x}: old {:#04x} "
                                  "(at {:#x}), new {:#04x} (at {:#x})",
                                  g.name, off, a[off], g.old_addr + off, b[off], g.new_addr + off)};
  }
  return std::nullopt;
}

}  // namespace

std::optional<Divergence> Compare(const Signature& sig, const Sandbox& old_side,
                                  const RunOutcome& o, const Sandbox& new_side, const RunOutcome& n,
                                  CleanArgPages* clean, const SeparateSpaces* separate) {
  if (o.ending != Ending::kReturned || n.ending != Ending::kReturned) return CompareEndings(o, n);
  // Two builds' pointers into their own programs are equal when they point
  // at the same variable's same byte.
  const bool same_pointee = separate != nullptr && sig.ret_pointer && o.ret != n.ret &&
                            !PointerName(*separate, 0, o.ret).empty() &&
                            PointerName(*separate, 0, o.ret) == PointerName(*separate, 1, n.ret);
  if (!same_pointee) {
    if (auto d = CompareReturn(sig, o, n)) return d;
  }
  // Both region lists are sorted by address, and the regions both sides
  // share sit at the same addresses: one walk pairs them up.
  CleanArgPages seen;
  std::span<Region* const> nr = new_side.compared_regions();
  auto next = nr.begin();
  for (const Region* old_region : old_side.compared_regions()) {
    const Region& a = *old_region;
    while (next != nr.end() && (*next)->addr < a.addr) ++next;
    if (next == nr.end()) break;
    const Region* b = *next;
    if (b->addr != a.addr || b->size != a.size || b->kind != a.kind) continue;
    // Two programs' own data lies where each build put it: by name below.
    if (separate != nullptr && a.name.starts_with("target:")) continue;
    if (auto d = CompareRegion(old_side, a, new_side, *b, seen)) return d;
  }
  if (separate != nullptr) {
    if (auto d = CompareGlobals(old_side, new_side, *separate)) return d;
  }
  // Every region both sides share is equal, argument pages among them (both
  // sides map the same ones).
  if (clean != nullptr) *clean = seen;
  return CompareCalls(o, n);
}

}  // namespace patchlab::emulator
