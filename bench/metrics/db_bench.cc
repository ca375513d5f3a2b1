// How much CompatDb costs over SQLite itself, measured in one run.
//
// BM_RecordCell_CompatDb records one cell the way the lab runner does (checks,
// replace, cell row, crash rows; one IMMEDIATE transaction, WAL, synchronous=FULL).
// BM_RecordCell_RawSqlite is the baseline: the same row, prepared once, inserted in
// its own transaction with the same journal settings. The ratio (CompatDb time /
// raw time) is printed at the end, for wall time (mostly the fsync) and for CPU
// time (what CompatDb adds). Goal: <= 3 — a cell takes seconds to measure, so
// recording must never be what limits the lab, and the extra checks must stay
// within a small multiple of the unavoidable fsync.
// BM_RenderHtml_Cells renders the HTML report of a run with N cells (cells/s).
#include <benchmark/benchmark.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include "metrics/compat_db.h"
#include "metrics/report.h"

namespace patchlab::metrics {
namespace {

std::filesystem::path ScratchFile(const char* name) {
  auto dir = std::filesystem::temp_directory_path() / fmt::format("patchlab-bench-{}", getpid());
  std::filesystem::create_directories(dir);
  auto file = dir / name;
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(file.string() + suffix);
  return file;
}

CellResult Cell(int64_t run, int i) {
  CellResult c;
  c.run_id = run;
  c.key = CellKey{"kv", "fix-1", i % 2 ? "deb12" : "alpine", fmt::format("cpu{}", i), "default"};
  c.verdict = Verdict::kPass;
  c.apply = ApplyResult::kApplied;
  c.pause_us = {900, 1000, 1100, 1200};
  c.cpu_overhead_pct = Estimate{0.5, 0.1, 0.9, 16};
  c.mem_overhead_kib = 2048;
  c.semantic = SemanticVerdict::kPass;
  c.crashes = {{CrashKind::kSegfault, i % 3}};
  c.reasons = {"applied; workload kept running"};
  c.artefacts = "out/run/cell";
  return c;
}

CompatDb Seeded(const std::filesystem::path& file, int64_t& run) {
  auto db = CompatDb::Open(file);
  if (!db) std::abort();
  if (!db->RecordPatch(PatchInfo{"fix-1", 1, "b", "h", "k"})) std::abort();
  for (const char* image : {"deb12", "alpine"}) {
    if (!db->RecordImage(ImageInfo{image, "6.1", {}, "h"})) std::abort();
  }
  run = *db->BeginRun({});
  return std::move(*db);
}

void BM_RecordCell_CompatDb(benchmark::State& state) {
  int64_t run = 0;
  CompatDb db = Seeded(ScratchFile("compat.db"), run);
  int i = 0;
  for (auto _ : state) {
    if (!db.RecordCell(Cell(run, i++))) state.SkipWithError("RecordCell failed");
  }
  state.counters["cells_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_RecordCell_CompatDb)->UseRealTime()->MinTime(2.0);

void BM_RecordCell_RawSqlite(benchmark::State& state) {
  auto file = ScratchFile("raw.db");
  sqlite3* db = nullptr;
  sqlite3_open(file.c_str(), &db);
  sqlite3_exec(
      db,
      "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
      "CREATE TABLE cells(run_id, scenario, patch_id, image, cpu, workload, verdict, apply_result, "
      "pause_us, cpu_overhead_pct, cpu_ci_low, cpu_ci_high, mem_overhead_kib, semantic, reasons, "
      "artefacts)",
      nullptr, nullptr, nullptr);
  sqlite3_stmt* insert = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO cells VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", -1, &insert,
                     nullptr);
  int i = 0;
  for (auto _ : state) {
    CellResult c = Cell(1, i++);
    sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
    sqlite3_reset(insert);
    sqlite3_bind_int64(insert, 1, c.run_id);
    int col = 2;
    for (const std::string& s :
         {c.key.scenario, c.key.patch_id, c.key.image, c.key.cpu, c.key.workload}) {
      sqlite3_bind_text(insert, col++, s.c_str(), -1, SQLITE_TRANSIENT);
    }
    sqlite3_bind_text(insert, 7, "pass", -1, SQLITE_STATIC);
    sqlite3_bind_text(insert, 8, "applied", -1, SQLITE_STATIC);
    sqlite3_bind_text(insert, 9, "[900,1000,1100,1200]", -1, SQLITE_STATIC);
    sqlite3_bind_double(insert, 10, c.cpu_overhead_pct->value);
    sqlite3_bind_double(insert, 11, c.cpu_overhead_pct->low);
    sqlite3_bind_double(insert, 12, c.cpu_overhead_pct->high);
    sqlite3_bind_double(insert, 13, *c.mem_overhead_kib);
    sqlite3_bind_text(insert, 14, "pass", -1, SQLITE_STATIC);
    sqlite3_bind_text(insert, 15, "[\"applied; workload kept running\"]", -1, SQLITE_STATIC);
    sqlite3_bind_text(insert, 16, c.artefacts.c_str(), -1, SQLITE_TRANSIENT);
    if (sqlite3_step(insert) != SQLITE_DONE) state.SkipWithError("insert failed");
    sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  }
  sqlite3_finalize(insert);
  sqlite3_close(db);
  state.counters["cells_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_RecordCell_RawSqlite)->UseRealTime()->MinTime(2.0);

void BM_RenderHtml_Cells(benchmark::State& state) {
  int64_t run = 0;
  CompatDb db = Seeded(ScratchFile("report.db"), run);
  for (int i = 0; i < state.range(0); ++i) {
    if (!db.RecordCell(Cell(run, i))) std::abort();
  }
  auto data = GatherRunReport(db, run, DefaultPolicy());
  if (!data) std::abort();
  size_t bytes = 0;
  for (auto _ : state) {
    std::string html = RenderHtml(*data);
    bytes = html.size();
    benchmark::DoNotOptimize(html);
  }
  state.counters["cells_per_s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * state.range(0)), benchmark::Counter::kIsRate);
  state.counters["html_bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_RenderHtml_Cells)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);

// Prints as usual and keeps each benchmark's real time for the ratio.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    // With --benchmark_repetitions the median aggregate wins over single repetitions.
    for (const Run& r : runs) {
      if (r.error_occurred) continue;
      std::string name = r.run_name.str();
      if (r.run_type == Run::RT_Aggregate && r.aggregate_name == "median") {
        times_[name] = r.GetAdjustedRealTime();
        cpu_times_[name] = r.GetAdjustedCPUTime();
        medians_.insert(name);
      } else if (r.run_type == Run::RT_Iteration && !medians_.contains(name)) {
        times_[name] = r.GetAdjustedRealTime();
        cpu_times_[name] = r.GetAdjustedCPUTime();
      }
    }
  }
  std::map<std::string, double> times_;
  std::map<std::string, double> cpu_times_;  // the process's own work: fsync waits excluded
  std::set<std::string> medians_;
};

}  // namespace
}  // namespace patchlab::metrics

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  patchlab::metrics::RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  // The wall time is mostly the commit's fsync, which a shared disk makes noisy;
  // the CPU time is what CompatDb itself adds.
  for (const auto* times : {&reporter.times_, &reporter.cpu_times_}) {
    auto a = times->find("BM_RecordCell_CompatDb/min_time:2.000/real_time");
    auto b = times->find("BM_RecordCell_RawSqlite/min_time:2.000/real_time");
    if (a != times->end() && b != times->end() && b->second > 0) {
      std::printf("RecordCell %s: CompatDb %.1f us, raw SQLite %.1f us per cell, ratio %.2f%s\n",
                  times == &reporter.times_ ? "wall" : "CPU", a->second / 1000, b->second / 1000,
                  a->second / b->second, times == &reporter.times_ ? " (goal <= 3)" : "");
    }
  }
  std::filesystem::remove_all(std::filesystem::temp_directory_path() /
                              fmt::format("patchlab-bench-{}", getpid()));
  benchmark::Shutdown();
  return 0;
}
