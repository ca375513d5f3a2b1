#include "tools/patchlab/commands.h"

namespace patchlab::cli {
void RegisterRunCommand(CLI::App& app, CommandContext& ctx) {
  AddNotBuiltYet(app, ctx, "run", "run scenarios: boot VMs, apply patches live under load", "issue 5");
}
}  // namespace patchlab::cli
