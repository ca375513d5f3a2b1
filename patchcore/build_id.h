// ReadBuildId: the GNU build-id of an ELF file, read from the notes its
// program headers point at (a few hundred bytes), so that the mappings of
// many processes can be matched to a package without decoding whole
// libraries. ElfFile computes the same value for a file it has decoded.
//
// Thread-safety: a pure function of the file.
#pragma once

#include <string>
#include <string_view>

#include "base/error.h"

namespace patchlab::patchcore {

// Lowercase hex of the NT_GNU_BUILD_ID note of the ELF64 file open on `fd`;
// empty when it has none. kParse naming `origin` when it is not an ELF64
// little-endian file or a note runs past the end; kIo when a read fails.
Result<std::string> ReadBuildId(int fd, std::string_view origin);

}  // namespace patchlab::patchcore
