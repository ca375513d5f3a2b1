// patchlab run: scenarios in VMs (or on this host), patches applied live under
// load, every cell recorded in the compatibility database.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "harness/lab/runner.h"
#include "harness/lab/scenario.h"
#include "harness/vm/image_store.h"
#include "metrics/policy.h"
#include "tools/patchlab/commands.h"

namespace patchlab::cli {
namespace {

struct RunArgs {
  std::vector<std::string> scenarios;
  std::string db = "patchlab.db";
  int jobs = 1;
  bool jobs_given = false;  // -j/--jobs on the command line (even -j 1)
  std::vector<std::string> images;
  std::vector<std::string> cpus;
  std::string out = "out";
  bool json = false;
  int64_t resume = 0;
  std::string backend = "qemu";
  std::vector<std::string> connect;  // libvirt hosts
  int per_host = 1;
  std::string label;
  std::string key_dir;
  std::string recipes;
  bool rings = false;
  std::string policy;
  bool no_native_check = false;
};

std::atomic<harness::Runner*> g_running{nullptr};

void OnInterrupt(int) {
  // Only an atomic store: safe in a signal handler.
  if (harness::Runner* r = g_running.load()) r->Cancel();
}

std::string Duration(double s) {
  if (s < 0) return "?";
  int t = static_cast<int>(s + 0.5);
  return t >= 60 ? fmt::format("{}m{:02}s", t / 60, t % 60) : fmt::format("{}s", t);
}

std::string CellLine(const harness::CellOutcome& c) {
  const auto& r = c.result;
  std::string line = fmt::format("{}: {}{}", r.key.ToString(), metrics::VerdictName(r.verdict),
                                 c.met_expectation ? " (as expected)" : " (NOT as expected)");
  if (!c.met_expectation) {
    for (const auto& u : c.unmet) line += "\n    expectation: " + u;
    for (const auto& reason : r.reasons) line += "\n    reason: " + reason;
  }
  return line;
}

// A progress bar on a terminal; one plain line per finished cell otherwise.
class ProgressPrinter {
 public:
  explicit ProgressPrinter(bool quiet) : tty_(!quiet && ::isatty(STDERR_FILENO)), quiet_(quiet) {}
  void operator()(const harness::RunProgress& p) {
    if (p.finished != nullptr && !quiet_) {
      if (tty_) std::fprintf(stderr, "\r\033[K");
      std::fprintf(stderr, "[%d/%d] %s\n", p.done, p.total, CellLine(*p.finished).c_str());
    }
    if (tty_) {
      constexpr int kWidth = 30;
      int filled = p.total > 0 ? p.done * kWidth / p.total : 0;
      std::fprintf(stderr, "\r\033[K[%s%s] %d/%d done, %d running, %d failed, ETA %s",
                   std::string(filled, '#').c_str(), std::string(kWidth - filled, '.').c_str(),
                   p.done, p.total, p.running, p.failed, Duration(p.eta_s).c_str());
      if (p.done == p.total) std::fprintf(stderr, "\n");
    }
    std::fflush(stderr);
  }

