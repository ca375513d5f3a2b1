#include "emulator/internal/dwarf_types.h"

#include <dwarf.h>

#include <algorithm>

namespace patchlab::emulator::internal {
namespace {

// Records nest; arrays in records repeat their element's leaves. Past these
// a record is not flattened (and so not passed by value).
constexpr int kMaxRecordDepth = 8;
constexpr size_t kMaxLeaves = 4096;

uint64_t UdataAttr(Dwarf_Die* die, unsigned name, uint64_t fallback) {
  Dwarf_Attribute a;
  Dwarf_Word v = 0;
  if (dwarf_attr_integrate(die, name, &a) == nullptr || dwarf_formudata(&a, &v) != 0)
    return fallback;
  return v;
}

bool FlagAttr(Dwarf_Die* die, unsigned name) {
  Dwarf_Attribute a;
  bool v = false;
  return dwarf_attr_integrate(die, name, &a) != nullptr && dwarf_formflag(&a, &v) == 0 && v;
}

// The DIE DW_AT_type of `die` refers to.
bool TypeOf(Dwarf_Die* die, Dwarf_Die* out) {
  Dwarf_Attribute a;
  return dwarf_attr_integrate(die, DW_AT_type, &a) != nullptr &&
         dwarf_formref_die(&a, out) != nullptr;
}

void ReadBaseType(Dwarf_Die* die, DwarfType& t) {
  const uint64_t enc = UdataAttr(die, DW_AT_encoding, 0);
  const std::string name = DieName(die);
  switch (enc) {
    case DW_ATE_float:
      t.kind = ValueKind::kFloat;
      t.format = t.size == 4                                     ? FloatFormat::kSingle
                 : t.size == 8                                   ? FloatFormat::kDouble
                 : name.find("long double") != std::string::npos ? FloatFormat::kX87
                                                                 : FloatFormat::kQuad;
      break;
    case DW_ATE_complex_float:
      t.kind = ValueKind::kRecord;
      t.complex = true;
      break;
    default:
      t.kind = ValueKind::kInteger;
      t.is_signed = enc == DW_ATE_signed || enc == DW_ATE_signed_char;
      t.is_char = (enc == DW_ATE_signed_char || enc == DW_ATE_unsigned_char) && t.size == 1;
      break;
  }
}

// A C++ class with a user-provided destructor or copy constructor is
// "non-trivial for the purposes of calls": passed by invisible reference.
bool PassedByReference(Dwarf_Die* record) {
  const uint64_t cc = UdataAttr(record, DW_AT_calling_convention, 0);
  if (cc == DW_CC_pass_by_reference) return true;
  if (cc == DW_CC_pass_by_value) return false;
  Dwarf_Die child;
  if (dwarf_child(record, &child) != 0) return false;
  const std::string own = DieName(record);
  do {
    if (dwarf_tag(&child) != DW_TAG_subprogram || FlagAttr(&child, DW_AT_artificial)) continue;
    const std::string n = DieName(&child);
    if (n.starts_with("~")) return true;
    // A copy constructor: the class's name, taking a reference to the class.
    if (n != own) continue;
    Dwarf_Die param;
    if (dwarf_child(&child, &param) != 0) continue;
    do {
      if (dwarf_tag(&param) != DW_TAG_formal_parameter || FlagAttr(&param, DW_AT_artificial))
        continue;
      Dwarf_Die ref;
      if (TypeOf(&param, &ref) && (dwarf_tag(&ref) == DW_TAG_reference_type ||
                                   dwarf_tag(&ref) == DW_TAG_rvalue_reference_type))
        return true;
      break;
    } while (dwarf_siblingof(&param, &param) == 0);
  } while (dwarf_siblingof(&child, &child) == 0);
  return false;
}

// How many pointer levels a type's text follows: DWARF comes from files nobody
// here wrote, and a pointer type that points at itself must end, not recurse
// until the stack runs out (fuzz/regressions/dwarf/pointer-to-itself).
constexpr int kMaxPointerDepth = 32;

DwarfType Describe(Dwarf_Die type, int depth);

// The type `die`'s DW_AT_type names, described at pointer depth `depth`.
DwarfType DescribeTypeOf(Dwarf_Die* die, int depth) {
  Dwarf_Die type;
  if (!TypeOf(die, &type)) {
    DwarfType t;
    t.text = "void";
    return t;
  }
  if (depth > kMaxPointerDepth) {
    DwarfType t;
    t.size = -1;  // too deep to be a value the checker can make
    t.text = "?";
    return t;
  }
  return Describe(type, depth);
}

// Describes the type DIE `type` (not yet followed through typedefs).
DwarfType Describe(Dwarf_Die type, int depth) {
  DwarfType t;
  std::string quals;
  for (int guard = 0; guard < 64; ++guard) {
    const int tag = dwarf_tag(&type);
    if (tag == DW_TAG_typedef || tag == DW_TAG_const_type || tag == DW_TAG_volatile_type ||
        tag == DW_TAG_restrict_type || tag == DW_TAG_atomic_type) {
      if (tag == DW_TAG_const_type) {
        t.is_const = true;
        quals = "const ";
      }
      if (tag == DW_TAG_typedef && t.text.empty()) t.text = quals + DieName(&type);
      Dwarf_Die next;
      if (!TypeOf(&type, &next)) {
        t.kind = ValueKind::kVoid;
        if (t.text.empty()) t.text = quals + "void";
        return t;
      }
      type = next;
      continue;
    }
    t.die = type;
    t.has_die = true;
    t.size = static_cast<int>(UdataAttr(&type, DW_AT_byte_size, 0));
    std::string own = DieName(&type);
    switch (tag) {
      case DW_TAG_base_type:
        ReadBaseType(&type, t);
        break;
      case DW_TAG_enumeration_type: {
        t.kind = ValueKind::kInteger;
        Dwarf_Die underlying;
        t.is_signed = TypeOf(&type, &underlying)
                          ? UdataAttr(&underlying, DW_AT_encoding, DW_ATE_signed) == DW_ATE_signed
                          : true;
        own = "enum " + own;
        break;
      }
      case DW_TAG_pointer_type:
      case DW_TAG_reference_type:
      case DW_TAG_rvalue_reference_type: {
        t.kind = ValueKind::kPointer;
        t.size = 8;
        t.is_reference = tag != DW_TAG_pointer_type;
        Dwarf_Die pointee;
        if (TypeOf(&type, &pointee)) {
          Dwarf_Die peeled;
          if (dwarf_peel_type(&pointee, &peeled) == 0 &&
              dwarf_tag(&peeled) == DW_TAG_subroutine_type)
            t.kind = ValueKind::kFunction;
        }
        break;
      }
      case DW_TAG_structure_type:
      case DW_TAG_union_type:
      case DW_TAG_class_type:
        t.kind = ValueKind::kRecord;
        t.by_reference = tag != DW_TAG_union_type && PassedByReference(&type);
        own = (tag == DW_TAG_union_type   ? "union "
               : tag == DW_TAG_class_type ? "class "
                                          : "struct ") +
              own;
        break;
      case DW_TAG_unspecified_type:  // std::nullptr_t
        t.kind = ValueKind::kInteger;
        t.size = 8;
        break;
      default:
        t.kind = ValueKind::kVoid;
        t.size = -1;  // not a type a value can have here (array, member pointer, ...)
        break;
    }
    if (t.kind == ValueKind::kPointer || t.kind == ValueKind::kFunction) {
      Dwarf_Die pointer = t.die;
      const DwarfType pointee = t.has_die ? DescribeTypeOf(&pointer, depth + 1) : DwarfType{};
      if (t.text.empty()) {
        t.text = quals + pointee.text + (pointee.text.ends_with('*') ? "" : " ") +
                 (t.is_reference ? "&" : "*");
      }
    } else if (t.text.empty()) {
      t.text = quals + (own.empty() ? std::string("?") : own);
    }
    return t;
  }
  t.size = -1;
  return t;
}

// Appends the leaves of a value of type `type` (a DIE, not yet followed
// through typedefs) at `offset` to `out`.
Status AddLeaves(Dwarf_Die type, uint64_t offset, RecordType& out, int depth);

Status AddMembers(Dwarf_Die* record, uint64_t offset, RecordType& out, int depth) {
  Dwarf_Die child;
  if (dwarf_child(record, &child) != 0) return {};
  const bool is_union = dwarf_tag(record) == DW_TAG_union_type;
  do {
    const int tag = dwarf_tag(&child);
    if (tag != DW_TAG_member && tag != DW_TAG_inheritance) continue;
    if (FlagAttr(&child, DW_AT_external) || FlagAttr(&child, DW_AT_declaration)) continue;
    if (tag == DW_TAG_inheritance && UdataAttr(&child, DW_AT_virtuality, 0) != 0) {
      return Fail(ErrorCode::kUnsupported, "{} has a virtual base class", DieName(record));
    }
    Dwarf_Attribute loc;
    Dwarf_Word at = 0;
    if (dwarf_attr_integrate(&child, DW_AT_data_member_location, &loc) != nullptr) {
      if (dwarf_formudata(&loc, &at) != 0) {
        return Fail(ErrorCode::kUnsupported, "member '{}' of {} is at a computed offset",
                    DieName(&child), DieName(record));
      }
    } else if (!is_union) {
      at = UdataAttr(&child, DW_AT_data_bit_offset, 0) / 8;
    }
    Dwarf_Die member_type;
    if (!TypeOf(&child, &member_type)) continue;
    if (dwarf_hasattr_integrate(&child, DW_AT_bit_size)) {
      // A bit-field: an integer leaf over the bytes that hold its bits.
      const uint64_t bit = UdataAttr(&child, DW_AT_data_bit_offset, at * 8);
      const uint64_t bits = UdataAttr(&child, DW_AT_bit_size, 1);
      const uint64_t first = bit / 8, last = (bit + bits + 7) / 8;
      int size = 1;
      while (static_cast<uint64_t>(size) < last - first && size < 8) size *= 2;
      out.leaves.push_back(
          Leaf{offset + first, size, ValueKind::kInteger, FloatFormat::kNone, false});
      continue;
    }
    if (auto s = AddLeaves(member_type, offset + at, out, depth + 1); !s) return s;
  } while (dwarf_siblingof(&child, &child) == 0);
  return {};
}

// The element count of an array type (the product of its dimensions).
uint64_t ArrayCount(Dwarf_Die* array) {
  uint64_t count = 1;
  Dwarf_Die sub;
  if (dwarf_child(array, &sub) != 0) return 0;
  do {
    if (dwarf_tag(&sub) != DW_TAG_subrange_type) continue;
    uint64_t n = UdataAttr(&sub, DW_AT_count, ~0ull);
    if (n == ~0ull) {
      const uint64_t upper = UdataAttr(&sub, DW_AT_upper_bound, ~0ull);
      n = upper == ~0ull ? 0 : upper - UdataAttr(&sub, DW_AT_lower_bound, 0) + 1;
    }
    count *= n;
  } while (dwarf_siblingof(&sub, &sub) == 0);
  return count;
}

Status AddLeaves(Dwarf_Die type, uint64_t offset, RecordType& out, int depth) {
  if (depth > kMaxRecordDepth) return Fail(ErrorCode::kUnsupported, "records nest too deep");
  if (out.leaves.size() > kMaxLeaves) {
    return Fail(ErrorCode::kUnsupported, "more than {} scalar members", kMaxLeaves);
  }
  Dwarf_Die peeled;
  if (dwarf_peel_type(&type, &peeled) == 0 && dwarf_tag(&peeled) == DW_TAG_array_type) {
    Dwarf_Die element;
    if (!TypeOf(&peeled, &element)) return {};
    Dwarf_Word element_size = 0;
    if (dwarf_aggregate_size(&element, &element_size) != 0 || element_size == 0) return {};
    const uint64_t count = ArrayCount(&peeled);
    for (uint64_t i = 0; i < count; ++i) {
      if (auto s = AddLeaves(element, offset + i * element_size, out, depth + 1); !s) return s;
    }
    return {};
  }
  const DwarfType t = Describe(type, 0);
  switch (t.kind) {
    case ValueKind::kInteger:
    case ValueKind::kFloat:
    case ValueKind::kPointer:
    case ValueKind::kFunction:
      out.leaves.push_back(Leaf{offset, t.size,
                                t.kind == ValueKind::kFunction ? ValueKind::kPointer : t.kind,
                                t.format, t.is_signed});
      return {};
    case ValueKind::kRecord: {
      if (t.complex) {
        const int half = t.size / 2;
        const FloatFormat f = half == 4   ? FloatFormat::kSingle
                              : half == 8 ? FloatFormat::kDouble
                                          : FloatFormat::kX87;
        out.leaves.push_back(Leaf{offset, half, ValueKind::kFloat, f, false});
        out.leaves.push_back(Leaf{offset + half, half, ValueKind::kFloat, f, false});
        return {};
      }
      Dwarf_Die die = t.die;
      return AddMembers(&die, offset, out, depth);
    }
    default:
      return {};  // zero-sized or unreadable: no leaf
  }
}

}  // namespace

std::string DieName(Dwarf_Die* die) {
  const char* n = dwarf_diename(die);
  return n == nullptr ? "" : n;
}

DwarfType ReadType(Dwarf_Die* die) { return DescribeTypeOf(die, 0); }

DwarfType ReadPointee(const DwarfType& t) {
  if (!t.has_die) return DwarfType{};
  Dwarf_Die die = t.die;
  DwarfType p = ReadType(&die);
  return p;
}

Status ReadRecord(const DwarfType& t, RecordType& out) {
  out.name = t.text;
  out.size = static_cast<uint64_t>(std::max(t.size, 0));
  if (!t.has_die) return {};
  if (auto s = AddLeaves(t.die, 0, out, 0); !s) {
    return std::unexpected(std::move(s.error()).AddContext(t.text));
  }
  std::stable_sort(out.leaves.begin(), out.leaves.end(),
                   [](const Leaf& a, const Leaf& b) { return a.offset < b.offset; });
  out.align = 1;
  for (const Leaf& l : out.leaves) out.align = std::max<uint64_t>(out.align, std::min(l.size, 16));
  return {};
}

CallbackType ReadCallback(const DwarfType& t) {
  CallbackType cb;
  if (!t.has_die) return cb;
  Dwarf_Die pointer = t.die, pointee, fn;
  if (!TypeOf(&pointer, &pointee) || dwarf_peel_type(&pointee, &fn) != 0) return cb;
  const DwarfType ret = ReadType(&fn);
  cb.ret_width = ret.kind == ValueKind::kVoid ? 0 : std::clamp(ret.size, 1, 8);
  cb.ret_signed = ret.is_signed;
  Dwarf_Die child;
  if (dwarf_child(&fn, &child) != 0) return cb;
  do {
    if (dwarf_tag(&child) != DW_TAG_formal_parameter) continue;
    const DwarfType p = ReadType(&child);
    cb.params.push_back(p.kind == ValueKind::kPointer || p.kind == ValueKind::kFloat
                            ? p.kind
                            : ValueKind::kInteger);
  } while (dwarf_siblingof(&child, &child) == 0);
  return cb;
}

Status ParamFromType(const DwarfType& t, Param& p) {
  switch (t.kind) {
    case ValueKind::kInteger:
      // Registers and the stack hold integers of these widths; a base type of
      // another size (a hostile DW_AT_byte_size, found by fuzz/dwarf_fuzzer.cc)
      // has no place in a call.
      if (t.size != 1 && t.size != 2 && t.size != 4 && t.size != 8 && t.size != 16) {
        return Fail(ErrorCode::kUnsupported, "'{}' has type {}, an integer of {} bytes", p.name,
                    t.text, t.size);
      }
      p.kind = ValueKind::kInteger;
      p.width = t.size;
      p.is_signed = t.is_signed;
      return {};
    case ValueKind::kFloat:
      if (t.size != 4 && t.size != 8 && t.size != 16) {
        return Fail(ErrorCode::kUnsupported, "'{}' has type {}, a floating type of {} bytes",
                    p.name, t.text, t.size);
      }
      p.kind = ValueKind::kFloat;
      p.format = t.format;
      p.width = FloatBytes(t.format);
      return {};
    case ValueKind::kFunction:
      p.kind = ValueKind::kFunction;
      p.width = 8;
      p.callback = ReadCallback(t);
      return {};
    case ValueKind::kRecord:
      if (!t.by_reference) {
        p.kind = ValueKind::kRecord;
        p.width = t.size;
        return ReadRecord(t, p.record);
      }
      // The caller passes the address of its copy: a pointer to one object.
      p.kind = ValueKind::kPointer;
      p.is_pointer = true;
      p.width = 8;
      p.nonnull = true;
      p.fixed_size = static_cast<uint64_t>(t.size);
      p.type_text += " (by reference)";
      return {};
    case ValueKind::kPointer:
      break;
    default:
      return Fail(ErrorCode::kUnsupported, "parameter '{}' has type {}, which cannot be passed",
                  p.name, t.text);
  }
  p.kind = ValueKind::kPointer;
  p.is_pointer = true;
  p.width = 8;
  p.nonnull = t.is_reference;
  const DwarfType pointee = ReadPointee(t);
  p.pointee_const = pointee.is_const;
  if (pointee.kind == ValueKind::kInteger && pointee.is_char) {
    p.byte_pointee = true;
  } else if (pointee.kind == ValueKind::kPointer || pointee.kind == ValueKind::kFunction) {
    p.fixed_size = 8;
    p.pointer_slots = true;
  } else if (pointee.kind != ValueKind::kVoid && pointee.size > 0) {
    p.fixed_size = static_cast<uint64_t>(pointee.size);
    RecordType layout;
    if (pointee.kind == ValueKind::kRecord && !pointee.complex && ReadRecord(pointee, layout)) {
      for (const Leaf& l : layout.leaves) {
        if (l.kind == ValueKind::kPointer) p.null_offsets.push_back(l.offset);
      }
    }
  }
  return {};
}

}  // namespace patchlab::emulator::internal
