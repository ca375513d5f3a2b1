// Signatures derived from DWARF (emulator/dwarf_signature.h), as `patchlab
// check` does without --sig, on ELF images with hostile debug information.
//
// Input: function names separated by ',' (at most 8), then the ELF image from
// its "\x7fELF" magic on; no names: "main". What is derived must be something
// the checker can run: at most six register-sized parameters, pointers sized
// within its buffers.
#include <string>
#include <vector>

#include "emulator/dwarf_signature.h"
#include "fuzz/fuzz_target.h"

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

bool IsRegisterWidth(int width) { return width == 1 || width == 2 || width == 4 || width == 8; }

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
    FUZZ_CHECK(sig->ret_width == 0 || IsRegisterWidth(sig->ret_width));
    FUZZ_CHECK(sig->params.size() <= 6);
    for (const Param& p : sig->params) {
      FUZZ_CHECK(IsRegisterWidth(p.width));
      FUZZ_CHECK(!p.is_pointer || p.fixed_size <= kMaxBufferBytes);
    }
  }
  return 0;
}
