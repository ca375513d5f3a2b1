#include "patchcore/code_cave.h"

#include <elf.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "patchcore/island.h"

namespace patchlab::patchcore {
namespace {

constexpr uint16_t kMaxProgramHeaders = 64;
// A segment's tail is less than a page in a file mapping; the vdso's image
// may end a page or so before its mapping does.
constexpr uint64_t kMaxTail = 2 * 4096;

// The program headers of the module whose first mapping is `first`, read
// from the process's memory; empty when they are not there to read.
std::vector<Elf64_Phdr> ProgramHeaders(const ProcessMemory& memory, const MapEntry& first) {
  Elf64_Ehdr eh;
  if (!memory.ReadInto(first.start, {reinterpret_cast<uint8_t*>(&eh), sizeof eh})) return {};
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
      eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > kMaxProgramHeaders) {
    return {};
  }
  const uint64_t bytes = uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr);
  if (eh.e_phoff + bytes > static_cast<uint64_t>(first.end - first.start)) return {};
  std::vector<Elf64_Phdr> phdrs(eh.e_phnum);
  if (!memory.ReadInto(first.start + static_cast<int64_t>(eh.e_phoff),
                       {reinterpret_cast<uint8_t*>(phdrs.data()), bytes})) {
    return {};
  }
  return phdrs;
}

const MapEntry* FirstMappingOf(const ProcessMaps& maps, const MapEntry& e) {
  // The vdso is one mapping, an ELF image from its first byte: every process
  // has one, statically linked programs included.
  if (e.path == "[vdso]") return e.offset == 0 && e.read ? &e : nullptr;
  for (const MapEntry& m : maps.entries()) {
    if (m.offset == 0 && m.read && m.dev == e.dev && m.inode == e.inode && m.path == e.path) {
      return &m;
    }
  }
  return nullptr;
}

// The first cave in `state` in the `length` bytes at `tail` (8-aligned):
// kCaveSize zero bytes, or a stub with its save area. The tail need not
// start with it: the vdso keeps its section headers there.
std::optional<RemotePtr> CaveIn(const ProcessMemory& memory, RemotePtr tail, uint64_t length,
                                CaveState state) {
  auto bytes = memory.Read(tail, length);
  if (!bytes) return std::nullopt;
  for (uint64_t at = 0; at + kCaveSize <= length; at += 8) {
    const uint8_t* p = bytes->data() + at;
    const bool found =
        state == CaveState::kFree
            ? std::all_of(p, p + kCaveSize, [](uint8_t b) { return b == 0; })
            : std::memcmp(p + kCaveStubOffset, kIslandStub, sizeof kIslandStub) == 0 &&
                  std::memcmp(p + kCaveSaveOffset, kSaveAreaMagic, sizeof kSaveAreaMagic) == 0;
    if (found) return tail + static_cast<int64_t>(at);
  }
  return std::nullopt;
}

}  // namespace

std::vector<RemotePtr> FindCodeCaves(const ProcessMemory& memory, const ProcessMaps& maps,
                                     CaveState state, size_t most) {
  std::vector<RemotePtr> caves;
  for (const MapEntry& e : maps.entries()) {
    if (caves.size() >= most) break;
    if (!e.exec || e.shared || (!e.is_file() && e.path != "[vdso]")) continue;
    const MapEntry* first = FirstMappingOf(maps, e);
    if (!first) continue;
    const uint64_t size = static_cast<uint64_t>(e.end - e.start);
    for (const Elf64_Phdr& ph : ProgramHeaders(memory, *first)) {
      if (caves.size() >= most) break;
      // A segment with bss has zero-filled memory after its file bytes: that
      // is the program's, not padding.
      if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X) || ph.p_filesz != ph.p_memsz) continue;
      const uint64_t segment_end = ph.p_offset + ph.p_filesz;
      if (segment_end < e.offset || segment_end >= e.offset + size) continue;
      const uint64_t from = (segment_end - e.offset + 7) & ~uint64_t{7};
      if (from + kCaveSize > size || size - from > kMaxTail) continue;
      if (auto cave = CaveIn(memory, e.start + static_cast<int64_t>(from), size - from, state)) {
        caves.push_back(*cave);
      }
    }
  }
  return caves;
}

}  // namespace patchlab::patchcore
