#include "emulator/dwarf_signature.h"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <fcntl.h>
#include <libelf.h>

#include <memory>
#include <optional>

#include "base/elf_file.h"
#include "base/function_name.h"
#include "base/scoped_fd.h"
#include "emulator/internal/dwarf_types.h"

namespace patchlab::emulator {
namespace {

using internal::DieName;
using internal::DwarfType;
using internal::ReadType;

// Owns a Dwarf handle (which owns its Elf when opened from an fd) and the fd.
class DwarfFile {
 public:
  DwarfFile(ScopedFd fd, Dwarf* d) : fd_(std::move(fd)), d_(d) {}
  ~DwarfFile() {
    if (d_ != nullptr) dwarf_end(d_);
  }
  DwarfFile(const DwarfFile&) = delete;
  DwarfFile& operator=(const DwarfFile&) = delete;
  Dwarf* get() const { return d_; }

 private:
  ScopedFd fd_;
  Dwarf* d_;
};

// The DWARF of `path`, or nullptr when it has none.
Result<std::unique_ptr<DwarfFile>> OpenDwarf(const std::string& path) {
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return FailErrno("open " + path);
  Dwarf* d = dwarf_begin(fd.get(), DWARF_C_READ);
  if (d == nullptr) return std::unique_ptr<DwarfFile>();
  return std::make_unique<DwarfFile>(std::move(fd), d);
}

// Whether the subprogram `die` starts at `addr` (its entry pc, or the start
// of one of its ranges for a function split into hot and cold parts).
bool EntersAt(Dwarf_Die* die, uint64_t addr) {
  Dwarf_Addr entry = 0;
  if (dwarf_entrypc(die, &entry) == 0 && entry == addr) return true;
  Dwarf_Addr base = 0, start = 0, end = 0;
  for (ptrdiff_t off = 0; (off = dwarf_ranges(die, off, &base, &start, &end)) > 0;) {
    if (start == addr) return true;
  }
  return false;
}

// Depth-first through namespaces and classes for the concrete subprogram
// that enters at `addr`.
bool SearchChildren(Dwarf_Die* parent, uint64_t addr, Dwarf_Die* found) {
  Dwarf_Die child;
  if (dwarf_child(parent, &child) != 0) return false;
  do {
    const int tag = dwarf_tag(&child);
    if (tag == DW_TAG_subprogram) {
      Dwarf_Attribute a;
      if (dwarf_attr(&child, DW_AT_declaration, &a) == nullptr && EntersAt(&child, addr)) {
        *found = child;
        return true;
      }
    } else if (tag == DW_TAG_namespace || tag == DW_TAG_structure_type ||
               tag == DW_TAG_class_type || tag == DW_TAG_union_type) {
      if (SearchChildren(&child, addr, found)) return true;
    }
  } while (dwarf_siblingof(&child, &child) == 0);
  return false;
}

// The concrete subprogram entered at `addr`: first in the compilation unit
// .debug_aranges names for the address, then in every unit.
std::optional<Dwarf_Die> FindSubprogramAt(Dwarf* dw, uint64_t addr) {
  Dwarf_Die cu, found;
  if (dwarf_addrdie(dw, addr, &cu) != nullptr && SearchChildren(&cu, addr, &found)) return found;
  Dwarf_Off off = 0, next = 0;
  size_t header = 0;
  while (dwarf_nextcu(dw, off, &next, &header, nullptr, nullptr, nullptr) == 0) {
    if (dwarf_offdie(dw, off + header, &cu) != nullptr && SearchChildren(&cu, addr, &found))
      return found;
    off = next;
  }
  return std::nullopt;
}

// The subprogram whose parameters describe `fn`: `fn` itself, or the
// abstract instance or declaration it completes when it lists none.
Dwarf_Die ParameterOwner(Dwarf_Die fn) {
  Dwarf_Die child;
  if (dwarf_child(&fn, &child) == 0) {
    do {
      const int tag = dwarf_tag(&child);
      if (tag == DW_TAG_formal_parameter || tag == DW_TAG_unspecified_parameters) return fn;
    } while (dwarf_siblingof(&child, &child) == 0);
  }
  for (unsigned attr : {DW_AT_abstract_origin, DW_AT_specification}) {
    Dwarf_Attribute a;
    Dwarf_Die origin;
    if (dwarf_attr(&fn, attr, &a) != nullptr && dwarf_formref_die(&a, &origin) != nullptr)
      return ParameterOwner(origin);
  }
  return fn;
}

std::string ParamText(const Param& p) {
  return p.type_text + (p.type_text.ends_with('*') || p.type_text.ends_with('&') ? "" : " ") +
         p.name;
}

// The return type of `fn` into `sig`.
Status ReadReturn(Dwarf_Die* fn, const std::string& where, Signature& sig, std::string* text) {
  const DwarfType ret = ReadType(fn);
  *text = ret.text;
  Param r;
  r.name = "the return value";
  r.type_text = ret.text;
  if (ret.kind == ValueKind::kVoid) {
    if (ret.size < 0)
      return Fail(ErrorCode::kUnsupported, "{} returns {}, which the checker cannot read", where,
                  ret.text);
    return {};
  }
  if (auto s = internal::ParamFromType(ret, r); !s) {
    return std::unexpected(std::move(s.error()).AddContext(where));
  }
  sig.ret_kind = r.kind == ValueKind::kFunction ? ValueKind::kPointer : r.kind;
  sig.ret_width = r.width;
  sig.ret_signed = r.is_signed;
  sig.ret_pointer = sig.ret_kind == ValueKind::kPointer;
  sig.ret_format = r.format;
  sig.ret_record = std::move(r.record);
  return {};
}

// The parameters of `fn` into `sig`.
Status ReadParams(Dwarf_Die fn, const std::string& where, Signature& sig, std::string* text) {
  Dwarf_Die owner = ParameterOwner(fn);
  Dwarf_Die child;
  if (dwarf_child(&owner, &child) != 0) return {};
  do {
    const int tag = dwarf_tag(&child);
    if (tag == DW_TAG_unspecified_parameters) {
      sig.variadic = true;
      continue;
    }
    if (tag != DW_TAG_formal_parameter) continue;
    Param p;
    p.name = DieName(&child);
    if (p.name.empty()) p.name = fmt::format("arg{}", sig.params.size() + 1);
    const DwarfType t = ReadType(&child);
    p.type_text = t.text;
    if (auto s = internal::ParamFromType(t, p); !s) {
      return std::unexpected(std::move(s.error()).AddContext(where));
    }
    *text += (text->empty() ? "" : ", ") + ParamText(p);
    sig.params.push_back(std::move(p));
  } while (dwarf_siblingof(&child, &child) == 0);
  return {};
}

// The signature of the subprogram `fn`, called `function`.
Result<Signature> FromSubprogram(Dwarf_Die fn, const std::string& function,
                                 const std::string& where) {
  Dwarf_Attribute a;
  Dwarf_Word cc = 0;
  if (dwarf_attr_integrate(&fn, DW_AT_calling_convention, &a) != nullptr &&
      dwarf_formudata(&a, &cc) == 0 && cc == DW_CC_nocall) {
    return Fail(ErrorCode::kUnsupported,
                "{}: the compiler changed its calling convention (DW_CC_nocall): no caller "
                "outside its file may call it",
                where);
  }
  Signature sig;
  sig.name = function;
  std::string ret_text, params_text;
  if (auto s = ReadReturn(&fn, where, sig, &ret_text); !s) return std::unexpected(s.error());
  if (auto s = ReadParams(fn, where, sig, &params_text); !s) return std::unexpected(s.error());
  if (sig.variadic) {
    return Fail(ErrorCode::kUnsupported,
                "{} is variadic: pass its prototype with the variadic arguments to pass, e.g. "
                "--sig \"{} {}({}{}... /* int, double */)\"",
                where, ret_text, function, params_text, params_text.empty() ? "" : ", ");
  }
  const std::string name = DieName(&fn);
  sig.text = fmt::format("{}{}{}({})", ret_text, ret_text.ends_with('*') ? "" : " ", function,
                         params_text.empty() ? "void" : params_text);
  if (!name.empty() && name != function && Demangle(function).find(name) == std::string::npos)
    sig.text += fmt::format(" /* DWARF: {} */", name);
  return sig;
}

// An IFUNC symbol's address is its resolver's: the function it selects has
// the prototype of the function pointer the resolver returns.
std::optional<Dwarf_Die> SelectedFunctionType(Dwarf_Die resolver) {
  const DwarfType ret = ReadType(&resolver);
  if (ret.kind != ValueKind::kFunction || !ret.has_die) return std::nullopt;
  Dwarf_Die pointer = ret.die, pointee, fn;
  Dwarf_Attribute a;
  if (dwarf_attr_integrate(&pointer, DW_AT_type, &a) == nullptr ||
      dwarf_formref_die(&a, &pointee) == nullptr || dwarf_peel_type(&pointee, &fn) != 0)
    return std::nullopt;
  return fn;
}

// Whether `fn` is an entry the assembler described (glibc's system-call
// wrappers, _mcount): its unit is in assembly, and its DW_TAG_subprogram
// names no parameters and an unspecified return type, which is no
// prototype at all (not f(void)).
bool IsAssemblyEntry(Dwarf_Die fn) {
  Dwarf_Die cu;
  if (dwarf_diecu(&fn, &cu, nullptr, nullptr) == nullptr) return false;
  return dwarf_srclang(&cu) == DW_LANG_Mips_Assembler;
}

// Where the DWARF of `elf` is: the file itself or its debug file by build-id.
Result<std::string> DwarfPath(const ElfFile& elf, bool* own) {
  const std::string path = elf.path().string();
  *own = elf.FindSection(".debug_info") != nullptr;
  if (*own) return path;
  if (elf.build_id().empty()) {
    return Fail(ErrorCode::kNotFound,
                "{} has no debug information (and no build-id to find a debug file by); pass "
                "the prototype with --sig",
                path);
  }
  auto debug = FindDebugFile(elf.build_id());
  if (!debug) {
    return Fail(ErrorCode::kNotFound,
                "{} has no debug information ({}); install its debug file (e.g. the -dbgsym or "
                "-dbg package) or pass the prototype with --sig",
                path, debug.error().message());
  }
  return debug->string();
}

// The signature of `function`, whose symbol `match` names, from the DWARF
// `dw` (read from `path`, which names it in errors).
Result<Signature> SignatureAt(Dwarf* dw, const FunctionMatch& match, const std::string& path,
                              const std::string& function) {
  const std::string where = fmt::format("{}: '{}'", path, function);
  std::optional<Dwarf_Die> fn = FindSubprogramAt(dw, match.address);
  if (!fn) {
    return Fail(ErrorCode::kNotFound,
                "{}: no DWARF subprogram at {:#x}, where '{}' starts (an assembly function, or "
                "one the compiler inlined everywhere): pass the prototype with --sig",
                path, match.address, function);
  }
  if (IsAssemblyEntry(*fn)) {
    return Fail(ErrorCode::kNotFound,
                "{}: '{}' is an assembly entry: no prototype in DWARF, pass --sig", path, function);
  }
  Result<Signature> sig = std::unexpected(Error(ErrorCode::kInternal, ""));
  if (match.symbol != nullptr && match.symbol->type == SymbolType::kIfunc) {
    std::optional<Dwarf_Die> selected = SelectedFunctionType(*fn);
    if (!selected) {
      return Fail(ErrorCode::kNotFound,
                  "{}: '{}' is an IFUNC and its resolver's DWARF does not say what the selected "
                  "function takes: pass the prototype with --sig",
                  path, function);
    }
    sig = FromSubprogram(*selected, function, where);
  } else {
    sig = FromSubprogram(*fn, function, where);
  }
  if (!sig) return sig;
  if (auto s = FinishSignature(*sig); !s) return std::unexpected(s.error());
  return sig;
}

}  // namespace

Result<Signature> ReadDwarfSignature(const std::string& elf_path, const std::string& function) {
  auto elf = ElfFile::Open(elf_path);
  if (!elf) return std::unexpected(elf.error());
  auto match = FindFunctionByName(*elf, function);
  if (!match) return std::unexpected(match.error());
  bool own = false;
  auto path = DwarfPath(*elf, &own);
  if (!path) return std::unexpected(path.error());
  auto dw = OpenDwarf(*path);
  if (!dw) return std::unexpected(dw.error());
  if (*dw == nullptr) {
    return Fail(ErrorCode::kNotFound, "{}: {} has no DWARF; pass the prototype with --sig",
                elf_path, *path);
  }
  return SignatureAt((*dw)->get(), *match, *path, function);
}

Result<Signature> ReadDwarfSignatureFromBytes(std::string elf_bytes, const std::string& origin,
                                              const std::string& function) {
  auto elf = ElfFile::FromBytes(elf_bytes, origin);
  if (!elf) return std::unexpected(elf.error());
  auto match = FindFunctionByName(*elf, function);
  if (!match) return std::unexpected(match.error());
  if (elf->FindSection(".debug_info") == nullptr) {
    return Fail(ErrorCode::kNotFound, "{} has no debug information; pass the prototype with --sig",
                origin);
  }
  [[maybe_unused]] static const bool libelf_ready = elf_version(EV_CURRENT) != EV_NONE;
  // libelf reads the buffer in place (elf_memory wants it writable); it is ours.
  std::unique_ptr<Elf, int (*)(Elf*)> image(elf_memory(elf_bytes.data(), elf_bytes.size()),
                                            &elf_end);
  if (image == nullptr) return Fail(ErrorCode::kParse, "{}: {}", origin, elf_errmsg(-1));
  // The Dwarf handle uses the Elf: it ends first.
  std::unique_ptr<Dwarf, int (*)(Dwarf*)> dw(dwarf_begin_elf(image.get(), DWARF_C_READ, nullptr),
                                             &dwarf_end);
  if (dw == nullptr) {
    return Fail(ErrorCode::kNotFound, "{} has no debug information; pass the prototype with --sig",
                origin);
  }
  return SignatureAt(dw.get(), *match, origin, function);
}

}  // namespace patchlab::emulator
