// IfuncBinding: the implementation of an IFUNC (a GNU indirect function such
// as glibc's strlen or memcpy) that a running process's loader chose.
//
// An IFUNC symbol names a resolver, not code: the loader calls the resolver
// once and stores the implementation it returns (for this CPU) in the
// relocated slots that reach it. That implementation is what the process
// runs, so it is what a patch of the IFUNC must replace. It is read from
// those slots, never by calling the resolver (that would run target code in
// a stopped process, and could pick differently than the loader did):
//   - the module's own IRELATIVE slots whose addend is the resolver (how a
//     library calls its own IFUNCs; applied at load, never lazily);
//   - GLOB_DAT and JUMP_SLOT slots of any module naming the symbol (a lazy
//     PLT slot not bound yet still points into its own module and is
//     skipped).
// The implementation must be a sized function symbol of the module or of its
// debug file (glibc's are local symbols: install libc6-dbg), and no other
// IFUNC of the module may be bound to it: glibc binds memcpy and memmove to
// one implementation, and a replacement written for memcpy would also serve
// memmove's overlapping copies.
//
// Thread-safety: a pure function of its arguments (it reads the process).
#pragma once

#include <string>
#include <string_view>

#include "base/elf_file.h"
#include "base/error.h"
#include "patchcore/module_set.h"
#include "patchcore/process_memory.h"

namespace patchlab::patchcore {

struct BoundImplementation {
  const ElfSymbol* symbol = nullptr;  // its sized function symbol (file or debug file)
  RemotePtr entry;                    // where it runs in the process
  std::string where;                  // the first slot it was read from, for messages
};

// The implementation the slots of the process hold for IFUNC `ifunc` (named
// `name`) of `target`. Fails with kRefused, naming the function and the
// process, when no slot holds one yet (nothing bound it: resolving it would
// run target code), when slots disagree (naming them), when the
// implementation has no sized symbol, or when another IFUNC shares it.
Result<BoundImplementation> FindBoundImplementation(std::string_view name, const ElfSymbol& ifunc,
                                                    const LoadedModule& target,
                                                    const ModuleSet& modules,
                                                    const ProcessMemory& memory);

}  // namespace patchlab::patchcore
