// The subcommands of the `patchlab` program. Each Register* adds one or more
// subcommands to `app`; when one runs, it stores its exit code in ctx.exit_code.
// Every subcommand lives in its own cmd_*.cc file.
#pragma once

#include <CLI/CLI.hpp>

namespace patchlab::cli {

struct CommandContext {
  int exit_code = 0;
};

void RegisterCheckCommand(CLI::App& app, CommandContext& ctx);   // cmd_check.cc
void RegisterImagesCommand(CLI::App& app, CommandContext& ctx);  // cmd_images.cc
void RegisterRunCommand(CLI::App& app, CommandContext& ctx);     // cmd_run.cc
void RegisterDbCommands(CLI::App& app,
                        CommandContext& ctx);  // cmd_db.cc: compat runs history gate report
void RegisterHostsCommand(CLI::App& app, CommandContext& ctx);  // cmd_hosts.cc

// For subcommands whose issue has not landed: says so and exits 2.
void AddNotBuiltYet(CLI::App& app, CommandContext& ctx, const std::string& name,
                    const std::string& description, const std::string& issue);

}  // namespace patchlab::cli
