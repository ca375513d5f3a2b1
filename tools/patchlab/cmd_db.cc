// The compatibility database's subcommands: compat, runs, history, gate,
// report and regressions. Exit codes: 0 success (gate: may ship; regressions:
// none), 1 gate rejects / regressions found, 2 usage or input error (bad
// policy, unreadable database), 3 not enough data (gate) / no baseline run.
// Every query opens the database read-only (CompatDb::OpenReadOnly), so reports
// can be made straight from read-only media; only `runs --set-label` writes.
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "base/file_util.h"
#include "metrics/app_summary.h"
#include "metrics/compat_db.h"
#include "metrics/gate.h"
#include "metrics/json_export.h"
#include "metrics/policy.h"
#include "metrics/regressions.h"
#include "metrics/report.h"
#include "tools/patchlab/commands.h"

namespace patchlab::cli {
namespace {

using namespace patchlab::metrics;

constexpr int kExitError = 2;

int Report(const Error& e) {
  std::fprintf(stderr, "patchlab: %s\n", e.ToString().c_str());
  return kExitError;
}

void PrintJson(const nlohmann::json& j) { std::printf("%s\n", j.dump(2).c_str()); }

// Columns padded to their widest cell, for terminals.
void PrintTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()), 0);
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    std::printf("%s\n", line.c_str());
  }
}

std::string Opt(const std::optional<double>& v, double scale, const char* format) {
  return v ? fmt::format(fmt::runtime(format), *v * scale) : "-";
}

std::vector<std::string> CellRow(const CellResult& c) {
  std::string cpu = c.cpu_overhead_pct
                        ? fmt::format("{:.2f} [{:.2f},{:.2f}]", c.cpu_overhead_pct->value,
                                      c.cpu_overhead_pct->low, c.cpu_overhead_pct->high)
                        : "-";
  return {c.key.scenario,
          c.key.patch_id,
          c.key.image,
          c.key.cpu,
          c.key.workload,
          std::string(VerdictName(c.verdict)),
          std::string(ApplyResultName(c.apply)),
          std::to_string(c.TotalCrashes()),
          Opt(c.pause_median_us, 1e-3, "{:.2f}"),
          cpu,
          Opt(c.mem_overhead_kib, 1.0 / 1024, "{:.2f}"),
          std::string(SemanticVerdictName(c.semantic)),
          std::to_string(c.run_id)};
}

const std::vector<std::string> kCellHeader = {
    "SCENARIO", "PATCH",    "IMAGE",        "CPU",     "WORKLOAD", "VERDICT", "APPLY",
    "CRASHES",  "PAUSE_MS", "CPU_%[95%CI]", "MEM_MIB", "SEMANTIC", "RUN"};

Result<Policy> PolicyFrom(const std::string& file) {
  if (file.empty()) return DefaultPolicy();
  return LoadPolicy(file);
}

// Read-only, so that reports work straight from read-only media; a file too
// old to read without migrating is migrated in place when it can be written.
Result<CompatDb> OpenForQueries(const std::string& path) {
  auto db = CompatDb::OpenReadOnly(path);
  if (!db && db.error().code() == ErrorCode::kRefused) return CompatDb::OpenExisting(path);
  return db;
}

struct DbOption {
  std::string path = kDefaultDbFile;
};

void AddDb(CLI::App* sub, DbOption& db) {
  sub->add_option("--db", db.path, "compatibility database file")->capture_default_str();
}

