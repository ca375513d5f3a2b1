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
  std::span<const uint8_t> file = elf->bytes();
  for (size_t g = 0; g < groups.size(); ++g) {
    const Group& gr = groups[g];
    RegionKind kind = (gr.prot & UC_PROT_WRITE) ? RegionKind::kImageData : RegionKind::kCode;
    auto host =
        sandbox.Map(gr.start, gr.end - gr.start, gr.prot, kind, fmt::format("{}:seg{}", label, g));
    if (!host)
      return std::unexpected(std::move(host.error()).AddContext("loading " + elf->path().string()));
    uint64_t lo = gr.end - gr.start, hi = 0;
    for (const ElfSegment* s : gr.members) {
      if (s->flags & PF_W) {
        lo = std::min(lo, s->vaddr + bias - gr.start);
        hi = std::max(hi, s->vaddr + bias - gr.start + s->memsz);
      }
      if (s->offset + s->filesz > file.size()) {
        return Fail(ErrorCode::kParse, "{}: segment at {:#x} extends past the end of the file",
                    elf->path().string(), s->vaddr);
      }
      std::memcpy(*host + (s->vaddr + bias - gr.start), file.data() + s->offset, s->filesz);
    }
    if (kind == RegionKind::kImageData) sandbox.SetResetRange(gr.start, lo, hi);
  }
  return LoadedImage{std::move(elf), bias, std::move(label)};
}

Status ApplyRelocations(Sandbox& sandbox, const LoadedImage& image,
                        std::span<const LoadedImage* const> lookup) {
  const ElfFile& elf = *image.elf;
  auto resolve = [&](const ElfRelocation& r) -> uint64_t {
    if (r.symbol_defined) {
      if (r.symbol_type == SymbolType::kIfunc) return sandbox.StubAddress(r.symbol + " (ifunc)");
      return image.bias + r.symbol_value;
    }
    for (const LoadedImage* other : lookup) {
      const ElfSymbol* s = other->elf->FindSymbol(r.symbol);
      if (s == nullptr || !s->defined || s->type == SymbolType::kTls) continue;
      // A shared library exports only its global symbols; a patch's target
      // lends it private ones too (that is what its references are for).
      if (other->label != "target" && s->binding == SymbolBinding::kLocal) continue;
      if (s->type == SymbolType::kIfunc) return sandbox.StubAddress(r.symbol + " (ifunc)");
      return other->bias + s->value;
    }
    return sandbox.StubAddress(r.symbol);
  };
  for (const ElfRelocation& r : elf.dynamic_relocations()) {
    uint64_t value = 0;
    switch (r.type) {
      case R_X86_64_RELATIVE:
        value = image.bias + static_cast<uint64_t>(r.addend);
        break;
      case R_X86_64_GLOB_DAT:
      case R_X86_64_JUMP_SLOT:
        value = resolve(r);
        break;
      case R_X86_64_64:
        value = (r.symbol.empty() ? image.bias : resolve(r)) + static_cast<uint64_t>(r.addend);
        break;
      case R_X86_64_IRELATIVE:
        value = sandbox.StubAddress(fmt::format("ifunc resolver at {:#x}", image.bias + r.addend));
        break;
      case R_X86_64_COPY:
      case R_X86_64_DTPMOD64:
      case R_X86_64_DTPOFF64:
      case R_X86_64_TPOFF64:
      case R_X86_64_NONE:
        continue;
      default:
        return Fail(ErrorCode::kUnsupported,
                    "{}: relocation type {} at {:#x} ({}) is not supported", elf.path().string(),
                    r.type, r.offset, r.symbol.empty() ? "no symbol" : r.symbol);
    }
    uint8_t* word = sandbox.HostPtr(image.bias + r.offset, 8);
    if (word == nullptr) {
      return Fail(ErrorCode::kParse, "{}: relocation at {:#x} lies outside every loaded segment",
                  elf.path().string(), r.offset);
    }
    std::memcpy(word, &value, 8);
  }
  return {};
}

}  // namespace patchlab::emulator
