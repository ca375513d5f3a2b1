#include "tools/patchlab/commands.h"

namespace patchlab::cli {
void RegisterDbCommands(CLI::App& app, CommandContext& ctx) {
  AddNotBuiltYet(app, ctx, "compat", "the compatibility matrix of a patch", "issue 6");
  AddNotBuiltYet(app, ctx, "runs", "list lab runs", "issue 6");
  AddNotBuiltYet(app, ctx, "history", "results of an image over time", "issue 6");
  AddNotBuiltYet(app, ctx, "gate", "may this patch ship? exit 0 yes, 1 no, 3 not enough data", "issue 6");
  AddNotBuiltYet(app, ctx, "report", "write a report: html, junit, md, json, openmetrics", "issue 6");
}
}  // namespace patchlab::cli
