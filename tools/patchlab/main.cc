// patchlab: the live-patch validation lab. Runs scenarios in reference VMs,
// checks old against new functions, keeps the compatibility database and
// answers gate and report queries from it.
#include <cstdio>

#include "base/log.h"
#include "base/version.h"
#include "tools/patchlab/commands.h"

namespace patchlab::cli {

void AddNotBuiltYet(CLI::App& app, CommandContext& ctx, const std::string& name,
                    const std::string& description, const std::string& issue) {
  CLI::App* sub = app.add_subcommand(name, description + " (not built yet)");
  sub->allow_extras();
  sub->callback([&ctx, name, issue] {
    std::fprintf(stderr, "patchlab %s: not built yet (%s)\n", name.c_str(), issue.c_str());
    ctx.exit_code = 2;
  });
}

}  // namespace patchlab::cli

int main(int argc, char** argv) {
  using namespace patchlab;
  CLI::App app{"patchlab: live-patch validation lab for native x86-64 Linux code", "patchlab"};
  app.set_version_flag("--version", fmt::format("patchlab {} ({})", Version(), GitDescribe()));
  std::string log_spec;
  app.add_option("--log", log_spec, "log levels: LEVEL[,COMPONENT=LEVEL...] (also PATCHLAB_LOG)");
  app.require_subcommand(1);
  app.parse_complete_callback([&] {
    if (!log_spec.empty()) {
      if (auto s = SetLogSpec(log_spec); !s)
        throw CLI::ValidationError("--log", s.error().ToString());
    }
  });

  cli::CommandContext ctx;
  cli::RegisterCheckCommand(app, ctx);
  cli::RegisterImagesCommand(app, ctx);
  cli::RegisterRunCommand(app, ctx);
  cli::RegisterDbCommands(app, ctx);
  cli::RegisterHostsCommand(app, ctx);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  return ctx.exit_code;
}
