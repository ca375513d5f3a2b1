#include "patchcore/prepared_package.h"

#include <utility>

#include "patchcore/patcher.h"

namespace patchlab::patchcore {

Result<PreparedPackage> PreparedPackage::Prepare(PatchPackage package,
                                                 const ApplyOptions& options) {
  PreparedPackage p;
  if (!options.allow_unsigned) {
    if (options.pubkey.empty()) {
      return Fail(ErrorCode::kInvalidArgument, "give --pubkey FILE (or --allow-unsigned)");
    }
    if (auto st = VerifyPackage(package, options.pubkey); !st) return std::unexpected(st.error());
  } else if (!package.is_signed()) {
    p.warnings_.push_back(fmt::format(
        "package {} is unsigned; applied because --allow-unsigned was given", package.manifest.id));
  }
  auto object =
      ElfFile::FromBytes(package.object, fmt::format("patch object of {}", package.manifest.id));
  if (!object) return std::unexpected(std::move(object.error()));
  p.object_ = std::make_shared<const ElfFile>(std::move(*object));
  p.package_ = std::make_shared<const PatchPackage>(std::move(package));
  p.files_ = std::make_shared<ElfCache>();
  return p;
}

}  // namespace patchlab::patchcore
