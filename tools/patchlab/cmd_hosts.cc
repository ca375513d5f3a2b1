#include "tools/patchlab/commands.h"

namespace patchlab::cli {
void RegisterHostsCommand(CLI::App& app, CommandContext& ctx) {
  AddNotBuiltYet(app, ctx, "hosts", "check libvirt hosts for fleet runs", "issue 7");
}
}  // namespace patchlab::cli
