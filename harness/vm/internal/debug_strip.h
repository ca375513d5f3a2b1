// The lab's own binaries without their debug info, for the images: a
// RelWithDebInfo hotpatch is ~52 MB of which ~2 MB is code and symbols, and
// every byte of an initramfs is unpacked by the guest kernel under TCG and
// kept in the saved ready state.
//
// Errors: a file that cannot be read fails with kNotFound/kIo naming it; an
// ELF file ElfFile cannot decode fails with kParse naming it; objcopy failing
// fails with kIo naming the file and objcopy's message. The host file is never
// written to; the stripped copy goes to a temporary file removed before return.
//
// Thread-safety: free function; concurrent calls use distinct temporary files.
#pragma once

#include <filesystem>
#include <string>

#include "base/error.h"

namespace patchlab::harness::internal {

// The bytes of `host` with its DWARF sections (.debug_*) removed by
// `objcopy --strip-debug` (symbols, build-id and code stay, so the guest's
// copy is the same program with the same build-id). A file that is not ELF or
// has no debug section is returned byte for byte, without running objcopy:
// Debian's libraries come stripped and stay identical to the host's.
Result<std::string> ReadWithoutDebugInfo(const std::filesystem::path& host);

}  // namespace patchlab::harness::internal
