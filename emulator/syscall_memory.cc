// The SyscallLayer's anonymous memory (syscalls.h). mmap of private or
// shared anonymous read-write memory, with no address asked for, is given
// page-aligned zeroed pages of the sandbox heap, so that the addresses are
// the same on both sides and the bytes written there are compared with the
// heap's. munmap, mprotect, pkey_mprotect and madvise answer as the kernel
// does (mm/mmap.c, mm/mprotect.c, mm/madvise.c, checks in its order) for
// ranges made of those pages and of holes; a range that reaches the
// sandbox's own mappings (images, stack, arguments), or a change the
// engine's memory would have to show (another protection, pages read back
// as zero after MADV_FREE), ends the run inconclusive. Every call answered
// is recorded and compared, like an allocation call.
#include <linux/mman.h>
#include <sys/mman.h>
#include <unicorn/unicorn.h>

#include <cerrno>
#include <cstring>

#include "emulator/internal/guest_abi.h"
#include "emulator/internal/sandbox_live.h"
#include "emulator/layout.h"
#include "emulator/sandbox.h"
#include "emulator/stubs.h"
#include "emulator/syscalls.h"

namespace patchlab::emulator {
namespace {

constexpr uint64_t kTaskSize = 0x7ffffffff000;  // x86-64, 4-level page tables

uint64_t Errno(int e) { return static_cast<uint64_t>(-static_cast<int64_t>(e)); }
uint64_t PageAlign(uint64_t n) { return (n + kPageSize - 1) & ~(kPageSize - 1); }

// What the pages of a range are.
struct Survey {
  bool anonymous = false;  // pages mmap gave out
  bool other = false;      // the sandbox's own mappings
  bool hole = false;
  bool starts_in_hole = false;
  uint64_t first_hole = 0;
};

// The advice values Linux 6.x accepts (madvise_behavior_valid), and which
// of them leave an anonymous page's contents and protection as they are.
// The last, MADV_GUARD_REMOVE (after MADV_GUARD_INSTALL, 102), is newer
// than this machine's headers.
constexpr uint64_t kMadvGuardRemove = 103;
bool AdviceValid(uint64_t a) {
  return a <= MADV_DONTNEED || (a >= MADV_FREE && a <= MADV_COLLAPSE) ||
         (a >= MADV_HWPOISON && a <= kMadvGuardRemove);
}
bool AdviceHarmless(uint64_t a) {
  return a <= MADV_WILLNEED || (a >= MADV_DONTFORK && a <= MADV_POPULATE_WRITE);
}

}  // namespace

namespace {

// The pages of [begin, end) against `anonymous` and the sandbox's regions.
Survey SurveyRange(uint64_t begin, uint64_t end, const std::vector<Region>& regions,
                   const std::vector<std::pair<uint64_t, uint64_t>>& anonymous) {
  Survey s;
  for (uint64_t at = begin; at < end;) {
    uint64_t next = end;
    bool found = false;
    for (const auto& [b, e] : anonymous) {
      if (at >= b && at < e) {
        s.anonymous = found = true;
        next = std::min(next, e);
      } else if (b > at) {
        next = std::min(next, b);
      }
    }
    for (const Region& r : regions) {
      if (found) break;
      if (at >= r.addr && at < r.addr + r.size) {
        s.other = found = true;
        next = std::min(next, r.addr + r.size);
      } else if (r.addr > at) {
        next = std::min(next, r.addr);
      }
    }
    if (!found && !s.hole) {
      s.hole = true;
      s.first_hole = at;
      s.starts_in_hole = at == begin;
    }
    at = next;
  }
  return s;
}

}  // namespace

std::optional<uint64_t> SyscallLayer::MemoryCall(const Call& c) {
  std::optional<uint64_t> ret;
  std::vector<uint64_t> args;
  const std::vector<Region>& regions = sandbox_.regions();
  switch (c.nr) {
    case SYS_mmap: {
      args = {c.a[0], c.a[1], c.a[2], c.a[3], c.a[4], c.a[5]};
      const uint64_t len = c.a[1], prot = c.a[2], flags = c.a[3];
      if ((c.a[5] & (kPageSize - 1)) != 0) {
        ret = Errno(EINVAL);
      } else if ((flags & MAP_ANONYMOUS) == 0) {
        if (!IsOpen(c.a[4])) ret = Errno(EBADF);  // /dev/null and pipes: not modelled
      } else if (len == 0) {
        ret = Errno(EINVAL);
      } else if (PageAlign(len) == 0 || PageAlign(len) > kTaskSize) {
        ret = Errno(ENOMEM);
      } else if ((flags & MAP_TYPE) != MAP_SHARED && (flags & MAP_TYPE) != MAP_PRIVATE) {
        // MAP_SHARED_VALIDATE itself is not modelled.
        if ((flags & MAP_TYPE) != MAP_SHARED_VALIDATE) ret = Errno(EINVAL);
      } else if (c.a[0] == 0 && prot == (PROT_READ | PROT_WRITE) &&
                 (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE | MAP_GROWSDOWN | MAP_LOCKED |
                           MAP_HUGETLB)) == 0) {
        // Another address, protection or kind of mapping: not modelled.
        if (uint64_t addr = sandbox_.stubs_->AllocatePages(PageAlign(len)); addr != 0) {
          anonymous_.emplace_back(addr, addr + PageAlign(len));
          ret = addr;
        }
      }
      break;
    }
    case SYS_munmap: {
      args = {c.a[0], c.a[1]};
      const uint64_t start = c.a[0], len = PageAlign(c.a[1]);
      if ((start & (kPageSize - 1)) != 0 || start > kTaskSize || c.a[1] > kTaskSize - start ||
          len == 0) {
        ret = Errno(EINVAL);
        break;
      }
      if (SurveyRange(start, start + len, regions, anonymous_).other) break;
      std::vector<std::pair<uint64_t, uint64_t>> kept;
      for (const auto& [b, e] : anonymous_) {
        if (b < start) kept.emplace_back(b, std::min(e, start));
        if (e > start + len) kept.emplace_back(std::max(b, start + len), e);
      }
      anonymous_ = std::move(kept);
      ret = 0;
      break;
    }
    case SYS_mprotect:
    case SYS_pkey_mprotect:
      args = {c.a[0], c.a[1], c.a[2], c.nr == SYS_pkey_mprotect ? c.a[3] : ~0ull};
      ret = Mprotect(c);
      break;
    case SYS_madvise:
      args = {c.a[0], c.a[1], c.a[2]};
      ret = Madvise(c);
      break;
    default:
      return std::nullopt;
  }
  if (!ret) return std::nullopt;
  Record(c, std::move(args), *ret);
  return ret;
}

