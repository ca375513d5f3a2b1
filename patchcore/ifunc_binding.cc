#include "patchcore/ifunc_binding.h"

#include <elf.h>

#include <cstring>
#include <filesystem>
#include <map>

namespace patchlab::patchcore {
namespace {

// The word a relocated slot holds now, or nullopt when it cannot be read.
std::optional<uint64_t> SlotValue(const ProcessMemory& memory, RemotePtr slot) {
  uint64_t v = 0;
  if (!memory.ReadInto(slot, std::span(reinterpret_cast<uint8_t*>(&v), sizeof v))) {
    return std::nullopt;
  }
  return v;
}

std::string FileName(const std::string& path) {
  return std::filesystem::path(path).filename().string();
}

// The symbol name without a version (`strlen@GLIBC_2.2.5` -> `strlen`).
std::string_view Unversioned(std::string_view name) { return name.substr(0, name.find('@')); }

// runtime address -> the first slot it was read from.
using Bindings = std::map<uint64_t, std::string>;

void ReadOwnIrelativeSlots(const ElfSymbol& ifunc, const LoadedModule& target,
                           const ProcessMemory& memory, Bindings& out) {
  for (const ElfRelocation& r : target.elf->dynamic_relocations()) {
    if (r.type != R_X86_64_IRELATIVE || static_cast<uint64_t>(r.addend) != ifunc.value) continue;
    auto v = SlotValue(memory, target.Runtime(r.offset));
    if (v && target.range.Contains(RemotePtr(*v))) {
      out.emplace(*v, fmt::format("{} IRELATIVE slot {:#x}", FileName(target.path), r.offset));
    }
  }
}

void ReadNamedSlots(std::string_view name, const LoadedModule& target, const ModuleSet& modules,
                    const ProcessMemory& memory, Bindings& out) {
  for (const LoadedModule& user : modules.modules()) {
    for (const ElfRelocation& r : user.elf->dynamic_relocations()) {
      if (r.type != R_X86_64_GLOB_DAT && r.type != R_X86_64_JUMP_SLOT) continue;
      if (r.symbol != name) continue;
      auto v = SlotValue(memory, user.Runtime(r.offset));
      // Not in the target: a lazy PLT slot not bound yet, or another
      // module's definition interposed.
      if (v && target.range.Contains(RemotePtr(*v))) {
        out.emplace(*v, fmt::format("{} {} slot {:#x}", FileName(user.path),
                                    r.type == R_X86_64_GLOB_DAT ? "GOT" : "PLT", r.offset));
      }
    }
  }
}

// The sized function symbol starting exactly at `link_addr`, in the file
// or its debug file.
const ElfSymbol* FunctionStartingAt(const LoadedModule& target, uint64_t link_addr) {
  for (const ElfFile* f : {target.elf.get(), target.debug.get()}) {
    if (!f) continue;
    const ElfSymbol* s = f->SymbolAt(link_addr);
    if (s && s->value == link_addr && s->type == SymbolType::kFunc && s->size > 0) return s;
  }
  return nullptr;
}

// Another IFUNC of the module whose IRELATIVE slot holds the same
// implementation (glibc's memcpy and memmove share one): its name, or empty.
std::string SharedWith(const ElfSymbol& ifunc, const LoadedModule& target,
                       const ProcessMemory& memory, uint64_t impl) {
  for (const ElfRelocation& r : target.elf->dynamic_relocations()) {
    if (r.type != R_X86_64_IRELATIVE || static_cast<uint64_t>(r.addend) == ifunc.value) continue;
    auto v = SlotValue(memory, target.Runtime(r.offset));
    if (!v || *v != impl) continue;
    const ElfSymbol* other = target.elf->SymbolAt(static_cast<uint64_t>(r.addend));
    if (other && other->value == static_cast<uint64_t>(r.addend) && other->name != ifunc.name) {
      return other->name;
    }
  }
  return {};
}

}  // namespace

Result<BoundImplementation> FindBoundImplementation(std::string_view name, const ElfSymbol& ifunc,
                                                    const LoadedModule& target,
                                                    const ModuleSet& modules,
                                                    const ProcessMemory& memory) {
  Bindings bound;
  ReadOwnIrelativeSlots(ifunc, target, memory, bound);
  ReadNamedSlots(Unversioned(name), target, modules, memory, bound);
  if (bound.empty()) {
    return Fail(ErrorCode::kRefused,
                "function {}: an IFUNC of {} that no relocated slot of pid {} holds an "
                "implementation of yet (nothing bound it; calling its resolver would run target "
                "code) (rule: an IFUNC is patched in the implementation the loader chose)",
                name, FileName(target.path), memory.pid());
  }
  if (bound.size() > 1) {
    std::string list;
    for (const auto& [addr, where] : bound) {
      list += fmt::format("{}{:#x} in {}", list.empty() ? "" : ", ", addr, where);
    }
    return Fail(ErrorCode::kRefused,
                "function {}: an IFUNC bound to {} different implementations in pid {} ({}); "
                "patching one would leave the others' callers on the old code",
                name, bound.size(), memory.pid(), list);
  }
  const auto& [addr, where] = *bound.begin();
  const uint64_t link_addr = addr - target.bias;
  const ElfSymbol* impl = FunctionStartingAt(target, link_addr);
  if (!impl) {
    return Fail(
        ErrorCode::kRefused,
        "function {}: an IFUNC whose implementation in pid {} ({:#x}, from {}) has no sized "
        "function symbol in {} or its debug file (install the debug file, e.g. "
        "libc6-dbg) (rule: the whole function must be read)",
        name, memory.pid(), addr, where, FileName(target.path));
  }
  // Its entry jump would reach every caller of the other IFUNC too, with a
  // replacement written for this one's contract.
  if (std::string other = SharedWith(ifunc, target, memory, addr); !other.empty()) {
    return Fail(ErrorCode::kRefused,
                "function {}: its implementation in pid {}, {}, is also the one {} (another IFUNC) "
                "is bound to; patching it would replace {} too (rule: an IFUNC is patched only in "
                "an implementation no other function shares)",
                name, memory.pid(), impl->name, other, other);
  }
  return BoundImplementation{impl, RemotePtr(addr), where};
}

}  // namespace patchlab::patchcore
