#include "tools/patchlab/commands.h"

namespace patchlab::cli {
void RegisterImagesCommand(CLI::App& app, CommandContext& ctx) {
  AddNotBuiltYet(app, ctx, "images", "build and list reference VM images", "issue 5");
}
}  // namespace patchlab::cli
