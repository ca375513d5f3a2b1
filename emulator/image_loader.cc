#include "emulator/image_loader.h"

#include <elf.h>
#include <unicorn/unicorn.h>

#include <algorithm>
#include <cstring>

#include "base/log.h"
#include "emulator/layout.h"

namespace patchlab::emulator {

uint64_t ChooseBias(const ElfFile& elf, uint64_t dyn_base) {
  if (elf.type() != ElfType::kShared) return 0;
  uint64_t lowest = ~0ull;
  for (const ElfSegment& s : elf.LoadSegments())
    lowest = std::min(lowest, s.vaddr & ~(kPageSize - 1));
  return lowest == ~0ull ? dyn_base : dyn_base - lowest;
}

Result<LoadedImage> MapImage(Sandbox& sandbox, std::shared_ptr<const ElfFile> elf, uint64_t bias,
                             std::string label) {
  std::vector<ElfSegment> segs = elf->LoadSegments();
  if (segs.empty()) return Fail(ErrorCode::kParse, "{}: no PT_LOAD segment", elf->path().string());
  std::sort(segs.begin(), segs.end(),
            [](const ElfSegment& a, const ElfSegment& b) { return a.vaddr < b.vaddr; });
  // Group segments whose page ranges touch one another.
  struct Group {
    uint64_t start, end;
    int prot;
    std::vector<const ElfSegment*> members;
  };
  std::vector<Group> groups;
  for (const ElfSegment& s : segs) {
    if (s.memsz == 0) continue;
    uint64_t start = (s.vaddr + bias) & ~(kPageSize - 1);
    uint64_t end = (s.vaddr + bias + s.memsz + kPageSize - 1) & ~(kPageSize - 1);
    int prot = ((s.flags & PF_R) ? UC_PROT_READ : 0) | ((s.flags & PF_W) ? UC_PROT_WRITE : 0) |
               ((s.flags & PF_X) ? UC_PROT_EXEC : 0);
    if (!groups.empty() && start < groups.back().end) {
      groups.back().end = std::max(groups.back().end, end);
      groups.back().prot |= prot;
      groups.back().members.push_back(&s);
    } else {
      groups.push_back({start, end, prot, {&s}});
    }
  }
  // PT_GNU_RELRO: the pages ld.so makes read-only once it has relocated them
  // (both ends rounded down, as it does). Mapped read-only here too: a write
  // there faults in a real process, and pages that cannot change need no
  // restoring or comparing between runs.
  uint64_t relro_lo = 0, relro_hi = 0;
  for (const ElfSegment& s : elf->segments()) {
    if (s.type != PT_GNU_RELRO) continue;
    relro_lo = (s.vaddr + bias) & ~(kPageSize - 1);
    relro_hi = (s.vaddr + bias + s.memsz) & ~(kPageSize - 1);
  }
  std::span<const uint8_t> file = elf->bytes();
  int part_no = 0;
  for (const Group& gr : groups) {
    // Up to three parts: before the RELRO pages, the RELRO pages, after them.
    uint64_t cuts[4] = {gr.start, std::clamp(relro_lo, gr.start, gr.end),
                        std::clamp(relro_hi, gr.start, gr.end), gr.end};
    if (relro_lo >= relro_hi) cuts[1] = cuts[2] = gr.start;
    for (int k = 0; k < 3; ++k) {
      const uint64_t start = cuts[k], end = cuts[k + 1];
      if (start >= end) continue;
      const int prot = k == 1 ? gr.prot & ~UC_PROT_WRITE : gr.prot;
      RegionKind kind = (prot & UC_PROT_WRITE) ? RegionKind::kImageData : RegionKind::kCode;
      auto host =
          sandbox.Map(start, end - start, prot, kind, fmt::format("{}:seg{}", label, part_no++));
      if (!host) {
        return std::unexpected(
            std::move(host.error()).AddContext("loading " + elf->path().string()));
      }
      if (kind != RegionKind::kImageData) continue;
      // What a Reset restores: the writable segments' bytes in this part.
      uint64_t lo = end - start, hi = 0;
      for (const ElfSegment* s : gr.members) {
        if ((s->flags & PF_W) == 0) continue;
        const uint64_t s_lo = std::max(s->vaddr + bias, start);
        const uint64_t s_hi = std::min(s->vaddr + bias + s->memsz, end);
        if (s_lo >= s_hi) continue;
        lo = std::min(lo, s_lo - start);
        hi = std::max(hi, s_hi - start);
      }
      sandbox.SetResetRange(start, std::min(lo, hi), hi);
    }
    for (const ElfSegment* s : gr.members) {
      if (s->offset + s->filesz > file.size()) {
        return Fail(ErrorCode::kParse, "{}: segment at {:#x} extends past the end of the file",
                    elf->path().string(), s->vaddr);
      }
      // Page by page: the parts are regions of their own.
      for (uint64_t done = 0; done < s->filesz;) {
        const uint64_t at = s->vaddr + bias + done;
        const uint64_t n = std::min(s->filesz - done, kPageSize - at % kPageSize);
        std::memcpy(sandbox.HostPtr(at, n), file.data() + s->offset + done, n);
        done += n;
      }
    }
  }
  return LoadedImage{std::move(elf), bias, std::move(label)};
}

}  // namespace patchlab::emulator
