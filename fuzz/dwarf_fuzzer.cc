// Signatures derived from DWARF (emulator/dwarf_signature.h), as `patchlab
// check` does without --sig, on ELF images with hostile debug information.
//
// Input: function names separated by ',' (at most 8), then the ELF image from
// its "\x7fELF" magic on; no names: "main". What is derived must be something
// the checker can place (fuzz/signature_invariants.h).
#include <string>
#include <vector>

#include "emulator/dwarf_signature.h"
#include "fuzz/fuzz_target.h"
#include "fuzz/signature_invariants.h"

namespace {

std::vector<std::string> FunctionNames(std::string_view list) {
  std::vector<std::string> names;
  while (!list.empty() && names.size() < 8) {
    size_t comma = list.find(',');
    names.emplace_back(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
  }
  if (names.empty()) names.emplace_back("main");
  return names;
}

}  // namespace

PATCHLAB_FUZZ_TARGET(dwarf) {
  using namespace patchlab::emulator;
  std::string_view text = patchlab::fuzz::AsText(data, size);
  size_t magic = text.find(
      "\x7f"
      "ELF");
  if (magic == std::string_view::npos) return 0;
  const std::string image(text.substr(magic));
  for (const std::string& name : FunctionNames(text.substr(0, magic))) {
    auto sig = ReadDwarfSignatureFromBytes(image, "fuzz-input.elf", name);
    if (!sig) {
      FUZZ_CHECK(sig.error().ToString().find("fuzz-input.elf") != std::string::npos ||
                 sig.error().ToString().find(name) != std::string::npos);
      continue;
    }
    // What DWARF gives must be as placeable as what --sig gives.
    patchlab::fuzz::CheckSignatureInvariants(*sig);
  }
  return 0;
}
