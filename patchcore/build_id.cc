#include "patchcore/build_id.h"

#include <elf.h>
#include <unistd.h>

#include <cstring>
#include <vector>

namespace patchlab::patchcore {
namespace {

constexpr uint64_t kMaxNotesBytes = 64 * 1024;  // notes are small; a bigger one is not ours

Status ReadExactly(int fd, void* out, size_t size, uint64_t offset, std::string_view origin) {
  size_t done = 0;
  while (done < size) {
    ssize_t n =
        ::pread(fd, static_cast<char*>(out) + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FailErrno(fmt::format("read {}", origin));
    if (n == 0) return Fail(ErrorCode::kParse, "{}: truncated ELF file", origin);
    done += static_cast<size_t>(n);
  }
  return {};
}

// The build-id in one PT_NOTE segment's bytes, or "".
std::string BuildIdInNotes(const std::vector<uint8_t>& notes) {
  size_t at = 0;
  while (at + sizeof(Elf64_Nhdr) <= notes.size()) {
    Elf64_Nhdr h;
    std::memcpy(&h, notes.data() + at, sizeof h);
    const size_t name_at = at + sizeof h;
    const size_t desc_at = name_at + ((h.n_namesz + 3) & ~3u);
    const size_t next = desc_at + ((h.n_descsz + 3) & ~3u);
    if (next > notes.size() || desc_at + h.n_descsz > notes.size()) return "";
    if (h.n_type == NT_GNU_BUILD_ID && h.n_namesz == 4 &&
        std::memcmp(notes.data() + name_at, "GNU", 4) == 0) {
      std::string hex;
      for (size_t i = 0; i < h.n_descsz; ++i) hex += fmt::format("{:02x}", notes[desc_at + i]);
      return hex;
    }
    at = next;
  }
  return "";
}

}  // namespace

Result<std::string> ReadBuildId(int fd, std::string_view origin) {
  Elf64_Ehdr eh;
  if (auto st = ReadExactly(fd, &eh, sizeof eh, 0, origin); !st) return std::unexpected(st.error());
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
      eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_phentsize != sizeof(Elf64_Phdr)) {
    return Fail(ErrorCode::kParse, "{}: not an ELF64 little-endian file", origin);
  }
  std::vector<Elf64_Phdr> phdrs(eh.e_phnum);
  if (auto st =
          ReadExactly(fd, phdrs.data(), phdrs.size() * sizeof(Elf64_Phdr), eh.e_phoff, origin);
      !st) {
    return std::unexpected(st.error());
  }
  for (const Elf64_Phdr& ph : phdrs) {
    if (ph.p_type != PT_NOTE || ph.p_filesz == 0 || ph.p_filesz > kMaxNotesBytes) continue;
    std::vector<uint8_t> notes(ph.p_filesz);
    if (auto st = ReadExactly(fd, notes.data(), notes.size(), ph.p_offset, origin); !st) {
      return std::unexpected(st.error());
    }
    if (std::string id = BuildIdInNotes(notes); !id.empty()) return id;
  }
  return std::string();
}

}  // namespace patchlab::patchcore
