// The host-side half of a scenario, done before any VM boots: the lab's
// signing key (made on first use, kept outside the repository), the target
// program and each patch object compiled with the host compiler, and each
// patch packed and signed with `hotpatch pack`.
//
// Thread-safety: EnsureLabKey serialises concurrent callers (also across
// processes) with a lock file; BuildScenario may run concurrently for
// distinct scenarios and work folders.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"
#include "harness/lab/scenario.h"

namespace patchlab::harness::internal {

struct LabKey {
  std::filesystem::path private_key;  // DIR/patch.key, mode 0600
  std::filesystem::path public_key;   // DIR/patch.pub: what the guest verifies with
};

// The key pair under `dir`, made with `hotpatch keygen --out dir` when absent.
// Fails naming the folder or hotpatch's output.
Result<LabKey> EnsureLabKey(const std::filesystem::path& dir,
                            const std::filesystem::path& hotpatch);

// Where the lab keeps its key by default: $PATCHLAB_HOME/keys, else
// /var/lib/patchlab/keys as root, else ~/.local/share/patchlab/keys.
std::filesystem::path DefaultKeyDir();

struct BuiltPatch {
  const PatchSpec* spec = nullptr;
  std::filesystem::path object;   // the compiled patch .so
  std::filesystem::path package;  // the signed .hpk
  std::filesystem::path module;   // the host file of the patched module (target or library)
  std::string package_sha256;
  std::string target_build_id;
  // The key the package verifies with: a prebuilt patch.package's own
  // patch.pubkey; empty for the packages the lab signs (its own key).
  std::filesystem::path public_key;
};

struct BuiltScenario {
  const Scenario* scenario = nullptr;
  std::filesystem::path program;  // the compiled target, or target.binary; empty: in the image
  std::vector<BuiltPatch> patches;
};

// Compiles `scenario`'s target and patches into `work_dir` (created), then
// packs and signs each patch with `key`. Compiler and hotpatch output goes to
// work_dir/build.log. Fails with kInvalidArgument (the scenario is at fault:
// a compile error, a missing library module), naming the scenario file and
// quoting the tool's first error lines; kIo/kNotFound for the lab's own
// tools. `cc` is the C compiler (e.g. "cc").
// `module_root` (may be empty): the root file system of the Debian-system
// image the scenario runs on; a patch.module found there is packed against
// that file (the guest's build-id), else against the host's.
Result<BuiltScenario> BuildScenario(const Scenario& scenario, const std::filesystem::path& work_dir,
                                    const LabKey& key, const std::filesystem::path& hotpatch,
                                    const std::string& cc,
                                    const std::filesystem::path& module_root = {});

// Whether `patch`, packed against one build of its library (target_build_id),
// fits the image whose root file system is `image_root`: "" when the image's
// file at patch.module has that build-id (or the patch names no library, or
// was not packed against a known build); else why not, naming the patch, both
// build-ids and `image`. A patch is bound to one build of its library:
// hotpatch refuses any other, and that refusal would say nothing of the patch.
std::string LibraryBuildMismatch(const BuiltPatch& patch, const std::filesystem::path& image_root,
                                 const std::string& image);

}  // namespace patchlab::harness::internal