void RegisterCompat(CLI::App& app, CommandContext& ctx) {
  struct Args {
    DbOption db;
    std::string patch;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* sub =
      app.add_subcommand("compat", "the compatibility matrix of a patch: image x CPU x workload");
  sub->add_option("PATCH_ID", args->patch, "patch id")->required();
  AddDb(sub, args->db);
  sub->add_flag("--json", args->json, "print JSON");
  sub->callback([&ctx, args] {
    auto db = OpenForQueries(args->db.path);
    if (!db) return void(ctx.exit_code = Report(db.error()));
    auto cells = db->LatestCellsOfPatch(args->patch);
    if (!cells) return void(ctx.exit_code = Report(cells.error()));
    if (args->json) {
      nlohmann::json out = {{"patch_id", args->patch},
                            {"cells", nlohmann::json::array()},
                            {"applications", nlohmann::json::array()}};
      for (const CellResult& c : *cells) out["cells"].push_back(ToJson(c));
      for (const metrics::AppSummary& a : metrics::SummarizeByApplication(*cells)) {
        out["applications"].push_back(metrics::ToJson(a));
      }
      PrintJson(out);
    } else if (cells->empty()) {
      std::printf("no results recorded for patch %s in %s\n", args->patch.c_str(),
                  args->db.path.c_str());
    } else {
      std::vector<std::vector<std::string>> rows = {kCellHeader};
      for (const CellResult& c : *cells) rows.push_back(CellRow(c));
      PrintTable(rows);
      // By application: the answer a release manager asks ("nginx ok, redis crashes").
      std::printf("\n%s: %s\n", args->patch.c_str(),
                  metrics::AppSummaryLine(metrics::SummarizeByApplication(*cells)).c_str());
    }
    ctx.exit_code = 0;
  });
}

void RegisterRuns(CLI::App& app, CommandContext& ctx) {
  struct Args {
    DbOption db;
    bool json = false;
    bool ids = false;
    std::string label;
    int limit = 0;
    int64_t set_label_run = 0;
    std::string set_label;
  };
  auto args = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("runs", "list lab runs, newest first");
  AddDb(sub, args->db);
  sub->add_flag("--json", args->json, "print JSON");
  sub->add_flag("--ids", args->ids, "print only the run ids, one per line (for scripts)");
  sub->add_option("--label", args->label, "only runs with this label");
  sub->add_option("--limit", args->limit, "at most this many runs")->check(CLI::NonNegativeNumber);
  auto* set =
      sub->add_option("--set-label", args->set_label, "give run --run this label (e.g. nightly)");
  sub->add_option("--run", args->set_label_run, "the run --set-label applies to")->needs(set);
  set->needs("--run");
  sub->callback([&ctx, args] {
    // Only --set-label writes: listing works on a read-only file or medium.
    auto db = args->set_label_run != 0 ? CompatDb::OpenExisting(args->db.path)
                                       : OpenForQueries(args->db.path);
    if (!db) return void(ctx.exit_code = Report(db.error()));
    if (args->set_label_run != 0) {
      if (auto s = db->SetRunLabel(args->set_label_run, args->set_label); !s) {
        return void(ctx.exit_code = Report(s.error()));
      }
    }
    auto runs = db->ListRuns(RunFilter{args->label, args->limit});
    if (!runs) return void(ctx.exit_code = Report(runs.error()));
    if (args->ids) {
      for (const RunInfo& r : *runs) std::printf("%lld\n", static_cast<long long>(r.id));
    } else if (args->json) {
      nlohmann::json out = nlohmann::json::array();
      for (const RunInfo& r : *runs) {
        nlohmann::json j = ToJson(r);
        auto missing = db->MissingCells(r.id);
        j["cells_missing"] = missing ? static_cast<int64_t>(missing->size()) : -1;
        out.push_back(j);
      }
      PrintJson(out);
    } else {
      std::vector<std::vector<std::string>> rows = {{"RUN", "STATUS", "STARTED", "FINISHED", "HOST",
                                                     "VERSION", "LABEL", "CELLS", "MISSING",
                                                     "NOTE"}};
      for (const RunInfo& r : *runs) {
        auto cells = db->CellsOfRun(r.id);
        auto missing = db->MissingCells(r.id);
        rows.push_back({std::to_string(r.id), std::string(RunStatusName(r.status)),
                        IsoTime(r.started_at), r.finished_at ? IsoTime(r.finished_at) : "-", r.host,
                        r.git_revision, r.label, cells ? std::to_string(cells->size()) : "?",
                        missing ? std::to_string(missing->size()) : "?", r.note});
      }
      PrintTable(rows);
    }
    ctx.exit_code = 0;
  });
}

void RegisterHistory(CLI::App& app, CommandContext& ctx) {
  struct Args {
    DbOption db;
    std::string image;
    std::string patch;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("history", "results on an image over time, oldest first");
  sub->add_option("--image", args->image, "image name")->required();
  sub->add_option("--patch", args->patch, "only this patch");
  AddDb(sub, args->db);
  sub->add_flag("--json", args->json, "print JSON");
  sub->callback([&ctx, args] {
    auto db = OpenForQueries(args->db.path);
    if (!db) return void(ctx.exit_code = Report(db.error()));
    auto cells = db->History(args->image, args->patch);
    if (!cells) return void(ctx.exit_code = Report(cells.error()));
    if (args->json) {
      nlohmann::json out = {
          {"image", args->image}, {"patch_id", args->patch}, {"cells", nlohmann::json::array()}};
      for (const CellResult& c : *cells) out["cells"].push_back(ToJson(c));
      PrintJson(out);
    } else {
      std::vector<std::vector<std::string>> rows = {kCellHeader};
      rows[0].push_back("RECORDED");
      for (const CellResult& c : *cells) {
        rows.push_back(CellRow(c));
        rows.back().push_back(IsoTime(c.recorded_at));
      }
      PrintTable(rows);
    }
    ctx.exit_code = 0;
  });
}

void RegisterGate(CLI::App& app, CommandContext& ctx) {
  struct Args {
    DbOption db;
    std::string patch;
    std::string policy;
    std::string ring;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand(
      "gate",
      "may this patch ship? exit 0 yes, 1 no (every reason listed), 2 usage, 3 not enough data");
  sub->add_option("PATCH_ID", args->patch, "patch id")->required();
  sub->add_option("--policy", args->policy, "policy YAML (default: the built-in policy)");
  sub->add_option("--ring", args->ring, "judge only this ring's images");
  AddDb(sub, args->db);
  sub->add_flag("--json", args->json, "print the decision as JSON");
  sub->callback([&ctx, args] {
    auto policy = PolicyFrom(args->policy);
    if (!policy) return void(ctx.exit_code = Report(policy.error()));
    auto db = OpenForQueries(args->db.path);
    if (!db) return void(ctx.exit_code = Report(db.error()));
    auto decision = args->ring.empty() ? EvaluateGate(*db, args->patch, *policy)
                                       : EvaluateRing(*db, args->patch, args->ring, *policy);
    if (!decision) return void(ctx.exit_code = Report(decision.error()));
    if (args->json) {
      PrintJson(ToJson(*decision));
    } else {
      std::printf("%s", decision->Explain().c_str());
    }
    ctx.exit_code = decision->ExitCode();
  });
}

void RegisterReport(CLI::App& app, CommandContext& ctx) {
  struct Args {
    DbOption db;
    int64_t run = 0;
    std::string patch;
    std::string format;
    std::string output;
    std::string policy;
  };
  auto args = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("report",
                                     "write a report of a run or a patch: html, junit, md, json, "
                                     "openmetrics (default: the newest run)");
  auto* run = sub->add_option("--run", args->run, "the run to report");
  auto* patch =
      sub->add_option("--patch", args->patch, "the patch to report (newest result of each cell)");
  run->excludes(patch);
  sub->add_option("--format", args->format, "html, junit, md, json or openmetrics")
      ->required()
      ->check(CLI::IsMember({"html", "junit", "md", "markdown", "json", "openmetrics"}));
  sub->add_option("-o,--output", args->output, "output file ('-': standard output)")->required();
  sub->add_option("--policy", args->policy,
                  "policy YAML for the verdicts (default: the built-in policy)");
  AddDb(sub, args->db);
  sub->callback([&ctx, args] {
    auto format = ParseReportFormat(args->format);
    if (!format) return void(ctx.exit_code = Report(format.error()));
    auto policy = PolicyFrom(args->policy);
    if (!policy) return void(ctx.exit_code = Report(policy.error()));
    auto db = OpenForQueries(args->db.path);
    if (!db) return void(ctx.exit_code = Report(db.error()));
    Result<ReportData> data = Fail(ErrorCode::kInternal, "unset");
    if (!args->patch.empty()) {
      data = GatherPatchReport(*db, args->patch, *policy);
    } else {
      int64_t run = args->run;
      if (run == 0) {
        auto latest = db->LatestRun();
        if (!latest) return void(ctx.exit_code = Report(latest.error()));
        if (!*latest) {
          return void(ctx.exit_code =
                          Report(Error(ErrorCode::kNotFound,
                                       fmt::format("{}: no run recorded yet", args->db.path))));
        }
        run = (*latest)->id;
      }
      data = GatherRunReport(*db, run, *policy);
    }
    if (!data) return void(ctx.exit_code = Report(data.error()));
    std::string text = RenderReport(*data, *format);
    if (args->output == "-") {
      std::fwrite(text.data(), 1, text.size(), stdout);
    } else if (auto s = WriteFileAtomic(args->output, text); !s) {
      return void(ctx.exit_code = Report(s.error()));
    } else {
      std::fprintf(stderr, "patchlab report: wrote %s (%s, %zu cells)\n", args->output.c_str(),
                   std::string(ReportFormatName(*format)).c_str(), data->cells.size());
    }
    ctx.exit_code = 0;
  });
}

void RegisterRegressions(CLI::App& app, CommandContext& ctx) {
  struct Args {
    DbOption db;
    int64_t run = 0;
    int64_t since = 0;
    std::string label;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("regressions",
                                     "compare a run with an earlier one: exit 0 none, 1 "
                                     "regressions, 2 usage, 3 no earlier run to compare with");
  sub->add_option("--run", args->run, "the run to check (default: the newest)");
  auto* since = sub->add_option("--since-run", args->since, "the baseline run");
  sub->add_option(
         "--label", args->label,
         "baseline: the newest earlier run with this label (default: the newest earlier run)")
      ->excludes(since);
  AddDb(sub, args->db);
  sub->add_flag("--json", args->json, "print JSON");
  sub->callback([&ctx, args] {
    auto db = OpenForQueries(args->db.path);
    if (!db) return void(ctx.exit_code = Report(db.error()));
    int64_t run = args->run;
    if (run == 0) {
      auto latest = db->LatestRun();
      if (!latest) return void(ctx.exit_code = Report(latest.error()));
      if (!*latest) {
        std::printf("no run recorded in %s: nothing to compare\n", args->db.path.c_str());
        return void(ctx.exit_code = 3);
      }
      run = (*latest)->id;
    }
    int64_t baseline = args->since;
    if (baseline == 0) {
      auto earlier = db->LatestRun(args->label, run);
      if (!earlier) return void(ctx.exit_code = Report(earlier.error()));
      if (!*earlier) {
        std::printf("no run before run %lld%s: nothing to compare with\n",
                    static_cast<long long>(run),
                    args->label.empty() ? "" : fmt::format(" labelled '{}'", args->label).c_str());
        return void(ctx.exit_code = 3);
      }
      baseline = (*earlier)->id;
    }
    auto report = FindRegressions(*db, baseline, run);
    if (!report) return void(ctx.exit_code = Report(report.error()));
    if (args->json) {
      nlohmann::json out = {{"run", report->run},
                            {"baseline_run", report->baseline_run},
                            {"cells_compared", report->cells_compared},
                            {"regressions", nlohmann::json::array()},
                            {"notes", report->notes}};
      for (const Regression& r : report->regressions) {
        out["regressions"].push_back({{"scenario", r.cell.scenario},
                                      {"patch_id", r.cell.patch_id},
                                      {"image", r.cell.image},
                                      {"cpu", r.cell.cpu},
                                      {"workload", r.cell.workload},
                                      {"kind", r.kind},
                                      {"message", r.message}});
      }
      PrintJson(out);
    } else {
      std::printf("%s", report->Explain().c_str());
    }
    ctx.exit_code = report->regressions.empty() ? 0 : 1;
  });
}

}  // namespace

void RegisterDbCommands(CLI::App& app, CommandContext& ctx) {
  RegisterCompat(app, ctx);
  RegisterRuns(app, ctx);
  RegisterHistory(app, ctx);
  RegisterGate(app, ctx);
  RegisterReport(app, ctx);
  RegisterRegressions(app, ctx);
}

}  // namespace patchlab::cli
