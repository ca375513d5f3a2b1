// Reading C and C++ types from DWARF (elfutils libdw) into the checker's
// value model (signature.h): scalars, pointers and references, function
// pointers, and structs, unions and classes flattened into their scalar
// leaves for the SysV classification.
//
// Thread-safety: plain functions over DIEs of one Dwarf handle.
#pragma once

#include <elfutils/libdw.h>

#include <string>

#include "base/error.h"
#include "emulator/signature.h"

namespace patchlab::emulator::internal {

// The type of the entity `die` (its DW_AT_type, followed through typedefs
// and qualifiers).
struct DwarfType {
  ValueKind kind = ValueKind::kVoid;
  int size = 0;  // bytes
  bool is_signed = false;
  bool is_char = false;   // a one-byte character type
  bool is_const = false;  // the type itself is const-qualified
  FloatFormat format = FloatFormat::kNone;
  bool is_reference = false;  // a C++ reference (never null)
  // A C++ class the ABI passes by invisible reference (it has a
  // non-trivial destructor or copy constructor): callers pass its address.
  bool by_reference = false;
  bool complex = false;  // _Complex: a record of two floats
  std::string text;      // as a C declaration would spell it
  Dwarf_Die die{};       // the resolved type (pointee lookups start here)
  bool has_die = false;
};

// Reads the type of `die`; a DIE without DW_AT_type is void.
DwarfType ReadType(Dwarf_Die* die);

// The pointee of a pointer or reference type `t`.
DwarfType ReadPointee(const DwarfType& t);

// Flattens the record (or complex number) `t` into `out` (size, alignment,
// leaves). Fails with kUnsupported naming the member it cannot read (a
// member at a computed offset, a virtual base).
Status ReadRecord(const DwarfType& t, RecordType& out);

// The prototype of the function a function pointer `t` points to.
CallbackType ReadCallback(const DwarfType& t);

// Fills `p` (name and type_text already set) from `t`: its kind, width,
// pointee size or record layout. Fails with kUnsupported for types a
// parameter cannot have here.
Status ParamFromType(const DwarfType& t, Param& p);

// The name of a DIE (DW_AT_name, through abstract origins and
// specifications); "" when none.
std::string DieName(Dwarf_Die* die);

}  // namespace patchlab::emulator::internal
