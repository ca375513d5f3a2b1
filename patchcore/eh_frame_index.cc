#include "patchcore/eh_frame_index.h"

#include <elf.h>

#include <cstring>

namespace patchlab::patchcore {
namespace {

// Pointer encodings of .eh_frame_hdr (the LSB's DW_EH_PE_* values).
constexpr uint8_t kUdata4 = 0x03;
constexpr uint8_t kSdata4 = 0x0b;
constexpr uint8_t kUdata8 = 0x04;
constexpr uint8_t kSdata8 = 0x0c;
constexpr uint8_t kDatarel = 0x30;
constexpr uint8_t kOmit = 0xff;

// Size of a value in encoding `enc`, or 0 when it is not a fixed-size one.
uint64_t EncodedSize(uint8_t enc) {
  switch (enc & 0x0f) {
    case kUdata4:
    case kSdata4:
      return 4;
    case kUdata8:
    case kSdata8:
      return 8;
    default:
      return 0;
  }
}

const ElfSegment* FindSegment(const ElfFile& elf, uint32_t type) {
  for (const ElfSegment& s : elf.segments()) {
    if (s.type == type) return &s;
  }
  return nullptr;
}

// The file's bytes of each PT_LOAD segment mapped read-only, at runtime.
std::vector<EhFrameIndex::Segment> ReadOnlySegments(const LoadedModule& module) {
  std::vector<EhFrameIndex::Segment> out;
  const std::span<const uint8_t> file = module.elf->bytes();
  for (const ElfSegment& s : module.elf->segments()) {
    if (s.type != PT_LOAD || (s.flags & (PF_W | PF_X)) || s.filesz == 0) continue;
    if (s.offset > file.size() || s.filesz > file.size() - s.offset) continue;
    out.push_back({s.vaddr + module.bias, file.subspan(s.offset, s.filesz)});
  }
  return out;
}

}  // namespace

std::optional<uint64_t> EhFrameIndex::ReadWord(uint64_t addr) const {
  for (const Segment& s : read_only) {
    if (addr < s.start || addr - s.start > s.bytes.size() ||
        s.bytes.size() - (addr - s.start) < sizeof(uint64_t)) {
      continue;
    }
    uint64_t v;
    std::memcpy(&v, s.bytes.data() + (addr - s.start), sizeof v);
    return v;
  }
  return std::nullopt;
}

std::optional<EhFrameIndex> IndexEhFrame(const LoadedModule& module) {
  const ElfSegment* hdr = FindSegment(*module.elf, PT_GNU_EH_FRAME);
  if (!hdr || hdr->filesz < 4) return std::nullopt;
  auto head = module.elf->ReadAt(hdr->vaddr, 4);
  if (!head) return std::nullopt;
  const uint8_t version = (*head)[0], ptr_enc = (*head)[1], count_enc = (*head)[2],
                table_enc = (*head)[3];
  const uint64_t ptr_size = EncodedSize(ptr_enc);
  if (version != 1 || ptr_enc == kOmit || ptr_size == 0 || count_enc != kUdata4 ||
      table_enc != (kDatarel | kSdata4)) {
    return std::nullopt;
  }
  const uint64_t count_at = hdr->vaddr + 4 + ptr_size;
  auto count = module.elf->ReadAt(count_at, 4);
  if (!count) return std::nullopt;
  uint32_t fde_count;
  std::memcpy(&fde_count, count->data(), 4);
  if (fde_count == 0 || 4 + ptr_size + 4 + uint64_t{fde_count} * 8 > hdr->filesz) {
    return std::nullopt;
  }
  EhFrameIndex index;
  index.header = hdr->vaddr + module.bias;
  index.table = count_at + 4 + module.bias;
  index.fde_count = fde_count;
  index.module = module.range;
  index.read_only = ReadOnlySegments(module);
  return index;
}

}  // namespace patchlab::patchcore
