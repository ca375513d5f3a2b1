// hotpatch: applies, stacks, reverts and verifies live patches in running
// x86-64 Linux processes through trampolines.
#include <cstdio>

#include <CLI/CLI.hpp>

#include "base/log.h"
#include "base/version.h"

int main(int argc, char** argv) {
  using namespace patchlab;
  CLI::App app{"hotpatch: live-patch running x86-64 Linux processes", "hotpatch"};
  app.set_version_flag("--version", fmt::format("hotpatch {} ({})", Version(), GitDescribe()));
  app.require_subcommand(1);
  int exit_code = 0;
  const std::pair<const char*, const char*> kCommands[] = {
      {"keygen", "write an Ed25519 key pair"},
      {"pack", "build a signed patch package"},
      {"apply", "apply a patch package to a running process"},
      {"revert", "revert a live patch"},
      {"status", "show the live patch stack of a process"},
      {"verify", "check every patched site against the stack"},
      {"recover", "finish an interrupted apply or revert from its journal"}};
  for (const auto& [name, description] : kCommands) {
    CLI::App* sub = app.add_subcommand(name, std::string(description) + " (not built yet)");
    sub->allow_extras();
    sub->callback([&exit_code, name = std::string(name)] {
      std::fprintf(stderr, "hotpatch %s: not built yet (issue 3)\n", name.c_str());
      exit_code = 2;
    });
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  return exit_code;
}
