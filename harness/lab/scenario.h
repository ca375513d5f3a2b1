// Scenario: one test case of the lab, read from a scenario.yaml. It names a
// target program (built from C sources beside the file), one or more patches
// for it (built into signed packages), the reference images and CPU models to
// run on, the workloads that load the target, how to measure, when to apply,
// the semantic check's section, what must hold (`expect`) and a mandatory
// timeout. scenarios/README.md documents every field.
//
// LoadScenario() validates strictly: an unknown key, a value of the wrong type,
// a missing required field or an impossible value fails with kParse and a
// message that starts with FILE:LINE:COL and names the field's dotted path
// ("workload.threads"). Nothing is half-loaded: on failure there is no Scenario.
//
// Thread-safety: a Scenario is a plain value; the functions are reentrant.
#pragma once

#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "emulator/checker.h"

namespace patchlab::harness {

// The outcome of one cell (and what a scenario expects of it).
enum class Verdict {
  kPass,             // applied live, no crash, correct results, within limits
  kFail,             // crashed, wrong results, rolled back, or a limit exceeded
  kNotHotpatchable,  // refused before any change: needs a restart instead
  kInfraError,       // the lab's machinery failed; says nothing about the patch
};
std::string_view VerdictName(Verdict verdict);  // "pass", "fail", "not-hotpatchable", "infra-error"
Result<Verdict> ParseVerdict(std::string_view name);

// The program a patch is for. Either built by the lab with the host compiler
// from sources in the scenario folder (it reports its own figures through
// labstats), or a real program the lab did not build (a Debian package's, or a
// prebuilt binary from the host), measured from outside: its processes' CPU
// from /proc, its work from a load generator or a check command.
struct TargetSpec {
  // Built: the output file name, the name the workload runs. Not built: the
  // absolute path of the program in the guest, whose processes are watched.
  std::string program;
  std::vector<std::string> sources;  // relative to the scenario folder; empty: not built
  std::vector<std::string> cflags;   // added after the defaults (-O2 -g -pthread)
  std::vector<std::string> libs;     // linker arguments, e.g. -lz
  std::string package;  // the Debian package `program` comes from (its version is recorded)
  // A prebuilt program on the host (absolute, or relative to the scenario
  // folder), copied into the guest at `program` with its ldd closure.
  std::string binary;
  std::string where;  // FILE:LINE:COL of `program`, for errors found in the guest

  bool Built() const { return !sources.empty(); }
};

struct FunctionMap {
  std::string old_name;  // in the patched module
  std::string new_name;  // in the patch object (same as old_name unless "old=new")
};

// Which processes a patch is applied to in a cell.
enum class PatchProcesses {
  kProgram,  // the target's: every process of target.program (its one process when built)
  kAll,      // every process in the guest that maps the patched module (hotpatch --system)
};

struct ExpectSpec {
  Verdict verdict = Verdict::kPass;
  std::optional<int> max_crashes;              // default: 0 for pass, unbounded otherwise
  std::optional<bool> overhead_flagged;        // whether the CPU limit must (not) be exceeded
  std::optional<std::string> reason_contains;  // a substring one reason must hold
  std::optional<std::string> semantic;         // expected semantic verdict, e.g. "pass"
};

struct PatchSpec {
  std::string id;
  uint32_t seq = 1;
  // The module whose functions are replaced: empty for the target program, or
  // an absolute path of a shared library as loaded in the guest (the image
  // carries the host's real Debian file, so the build-id matches).
  std::string module;
  std::vector<std::string> sources;  // relative to the scenario folder
  std::vector<std::string> cflags;
  std::vector<FunctionMap> functions;   // at least one
  std::vector<std::string> references;  // private target symbols the patch uses
  std::string replaces;                 // "", "all" or "ID,ID"
  // A prebuilt, signed patch package (relative to the scenario folder) and the
  // public key it verifies with: the user's own signing key, not the lab's.
  // When set, `sources` and `functions` are not used (the package has both).
  std::string package;
  std::string pubkey;
  // `processes: all` (real applications only): applied with `hotpatch apply
  // --system`, so a library patch reaches every process that maps the library.
  PatchProcesses processes = PatchProcesses::kProgram;
  // The patch's own `expect:` and `semantic:` (an entry of a patch list may
  // carry them): they replace the scenario's for this patch. nullopt: the
  // scenario's apply (ExpectOf, SemanticOf).
  std::optional<ExpectSpec> expect;
  std::optional<emulator::CheckOptions> semantic;
  std::string where;  // FILE:LINE:COL of the patch, for messages