std::optional<uint64_t> SyscallLayer::Mprotect(const Call& c) {
  const uint64_t start = c.a[0];
  const uint64_t grows = c.a[2] & (PROT_GROWSDOWN | PROT_GROWSUP);
  const uint64_t prot = c.a[2] & ~grows;
  if (grows == (PROT_GROWSDOWN | PROT_GROWSUP)) return Errno(EINVAL);
  if ((start & (kPageSize - 1)) != 0) return Errno(EINVAL);
  if (c.a[1] == 0) return 0;
  const uint64_t len = PageAlign(c.a[1]);
  const uint64_t end = start + len;
  if (end <= start) return Errno(ENOMEM);
  if ((prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM)) != 0) return Errno(EINVAL);
  // No protection key was ever allocated (pkey_alloc is not answered).
  if (c.nr == SYS_pkey_mprotect && static_cast<int32_t>(c.a[3]) != -1) return Errno(EINVAL);
  const Survey s = SurveyRange(start, end, sandbox_.regions(), anonymous_);
  if (s.starts_in_hole) return Errno(ENOMEM);
  if (s.other) return std::nullopt;
  if (grows != 0) return Errno(EINVAL);  // mmap's pages do not grow
  // Read-write (PROT_SEM changes nothing on x86) is what they are already.
  if ((prot & ~PROT_SEM) != (PROT_READ | PROT_WRITE)) return std::nullopt;
  return s.hole ? Errno(ENOMEM) : 0;
}

std::optional<uint64_t> SyscallLayer::Madvise(const Call& c) {
  const uint64_t start = c.a[0], advice = c.a[2];
  if (!AdviceValid(advice)) return Errno(EINVAL);
  if ((start & (kPageSize - 1)) != 0) return Errno(EINVAL);
  const uint64_t len = PageAlign(c.a[1]);
  if (c.a[1] != 0 && len == 0) return Errno(EINVAL);
  const uint64_t end = start + len;
  if (end < start) return Errno(EINVAL);
  if (end == start) return 0;
  // These two need CAP_SYS_ADMIN.
  if (advice == MADV_HWPOISON || advice == MADV_SOFT_OFFLINE) return Errno(EPERM);
  const Survey s = SurveyRange(start, end, sandbox_.regions(), anonymous_);
  if (!s.anonymous && !s.other) return Errno(ENOMEM);
  if (s.other) return std::nullopt;
  const bool dontneed = advice == MADV_DONTNEED || advice == MADV_DONTNEED_LOCKED;
  if (!AdviceHarmless(advice) && !dontneed) return std::nullopt;
  if (dontneed) {
    // Private anonymous pages read back as zeros afterwards.
    for (const auto& [b, e] : anonymous_) {
      const uint64_t lo = std::max(b, start), hi = std::min(e, end);
      if (lo < hi) std::memset(Writable(lo, hi - lo), 0, hi - lo);
    }
  }
  return s.hole ? Errno(ENOMEM) : 0;
}

}  // namespace patchlab::emulator
