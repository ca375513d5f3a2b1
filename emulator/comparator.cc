#include "emulator/comparator.h"

#include <fmt/format.h>
#include <unicorn/unicorn.h>

#include <algorithm>
#include <cstring>

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

std::string RenderReturn(const Signature& sig, uint64_t ret) {
  if (sig.ret_width == 0) return "void";
  if (sig.ret_pointer) return fmt::format("{:#x}", ret);
  int64_t v = SignedValueOf(sig.ret_width, sig.ret_signed, ret);
  return sig.ret_signed ? fmt::format("{}", v) : fmt::format("{}", static_cast<uint64_t>(v));
}

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
    std::string oc = i < o.calls.size() ? o.calls[i].ToString() : "nothing";
    std::string nc = i < n.calls.size() ? n.calls[i].ToString() : "nothing";
    if (oc != nc) {
      return Divergence{DivergenceKind::kCalls,
                        fmt::format("library call {}: old {}, new {}", i + 1, oc, nc)};
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<Divergence> Compare(const Signature& sig, const Sandbox& old_side,
                                  const RunOutcome& o, const Sandbox& new_side, const RunOutcome& n,
                                  CleanArgPages* clean) {
  if (o.ending != Ending::kReturned || n.ending != Ending::kReturned) return CompareEndings(o, n);
  uint64_t mask = sig.ret_width == 0   ? 0
                  : sig.ret_width >= 8 ? ~0ull
                                       : (1ull << (sig.ret_width * 8)) - 1;
  if ((o.ret & mask) != (n.ret & mask)) {
    return Divergence{DivergenceKind::kReturn, fmt::format("old returned {}, new returned {}",
                                                           RenderReturn(sig, o.ret & mask),
                                                           RenderReturn(sig, n.ret & mask))};
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
    if (auto d = CompareRegion(old_side, a, new_side, *b, seen)) return d;
  }
  // Every region both sides share is equal, argument pages among them (both
  // sides map the same ones).
  if (clean != nullptr) *clean = seen;
  return CompareCalls(o, n);
}

}  // namespace patchlab::emulator