 private:
  bool tty_;
  bool quiet_;
};

int RunCommand(const RunArgs& a, const std::string& command_line) {
  auto scenarios = harness::LoadScenarios(a.scenarios);
  if (!scenarios) {
    std::fprintf(stderr, "patchlab run: %s\n", scenarios.error().ToString().c_str());
    return 2;
  }
  harness::RunnerOptions o;
  o.db = a.db;
  o.out = a.out;
  o.jobs = a.jobs;
  o.images = a.images;
  o.cpus = a.cpus;
  if (a.resume > 0) o.resume = a.resume;
  o.backend = a.backend == "host" ? harness::RunnerBackend::kHost : harness::RunnerBackend::kQemu;
  if (a.backend == "libvirt") {
    if (a.connect.empty()) {
      std::fprintf(stderr, "patchlab run: --backend libvirt needs at least one --connect URI\n");
      return 2;
    }
    o.backend = harness::RunnerBackend::kLibvirt;
    o.connect = a.connect;
    o.per_host = a.per_host;
    // Without --jobs, fill every host's slots; an explicit -j (even -j 1) wins.
    if (!a.jobs_given) o.jobs = static_cast<int>(a.connect.size()) * a.per_host;
    std::fprintf(stderr,
                 "patchlab run: libvirt: %zu host(s) x %d VM(s) each; %d cell(s) at a time%s\n",
                 a.connect.size(), a.per_host, o.jobs, a.jobs_given ? " (--jobs)" : "");
  } else if (!a.connect.empty()) {
    std::fprintf(stderr, "patchlab run: --connect goes with --backend libvirt\n");
    return 2;
  }
  o.hotpatch = harness::LocateLabBinaries().hotpatch;
  if (o.hotpatch.empty()) {
    std::fprintf(stderr,
                 "patchlab run: cannot find the hotpatch program (beside patchlab or in PATH)\n");
    return 3;
  }
  o.key_dir = a.key_dir;
  o.native_check = !a.no_native_check;
  if (!a.recipes.empty()) {
    o.recipes = a.recipes;
  } else if (const char* env = std::getenv("PATCHLAB_RECIPES"); env != nullptr && *env != '\0') {
    o.recipes = env;
  } else {
    o.recipes = "vm-images/images.yaml";
  }
  o.label = a.label;
  o.args = command_line;
  metrics::Policy policy = metrics::DefaultPolicy();
  if (!a.policy.empty()) {
    auto loaded = metrics::LoadPolicy(a.policy);
    if (!loaded) {
      std::fprintf(stderr, "patchlab run: %s\n", loaded.error().ToString().c_str());
      return 2;
    }
    policy = std::move(*loaded);
  }
  o.rings = a.rings;
  o.policy = &policy;

  harness::Runner runner(o);
  g_running = &runner;
  struct sigaction sa {};
  sa.sa_handler = OnInterrupt;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  ProgressPrinter printer(a.json);
  auto report = runner.Run(*scenarios, [&](const harness::RunProgress& p) { printer(p); });
  g_running = nullptr;
  if (!report) {
    std::fprintf(stderr, "patchlab run: %s\n", report.error().ToString().c_str());
    return report.error().code() == ErrorCode::kInfra ? 3 : 2;
  }
  int rc = report->ExitCode();
  for (const auto& stop : report->ring_stops)
    std::fprintf(stderr, "patchlab run: %s\n", stop.c_str());
  if (a.json) {
    nlohmann::json j;
    j["run_id"] = report->run_id;
    j["exit_code"] = rc;
    j["cancelled"] = report->cancelled;
    j["ring_stops"] = report->ring_stops;
    j["cells"] = nlohmann::json::array();
    for (const auto& c : report->cells) j["cells"].push_back(harness::CellOutcomeJson(c));
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    int met = 0;
    for (const auto& c : report->cells) met += c.met_expectation ? 1 : 0;
    std::printf("run %lld: %d of %zu cells met their expectation%s; database %s, artefacts %s\n",
                static_cast<long long>(report->run_id), met, report->cells.size(),
                report->cancelled ? " (interrupted: finish with --resume)" : "", a.db.c_str(),
                a.out.c_str());
  }
  return rc;
}

}  // namespace

void RegisterRunCommand(CLI::App& app, CommandContext& ctx) {
  auto args = std::make_shared<RunArgs>();
  CLI::App* sub =
      app.add_subcommand("run", "run scenarios: boot VMs, apply patches live under load");
  sub->footer(
      "Exit codes: 0 every cell met its scenario's expect:, 1 some cell did not, 2 usage error or\n"
      "invalid scenario, 3 only infrastructure failures kept cells from running.");
  sub->add_option("scenarios", args->scenarios, "scenario.yaml files or folders holding them")
      ->required();
  sub->add_option("--db", args->db, "compatibility database (SQLite)")->capture_default_str();
  CLI::Option* jobs =
      sub->add_option("--jobs,-j", args->jobs,
                      "cells run in parallel (libvirt backend: default hosts x --per-host)")
          ->check(CLI::Range(1, 64))
          ->capture_default_str();
  sub->add_option("--images", args->images, "only these images")->delimiter(',');
  sub->add_option("--cpus", args->cpus, "only these QEMU CPU models")->delimiter(',');
  sub->add_option("--out", args->out, "artefacts folder (logs, figures, build products)")
      ->capture_default_str();
  sub->add_flag("--json", args->json, "print one JSON object with every cell on stdout");
  sub->add_option("--resume", args->resume, "finish an interrupted run: only its missing cells")
      ->check(CLI::PositiveNumber);
  sub->add_option("--backend", args->backend,
                  "qemu (reference VMs), libvirt (VMs on the --connect hosts) or host (this "
                  "machine's processes)")
      ->check(CLI::IsMember({"qemu", "libvirt", "host"}))
      ->capture_default_str();
  sub->add_option("--connect,-c", args->connect,
                  "libvirt backend: a host's URI, repeatable (e.g. qemu+ssh://host-a/system); see "
                  "docs/fleet.md");
  sub->add_option("--per-host", args->per_host, "libvirt backend: VMs at once on each host")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  sub->add_flag("--rings", args->rings,
                "run the policy's rollout rings in order; a patch the gate rejects on a ring goes "
                "no further");
  sub->add_option("--policy", args->policy,
                  "the policy cells are judged under (a scenario's limits only tighten it) and "
                  "its rings (default: the built-in policy)");
  sub->add_flag("--no-native-check", args->no_native_check,
                "do not measure the VM cells' targets and patches natively on this host for the "
                "cross-check of their CPU figures (docs/lab.md)");
  sub->add_option("--label", args->label, "a tag stored with the run (nightly, pre-release, ...)");
  sub->add_option("--key-dir", args->key_dir,
                  "the lab's signing key folder (default: $PATCHLAB_HOME/keys)");
  sub->add_option("--recipes", args->recipes,
                  "image recipes (default: $PATCHLAB_RECIPES or vm-images/images.yaml)");
  sub->callback([&ctx, args, sub, jobs] {
    args->jobs_given = jobs->count() > 0;
    std::string line = "run";
    for (const auto& s : args->scenarios) line += " " + s;
    for (const auto* opt : sub->get_options()) {
      if (opt->count() == 0 || opt->get_lnames().empty()) continue;
      line += " --" + opt->get_lnames()[0];
      for (const auto& v : opt->results()) line += " " + v;
    }
    ctx.exit_code = RunCommand(*args, line);
  });
}

}  // namespace patchlab::cli
