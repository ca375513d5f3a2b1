// PreparedPackage: a patch package made ready to be applied to many
// processes (`apply --system`): its signature checked once, its patch object
// decoded once, and a shared cache of the target processes' ELF files, so
// that the per-process work is what only that process can tell.
//
// Thread-safety: const methods may be called from any number of threads at
// once (the file cache locks itself).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/elf_file.h"
#include "base/error.h"
#include "patchcore/elf_cache.h"
#include "patchcore/patch_package.h"

namespace patchlab::patchcore {

struct ApplyOptions;

class PreparedPackage {
 public:
  // Checks the signature with `options.pubkey` (unless
  // `options.allow_unsigned`, which only warns) and decodes the object.
  // kInvalidArgument without a key, kRefused for a bad signature, kParse for
  // an object that is not ELF.
  static Result<PreparedPackage> Prepare(PatchPackage package, const ApplyOptions& options);

  const PatchPackage& package() const { return *package_; }
  const Manifest& manifest() const { return package_->manifest; }
  const std::shared_ptr<const ElfFile>& object() const { return object_; }
  ElfCache& files() const { return *files_; }
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  PreparedPackage() = default;
  std::shared_ptr<const PatchPackage> package_;
  std::shared_ptr<const ElfFile> object_;
  std::shared_ptr<ElfCache> files_;
  std::vector<std::string> warnings_;
};

}  // namespace patchlab::patchcore
