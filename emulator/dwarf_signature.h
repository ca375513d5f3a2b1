// Reading a function's prototype from DWARF (elfutils libdw), for checks run
// without --sig: parameter names, integer widths and signedness, pointers with
// the size of what they point to (struct sizes included), the return type.
// Looks in the ELF itself, then in its separate debug file found by build-id
// under /usr/lib/debug. The result passes through FinishSignature, so
// (pointer, length) pairs and strings are recognised as for --sig.
//
// Thread-safety: safe to call concurrently.
#pragma once

#include <string>

#include "base/error.h"
#include "emulator/signature.h"

namespace patchlab::emulator {

// The signature of `function` in `elf_path`. Fails with kNotFound when there
// is no debug information ("pass --sig"), or no DWARF entry for the function;
// kUnsupported for floating-point or struct-by-value parameters or returns.
Result<Signature> ReadDwarfSignature(const std::string& elf_path, const std::string& function);

// The same from a file image in memory (`origin` names it in errors), using
// only the DWARF the image itself holds: no debug file is looked for.
// kNotFound when it has none.
Result<Signature> ReadDwarfSignatureFromBytes(std::string elf_bytes, const std::string& origin,
                                              const std::string& function);

}  // namespace patchlab::emulator
