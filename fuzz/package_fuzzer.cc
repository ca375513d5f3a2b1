// The patch package reader (patchcore/patch_package.h), which runs before any
// signature is checked: the container, and the manifest on its own when the
// input does not start with the package magic. A manifest that decodes must
// encode and decode again to the same manifest.
#include "base/elf_file.h"
#include "fuzz/fuzz_target.h"
#include "patchcore/patch_package.h"

namespace {

using patchlab::patchcore::Manifest;

void CheckRoundTrip(const Manifest& manifest) {
  const std::string json = manifest.ToJson();
  auto again = Manifest::FromJson(json, "fuzz-round-trip");
  FUZZ_CHECK(again.has_value());
  FUZZ_CHECK(again->ToJson() == json);
}

}  // namespace

PATCHLAB_FUZZ_TARGET(package) {
  const std::string_view text = patchlab::fuzz::AsText(data, size);
  if (!text.starts_with("HOTPATCH-PKG-v1\n")) {
    auto manifest = Manifest::FromJson(text, "fuzz-manifest.json");
    if (!manifest) {
      FUZZ_CHECK(manifest.error().ToString().find("fuzz-manifest.json") != std::string::npos);
      return 0;
    }
    CheckRoundTrip(*manifest);
    return 0;
  }
  auto package = patchlab::patchcore::DecodePackage(text, "fuzz-input.hpk");
  if (!package) {
    FUZZ_CHECK(package.error().ToString().find("fuzz-input.hpk") != std::string::npos);
    return 0;
  }
  CheckRoundTrip(package->manifest);
  FUZZ_CHECK(package->signed_bytes.size() <= size);
  // What apply reads next, once the signature holds.
  (void)patchlab::ElfFile::FromBytes(package->object, "fuzz-input.hpk object");
  return 0;
}
