#include "tools/patchlab/commands.h"

namespace patchlab::cli {
void RegisterCheckCommand(CLI::App& app, CommandContext& ctx) {
  AddNotBuiltYet(app, ctx, "check", "semantic check of an old function against a new one", "issue 4");
}
}  // namespace patchlab::cli