  bool Prebuilt() const { return !package.empty(); }
};

// A command in the guest and where the scenario declares it (for errors found
// only when it runs: "scenario.yaml:31:7: workload.service.ready: ...").
struct GuestCommand {
  std::vector<std::string> argv;
  std::string where;  // FILE:LINE:COL: FIELD
};

// The target run as a service: started first, ready when the probe exits 0.
struct ServiceSpec {
  GuestCommand command;  // may daemonize; the target's processes are found by program
  GuestCommand ready;    // run until it exits 0, at most `ready_timeout`
  GuestCommand stop;     // empty: SIGTERM to every process of the target
  std::chrono::milliseconds ready_timeout{30000};
};

// A load generator run once per measured window, for the window's length
// ("{window_s}", "{window_ms}" in its argv).
struct LoadSpec {
  GuestCommand command;
  // ECMAScript regex over its output: each match adds its first capture group
  // (a count), or 1 when the regex has none. Its sum is the window's work.
  std::string work;
  // Percentile name -> regex whose first group is that latency in ms.
  std::vector<std::pair<std::string, std::string>> latency;
  std::string work_where;
};

// A correctness check run again and again in every window; a non-zero exit or
// output not matching `output` is a wrong result, and its output is kept.
struct CheckSpec {
  GuestCommand command;
  std::string output;  // ECMAScript regex searched in stdout; empty: exit 0 suffices
};

struct WorkloadSpec {
  std::string name;                  // "default" when the scenario has one workload
  std::vector<std::string> command;  // argv; "{threads}" is replaced by `threads` (built targets)
  // Targets the lab did not build: the service, and the load and/or the check.
  std::optional<ServiceSpec> service;
  std::optional<LoadSpec> load;
  std::optional<CheckSpec> check;
  std::vector<std::string> files;  // copied into the cell's guest folder before the service starts
  int threads = 1;
  std::chrono::milliseconds duration{0};  // how long the workload may run in all
  std::chrono::milliseconds warmup{0};    // before the first measured window
};

struct MeasureSpec {
  // Length of one measured window, on the guest's own clock (under an
  // instruction-counting guest: a fixed amount of guest work, whatever the host's load).
  std::chrono::milliseconds window{300};
  // Window pairs measured before the CPU figure is first judged (at least 12
  // for a 99.9% interval to resolve anything: metrics/overhead_rule.h), and the
  // most measured while its interval still straddles the limit.
  int alternations = 12;
  int max_alternations = 28;
};

enum class ApplyWhen {
  kAfterWarmup,  // after the warm-up and the first unpatched window
  kAtStart,      // as soon as the workload reports its first operation
};

struct ApplySpec {
  ApplyWhen when = ApplyWhen::kAfterWarmup;
  int repeat = 1;                           // apply/revert cycles under load, >= 1
  std::chrono::milliseconds timeout{2000};  // hotpatch apply --timeout
};

// Bounds a cell must keep to get the verdict pass. An overhead counts as over
// its bound only when its whole confidence interval is above it.
struct LimitsSpec {
  // Set only when the scenario sets it: it may tighten the policy's limit,
  // never loosen it (metrics::EffectiveCpuLimit).
  std::optional<double> cpu_overhead_pct;
  double mem_overhead_kib = 15.0 * 1024;
  double pause_us = 500000;  // the default gate policy's bound; TCG is slow
};

struct Scenario {
  std::filesystem::path file;  // the scenario.yaml
  std::filesystem::path dir;   // its folder: sources are relative to it
  std::string name;
  std::string description;
  TargetSpec target;
  std::vector<PatchSpec> patches;   // at least one
  std::vector<std::string> images;  // image names; empty: every image
  std::vector<std::string> cpus;    // QEMU CPU models; empty: each image's defaults
  int vcpus = 2;
  int memory_mib = 256;
  std::vector<WorkloadSpec> workloads;  // at least one
  MeasureSpec measure;
  ApplySpec apply;
  LimitsSpec limits;
  ExpectSpec expect;
  // The semantic checker's section (scenarios/README.md), parsed by
  // emulator::ParseSemanticSection; nullopt when absent. An `old`/`new` ELF
  // named like a build product (the target program, PATCH_ID.so) is replaced
  // by the runner with the file it built.
  std::optional<emulator::CheckOptions> semantic;
  std::chrono::milliseconds timeout{0};  // per cell, mandatory
};

// What must hold for `patch`'s cells: its own `expect:`, else the scenario's.
const ExpectSpec& ExpectOf(const Scenario& scenario, const PatchSpec& patch);
// The semantic check section for `patch`: its own, else the scenario's (which
// runs only for the patch whose object its `new` names); nullptr when neither.
const emulator::CheckOptions* SemanticOf(const Scenario& scenario, const PatchSpec& patch);

// Reads and validates `path` (a scenario.yaml, or a folder holding one).
Result<Scenario> LoadScenario(const std::filesystem::path& path);
// Validates `text` as if it were read from `file` (a scenario.yaml): errors
// name `file`, and sources are looked for beside it.
Result<Scenario> ParseScenario(const std::string& text, const std::filesystem::path& file);

// Every scenario named by `args`: a scenario.yaml, a folder holding one, or a
// folder whose subfolders hold them (sorted by name). Fails on the first
// invalid one (the error names its file:line:col) or when an argument names
// nothing; an empty `args` is an error too.
Result<std::vector<Scenario>> LoadScenarios(const std::vector<std::string>& args);

// "90s", "500ms", "2m", "1.5s" or a bare number of seconds. Fails on anything else.
Result<std::chrono::milliseconds> ParseDuration(std::string_view text);

}  // namespace patchlab::harness
