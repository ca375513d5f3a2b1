#include "emulator/dwarf_signature.h"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <fcntl.h>
#include <libelf.h>

#include <cstring>
#include <memory>

#include "base/elf_file.h"
#include "base/scoped_fd.h"

namespace patchlab::emulator {
namespace {

// Owns a Dwarf handle (which owns its Elf when opened from an fd).
class DwarfHandle {
 public:
  explicit DwarfHandle(Dwarf* d) : d_(d) {}
  ~DwarfHandle() {
    if (d_ != nullptr) dwarf_end(d_);
  }
  DwarfHandle(const DwarfHandle&) = delete;
  DwarfHandle& operator=(const DwarfHandle&) = delete;
  Dwarf* get() const { return d_; }

 private:
  Dwarf* d_;
};

struct TypeView {
  enum Kind { kVoid, kInt, kFloat, kPointer, kRecord, kOther } kind = kVoid;
  int size = 0;
  bool is_signed = false;
  bool is_char = false;
  bool is_const = false;  // of this type (after stripping typedefs)
  std::string text;
  Dwarf_Die die{};  // pointee for kPointer
  bool has_pointee = false;
};

std::string DieName(Dwarf_Die* die) {
  const char* n = dwarf_diename(die);
  return n == nullptr ? "" : n;
}

// How many typedefs, qualifiers and pointer levels Resolve follows: DWARF is
// read from files nobody here wrote, and a type that refers to itself must
// end as "other", not in a stack overflow.
constexpr int kMaxTypeChain = 32;

// Follows DW_AT_type from `die`, through typedefs and qualifiers, and into
// pointees; `budget` is what is left of kMaxTypeChain.
TypeView Resolve(Dwarf_Die* die, int budget = kMaxTypeChain) {
  TypeView t;
  Dwarf_Attribute attr;
  Dwarf_Die cur;
  if (dwarf_attr_integrate(die, DW_AT_type, &attr) == nullptr ||
      dwarf_formref_die(&attr, &cur) == nullptr) {
    t.text = "void";
    return t;
  }
  std::string quals;
  for (; budget > 0; --budget) {
    int tag = dwarf_tag(&cur);
    if (tag == DW_TAG_typedef || tag == DW_TAG_const_type || tag == DW_TAG_volatile_type ||
        tag == DW_TAG_restrict_type || tag == DW_TAG_atomic_type) {
      if (tag == DW_TAG_const_type) {
        t.is_const = true;
        quals = "const ";
      }
      if (tag == DW_TAG_typedef && t.text.empty()) t.text = DieName(&cur);
      Dwarf_Die next;
      if (dwarf_attr_integrate(&cur, DW_AT_type, &attr) == nullptr ||
          dwarf_formref_die(&attr, &next) == nullptr) {
        t.kind = TypeView::kVoid;
        if (t.text.empty()) t.text = quals + "void";
        return t;
      }
      cur = next;
      continue;
    }
    Dwarf_Word size = 0;
    Dwarf_Attribute sa;
    if (dwarf_attr_integrate(&cur, DW_AT_byte_size, &sa) != nullptr) dwarf_formudata(&sa, &size);
    t.size = static_cast<int>(size);
    std::string own = DieName(&cur);
    if (tag == DW_TAG_base_type) {
      Dwarf_Word enc = 0;
      Dwarf_Attribute ea;
      if (dwarf_attr_integrate(&cur, DW_AT_encoding, &ea) != nullptr) dwarf_formudata(&ea, &enc);
      if (enc == DW_ATE_float || enc == DW_ATE_complex_float) {
        t.kind = TypeView::kFloat;
      } else {
        t.kind = TypeView::kInt;
        t.is_signed = enc == DW_ATE_signed || enc == DW_ATE_signed_char;
        t.is_char = (enc == DW_ATE_signed_char || enc == DW_ATE_unsigned_char) && size == 1;
      }
    } else if (tag == DW_TAG_enumeration_type) {
      t.kind = TypeView::kInt;
      t.is_signed = true;
      own = "enum " + own;
    } else if (tag == DW_TAG_pointer_type) {
      t.kind = TypeView::kPointer;
      t.size = 8;
      t.die = cur;
      t.has_pointee = true;
    } else if (tag == DW_TAG_structure_type || tag == DW_TAG_union_type ||
               tag == DW_TAG_class_type) {
      t.kind = TypeView::kRecord;
      own = (tag == DW_TAG_union_type ? "union " : "struct ") + own;
    } else {
      t.kind = TypeView::kOther;
    }
    if (t.kind == TypeView::kPointer) {
      TypeView pointee = Resolve(&cur, budget - 1);
      if (t.text.empty())
        t.text = quals + pointee.text + (pointee.text.ends_with('*') ? "*" : " *");
    } else if (t.text.empty()) {
      t.text = quals + own;
    }
    return t;
  }
  t.kind = TypeView::kOther;
  return t;
}

struct Search {
  std::string name;
  bool found = false;
  Dwarf_Die die{};
};

int OnFunction(Dwarf_Die* die, void* arg) {
  auto* s = static_cast<Search*>(arg);
  if (DieName(die) != s->name) return DWARF_CB_OK;
  Dwarf_Attribute a;
  bool declaration = dwarf_attr_integrate(die, DW_AT_declaration, &a) != nullptr;
  if (declaration && s->found) return DWARF_CB_OK;
  s->die = *die;
  s->found = true;
  return declaration ? DWARF_CB_OK : DWARF_CB_ABORT;
}

// Integers the checker passes in registers: 1, 2, 4 or 8 bytes. DWARF also
// describes __int128 and, in a damaged file, sizes of 0 or 3.
bool IsRegisterWidth(int size) { return size == 1 || size == 2 || size == 4 || size == 8; }

// The signature of `function` from the DWARF in `dw`; `path` names the file in
// errors. kNotFound when the DWARF has no entry for it.
Result<bool> SignatureFromDwarf(Dwarf* dw, const std::string& path, const std::string& function,
                                Signature* sig) {
  Search s{function};
  Dwarf_Off off = 0, next = 0;
  size_t header = 0;
  while (!s.found && dwarf_nextcu(dw, off, &next, &header, nullptr, nullptr, nullptr) == 0) {
    Dwarf_Die cu;
    if (dwarf_offdie(dw, off + header, &cu) != nullptr) {
      dwarf_getfuncs(&cu, OnFunction, &s, 0);
    }
    off = next;
  }
  if (!s.found) {
    return Fail(ErrorCode::kNotFound, "{}: DWARF has no entry for function '{}'", path, function);
  }
  Dwarf_Die fn = s.die;
  sig->name = function;
  TypeView ret = Resolve(&fn);
  if (ret.kind == TypeView::kFloat || ret.kind == TypeView::kRecord ||
      ret.kind == TypeView::kOther) {
    return Fail(ErrorCode::kUnsupported,
                "{}: '{}' returns {}: only integer, pointer and void returns are supported", path,
                function, ret.text);
  }
  if (ret.kind == TypeView::kInt && !IsRegisterWidth(ret.size)) {
    return Fail(ErrorCode::kUnsupported,
                "{}: '{}' returns {} of {} bytes: only 1, 2, 4 and 8-byte integers are supported",
                path, function, ret.text, ret.size);
  }
  if (ret.kind != TypeView::kVoid) {
    sig->ret_width = ret.size;
    sig->ret_signed = ret.is_signed;
    sig->ret_pointer = ret.kind == TypeView::kPointer;
  }
  std::string params_text;
  Dwarf_Die child;
  if (dwarf_child(&fn, &child) == 0) {
    do {
      int tag = dwarf_tag(&child);
      if (tag == DW_TAG_unspecified_parameters) {
        return Fail(ErrorCode::kUnsupported, "{}: '{}' is variadic", path, function);
      }
      if (tag != DW_TAG_formal_parameter) continue;
      Param p;
      p.name = DieName(&child);
      if (p.name.empty()) p.name = fmt::format("arg{}", sig->params.size() + 1);
      TypeView t = Resolve(&child);
      p.type_text = t.text;
      if (t.kind == TypeView::kInt) {
        if (!IsRegisterWidth(t.size)) {
          return Fail(ErrorCode::kUnsupported,
                      "{}: '{}': parameter '{}' ({}) is {} bytes: only 1, 2, 4 and 8-byte "
                      "integers are supported",
                      path, function, p.name, t.text, t.size);
        }
        p.width = t.size;
        p.is_signed = t.is_signed;
      } else if (t.kind == TypeView::kPointer) {
        p.is_pointer = true;
        p.width = 8;
        TypeView pointee = Resolve(&t.die);
        p.pointee_const = pointee.is_const;
        if (pointee.kind == TypeView::kInt && pointee.is_char)
          p.byte_pointee = true;
        else if (pointee.kind == TypeView::kInt || pointee.kind == TypeView::kRecord)
          p.fixed_size = pointee.size;
        else if (pointee.kind == TypeView::kPointer) {
          p.fixed_size = 8;
          p.pointer_slots = true;
        }
      } else {
        return Fail(ErrorCode::kUnsupported,
                    "{}: '{}': parameter '{}' ({}): only integer and pointer parameters "
                    "are supported",
                    path, function, p.name, t.text);
      }
      params_text += (params_text.empty() ? "" : ", ") + p.type_text +
                     (p.type_text.ends_with('*') ? "" : " ") + p.name;
      sig->params.push_back(std::move(p));
    } while (dwarf_siblingof(&child, &child) == 0);
  }
  sig->text = fmt::format("{}{}{}({})", ret.text, ret.text.ends_with('*') ? "" : " ", function,
                          params_text.empty() ? "void" : params_text);
  return true;
}

// The signature of `function` from the DWARF of the file at `path`; false
// when the file has no DWARF.
Result<bool> FindIn(const std::string& path, const std::string& function, Signature* sig) {
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return FailErrno("open " + path);
  DwarfHandle dw(dwarf_begin(fd.get(), DWARF_C_READ));
  if (dw.get() == nullptr) return false;  // no DWARF here
  return SignatureFromDwarf(dw.get(), path, function, sig);
}

}  // namespace

Result<Signature> ReadDwarfSignatureFromBytes(std::string elf_bytes, const std::string& origin,
                                              const std::string& function) {
  [[maybe_unused]] static const bool libelf_ready = elf_version(EV_CURRENT) != EV_NONE;
  // libelf reads the buffer in place (elf_memory wants it writable); it is ours.
  std::unique_ptr<Elf, int (*)(Elf*)> elf(elf_memory(elf_bytes.data(), elf_bytes.size()), &elf_end);
  if (elf == nullptr) return Fail(ErrorCode::kParse, "{}: {}", origin, elf_errmsg(-1));
  Signature sig;
  {
    // The Dwarf handle uses the Elf: it ends first.
    DwarfHandle dw(dwarf_begin_elf(elf.get(), DWARF_C_READ, nullptr));
    if (dw.get() == nullptr) {
      return Fail(ErrorCode::kNotFound,
                  "{} has no debug information; pass the prototype with --sig", origin);
    }
    auto found = SignatureFromDwarf(dw.get(), origin, function, &sig);
    if (!found) return std::unexpected(found.error());
  }
  if (auto s = FinishSignature(sig); !s)
    return std::unexpected(std::move(s.error()).AddContext(origin));
  return sig;
}

Result<Signature> ReadDwarfSignature(const std::string& elf_path, const std::string& function) {
  Signature sig;
  auto here = FindIn(elf_path, function, &sig);
  if (!here) return std::unexpected(here.error());
  if (!*here) {
    auto elf = ElfFile::Open(elf_path);
    if (!elf) return std::unexpected(elf.error());
    auto debug =
        elf->build_id().empty()
            ? Result<std::filesystem::path>(std::unexpected(Error(ErrorCode::kNotFound, "")))
            : FindDebugFile(elf->build_id());
    if (!debug) {
      return Fail(ErrorCode::kNotFound,
                  "{} has no debug information (and no debug file by build-id); pass the prototype "
                  "with --sig",
                  elf_path);
    }
    auto there = FindIn(debug->string(), function, &sig);
    if (!there) return std::unexpected(there.error());
    if (!*there) {
      return Fail(ErrorCode::kNotFound,
                  "{}: its debug file {} has no DWARF; pass the prototype with --sig", elf_path,
                  debug->string());
    }
  }
  if (auto s = FinishSignature(sig); !s) return std::unexpected(s.error());
  return sig;
}

}  // namespace patchlab::emulator
