// `patchlab check`: the semantic check of an old function against a new one
// under Unicorn (emulator/checker.h), from flags or a scenario's `semantic:`
// section. Exit codes: 0 equivalent or expected-divergence, 1 diverges /
// new-crash / new-hang, 2 usage or setup error, 3 inconclusive.
#include <cstdio>

#include "emulator/checker.h"
#include "emulator/semantic_spec.h"
#include "tools/patchlab/commands.h"

namespace patchlab::cli {
namespace {

struct CheckFlags {
  std::string scenario;
  std::string old_fn, new_fn, sig, corpus, cpu;
  uint64_t inputs = 0, seed = 0, max_blocks = 0, count_every = 0;
  std::vector<std::string> expects;
  bool json = false, listing = false, deny_syscalls = false;
};

int RunCheckCommand(const CheckFlags& f, const CLI::App& sub) {
  using emulator::CheckOptions;
  CheckOptions o;
  auto usage = [](const std::string& msg) {
    std::fprintf(stderr, "patchlab check: %s\n", msg.c_str());
    return 2;
  };
  if (!f.scenario.empty()) {
    if (!f.old_fn.empty() || !f.new_fn.empty())
      return usage("give either SCENARIO.yaml or --old/--new, not both");
    auto spec = emulator::LoadSemanticSpec(f.scenario);
    if (!spec) return usage(spec.error().ToString());
    o = *spec;
  } else {
    if (f.old_fn.empty() || f.new_fn.empty())
      return usage("--old ELF:SYMBOL and --new ELF:SYMBOL are required (or SCENARIO.yaml)");
    auto old_ref = emulator::FunctionRef::Parse(f.old_fn);
    if (!old_ref) return usage("--old " + old_ref.error().ToString());
    auto new_ref = emulator::FunctionRef::Parse(f.new_fn);
    if (!new_ref) return usage("--new " + new_ref.error().ToString());
    o.old_fn = *old_ref;
    o.new_fn = *new_ref;
  }
  // Flags given next to a scenario override its values.
  if (sub.count("--sig")) o.signature = f.sig;
  if (sub.count("--inputs")) o.inputs = f.inputs;
  if (sub.count("--seed")) o.seed = f.seed;
  if (sub.count("--corpus")) o.corpus_dir = f.corpus;
  if (sub.count("--max-blocks")) o.max_blocks = f.max_blocks;
  if (sub.count("--count-every")) o.count_every = f.count_every;
  if (sub.count("--cpu")) o.cpu = f.cpu;
  if (f.deny_syscalls) o.deny_syscalls = true;
  if (!f.expects.empty()) o.expects = f.expects;
  o.listing = f.listing;
  if (o.inputs == 0) return usage("--inputs must be at least 1");
  if (o.count_every == 0) return usage("--count-every must be at least 1");

  auto result = emulator::RunCheck(o);
  if (!result) return usage(result.error().ToString());
  std::string out = f.json ? emulator::FormatJson(*result) + "\n" : emulator::FormatText(*result);
  std::fwrite(out.data(), 1, out.size(), stdout);
  return emulator::VerdictExitCode(result->verdict);
}

}  // namespace

void RegisterCheckCommand(CLI::App& app, CommandContext& ctx) {
  auto flags = std::make_shared<CheckFlags>();
  CLI::App* sub =
      app.add_subcommand("check",
                         "semantic check of an old function against a new one under Unicorn.\n"
                         "Exit: 0 equivalent/expected-divergence, 1 diverges/new-crash/new-hang, 2 "
                         "usage, 3 inconclusive");
  sub->add_option("scenario", flags->scenario,
                  "scenario file whose `semantic:` section names the check");
  sub->add_option("--old", flags->old_fn, "old function: ELF:SYMBOL (the target)");
  sub->add_option("--new", flags->new_fn,
                  "new function: ELF:SYMBOL (patch object, or the same ELF)");
  sub->add_option(
      "--sig", flags->sig,
      "C prototype, e.g. \"int parse(const char *buf, size_t len, struct out *o /* 24 bytes */)\"; "
      "default: from DWARF");
  sub->add_option("--inputs", flags->inputs, "input pairs to run (default 10000)");
  sub->add_option("--seed", flags->seed, "seed of the input generator (default 1)");
  sub->add_option(
         "--expect", flags->expects,
         "an expected divergence, e.g. \"ret == 0 when len > 16\" (repeatable; see docs/check.md)")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  sub->add_option("--corpus", flags->corpus, "folder of input files for the first buffer argument");
  sub->add_option("--max-blocks", flags->max_blocks,
                  "basic blocks before a run counts as a hang (default 1000000)");
  sub->add_option("--count-every", flags->count_every,
                  "count instructions on every Nth input (default 32; 1: all, slower)");
  sub->add_option("--cpu", flags->cpu,
                  "CPU model IFUNC resolvers pick for: x86-64 (default) or x86-64-v2");
  sub->add_flag("--deny-syscalls", flags->deny_syscalls,
                "refuse system calls the deterministic layer does not answer with -ENOSYS "
                "(compared) instead of inconclusive");
  sub->add_flag("--json", flags->json, "one JSON object instead of text");
  sub->add_flag("--listing", flags->listing, "side-by-side disassembly of both functions");
  sub->callback([flags, sub, &ctx] { ctx.exit_code = RunCheckCommand(*flags, *sub); });
}

}  // namespace patchlab::cli
