// hotpatch: applies, stacks, reverts and verifies live patches in running
// x86-64 Linux processes through trampolines, one process (--pid) or every
// process that maps a module (--system). See docs/hotpatch.md.
//
// Exit codes, everywhere: 0 done; 2 usage error or unreadable input; 3 refused
// before anything changed; 4 failed part-way and fully rolled back (and, for
// verify, a mismatch); 5 the target vanished.
#include <CLI/CLI.hpp>
#include <optional>

#include "base/log.h"
#include "base/version.h"
#include "tools/hotpatch/cli_common.h"
#include "tools/hotpatch/pid_commands.h"
#include "tools/hotpatch/system_commands.h"

namespace patchlab::hotpatch {
namespace {

// Everything the command line can say, kept alive while CLI11 fills it.
struct Args {
  int exit_code = 0;
  std::string keygen_out;
  PackArgs pack;
  pid_t pid = 0;
  bool system = false, all = false;
  SystemArgs sys;
};

// --pid PID or --system (with the options that narrow and shape it).
void AddTarget(CLI::App* cmd, Args& a, bool scope) {
  auto* pid = cmd->add_option("--pid", a.pid, "target process");
  auto* system = cmd->add_flag("--system", a.system, "every process (that maps the module)");
  pid->excludes(system);
  if (!scope) return;
  cmd->add_option("--descendants-of", a.sys.descendants_of,
                  "--system: only the descendants of this process (not itself)");
  cmd->add_option("--jobs", a.sys.jobs, "--system: processes at a time (default: one per CPU)");
}

int Dispatch(const Args& a, const char* command, int (*by_pid)(const Args&),
             int (*by_system)(const SystemArgs&)) {
  if (a.system) return by_system(a.sys);
  if (a.pid > 0) return by_pid(a);
  std::fprintf(stderr, "hotpatch %s: error: give --pid PID or --system\n", command);
  return kExitUsage;
}

void AddPack(CLI::App& app, Args& a) {
  auto* pack = app.add_subcommand("pack", "build a signed patch package");
  pack->add_option("--target", a.pack.target, "the target ELF (executable or library)")->required();
  pack->add_option("--object", a.pack.object, "the patch object (-fPIC -shared)")->required();
  pack->add_option("--id", a.pack.id, "patch id")->required();
  pack->add_option("--seq", a.pack.seq, "sequence number")->required();
  pack->add_option("--func", a.pack.funcs, "OLD[=NEW] function to replace")->required();
  pack->add_option("--ref", a.pack.refs, "private target symbol the patch uses");
  pack->add_option("--replaces", a.pack.replaces, "all, or ID,... this patch supersedes");
  pack->add_option("--depends", a.pack.depends, "ID that must be live");
  pack->add_option("--key", a.pack.key, "private key (DIR/patch.key); unsigned without");
  pack->add_option("-o,--out", a.pack.out, "output package")->required();
  pack->callback([&] { a.exit_code = CmdPack(a.pack); });
}

void AddApply(CLI::App& app, Args& a) {
  auto* apply = app.add_subcommand("apply", "apply a patch package to running processes");
  AddTarget(apply, a, true);
  apply->add_option("--pubkey", a.sys.pubkey, "public key to verify the package with");
  apply->add_flag("--allow-unsigned", a.sys.allow_unsigned, "accept an unsigned package");
  apply->add_option("--timeout", a.sys.timeout_ms, "ms to wait for threads to leave (2000)");
  apply->add_flag("--json", a.sys.json, "print one JSON object");
  apply->add_flag("--all-or-nothing", a.sys.all_or_nothing,
                  "--system: revert the applied ones when any process is not patched");
  apply->add_option("--follow", a.sys.follow,
                    "--system: then patch processes that start for this long (e.g. 30s, 10m)");
  apply->add_option("package", a.sys.package, "PKG.hpk")->required();
  apply->callback([&] {
    a.exit_code = Dispatch(
        a, "apply",
        [](const Args& x) {
          return CmdApply({x.pid, x.sys.pubkey, x.sys.package, x.sys.allow_unsigned, x.sys.json,
                           x.sys.timeout_ms});
        },
        CmdApplySystem);
  });
}

void AddRevert(CLI::App& app, Args& a) {
  auto* revert = app.add_subcommand("revert", "revert a live patch");
  AddTarget(revert, a, true);
  revert->add_flag("--all", a.all, "--pid: revert every patch");
  revert->add_flag("--json", a.sys.json, "print one JSON object");
  revert->add_option("--timeout", a.sys.timeout_ms, "ms to wait for threads to leave (2000)");
  revert->add_option("id", a.sys.id, "patch id");
  revert->callback([&] {
    a.exit_code = Dispatch(
        a, "revert",
        [](const Args& x) {
          return CmdRevert(x.pid, x.sys.id, x.all, x.sys.json, x.sys.timeout_ms);
        },
        [](const SystemArgs& s) {
          if (s.id.empty()) {
            std::fprintf(stderr, "hotpatch revert: error: --system takes a patch ID\n");
            return kExitUsage;
          }
          return CmdRevertSystem(s);
        });
  });
}

void AddReaders(CLI::App& app, Args& a) {
  auto* status = app.add_subcommand("status", "show live patch stacks");
  AddTarget(status, a, true);
  status->add_flag("--json", a.sys.json, "print one JSON object");
  status->callback([&] {
    a.exit_code = Dispatch(
        a, "status", [](const Args& x) { return CmdStatus(x.pid, x.sys.json); }, CmdStatusSystem);
  });
  auto* verify = app.add_subcommand("verify", "check every patched site against the stack");
  AddTarget(verify, a, true);
  verify->add_flag("--json", a.sys.json, "print one JSON object");
  verify->callback([&] {
    a.exit_code = Dispatch(
        a, "verify", [](const Args& x) { return CmdVerify(x.pid, x.sys.json); }, CmdVerifySystem);
  });
  auto* recover =
      app.add_subcommand("recover", "finish an interrupted apply or revert from its journal");
  AddTarget(recover, a, true);
  recover->add_flag("--json", a.sys.json, "--system: print one JSON object");
  recover->callback([&] {
    a.exit_code = Dispatch(
        a, "recover", [](const Args& x) { return CmdRecover(x.pid); }, CmdRecoverSystem);
  });
}

}  // namespace
}  // namespace patchlab::hotpatch

int main(int argc, char** argv) {
  using namespace patchlab;
  using namespace patchlab::hotpatch;
  CLI::App app{"hotpatch: live-patch running x86-64 Linux processes", "hotpatch"};
  app.set_version_flag("--version", fmt::format("hotpatch {} ({})", Version(), GitDescribe()));
  app.require_subcommand(1);
  app.add_option("--log", "log levels, e.g. info,patchcore=debug")
      ->each([](const std::string& spec) {
        if (auto st = SetLogSpec(spec); !st) {
          throw CLI::ValidationError("--log", st.error().ToString());
        }
      });
  Args args;
  auto* keygen = app.add_subcommand("keygen", "write an Ed25519 key pair");
  keygen->add_option("--out", args.keygen_out, "folder for patch.key and patch.pub")->required();
  keygen->callback([&] { args.exit_code = CmdKeygen(args.keygen_out); });
  AddPack(app, args);
  AddApply(app, args);
  AddRevert(app, args);
  AddReaders(app, args);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  return args.exit_code;
}
