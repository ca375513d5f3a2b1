// The database subcommands through the real `patchlab` binary: exit codes that
// scripts and CI rely on (gate 0/1/2/3, regressions 0/1/3), every report format
// written, and --json output that parses.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "base/file_util.h"
#include "base/subprocess.h"
#include "tests/metrics/test_util.h"
#include "tests/support/status_matchers.h"

using ::testing::HasSubstr;

namespace patchlab::metrics {
namespace {

using testing::GoodCell;
using testing::ReadOnlyMedia;
using testing::RecordShowcaseRun;
using testing::ScratchDir;

class PatchlabDb : public ::testing::Test {
 protected:
  void SetUp() override {
    db_path_ = (dir_ / "lab.db").string();
    auto db = CompatDb::Open(db_path_);
    ASSERT_OK(db);
    showcase_run_ = RecordShowcaseRun(*db);
    // fix-2 passes everywhere, in a second run.
    ASSERT_TRUE(db->RecordPatch(PatchInfo{"fix-2", 2, "abcd", "ee11", "lab-key"}).has_value());
    good_run_ = *db->BeginRun(RunInfo{.label = "nightly"});
    for (const char* image : {"deb12", "deb12-old"}) {
      ASSERT_TRUE(
          db->RecordCell(GoodCell(good_run_, image, "qemu64", "default", "fix-2")).has_value());
    }
    ASSERT_TRUE(db->FinishRun(good_run_, RunStatus::kComplete).has_value());
  }

  SubprocessResult Patchlab(std::vector<std::string> args, bool with_db = true) {
    SubprocessOptions o;
    o.argv = {PATCHLAB_BIN};
    o.argv.insert(o.argv.end(), args.begin(), args.end());
    if (with_db) {
      o.argv.push_back("--db");
      o.argv.push_back(db_path_);
    }
    o.timeout = std::chrono::seconds(60);
    auto r = RunSubprocess(o);
    EXPECT_OK(r);
    return r.value_or(SubprocessResult{});
  }

  ScratchDir dir_;
  std::string db_path_;
  int64_t showcase_run_ = 0;
  int64_t good_run_ = 0;
};

TEST_F(PatchlabDb, GateExitCodes) {
  auto ship = Patchlab({"gate", "fix-2"});
  EXPECT_EQ(ship.status.code, 0) << ship.stdout_data << ship.stderr_data;
  EXPECT_THAT(ship.stdout_data, HasSubstr("SHIP fix-2")) << ship.stdout_data;

  auto reject = Patchlab({"gate", "fix-1"});
  EXPECT_EQ(reject.status.code, 1) << reject.stdout_data << reject.stderr_data;
  for (const char* rule : {"max_crashes", "require_applied", "max_cpu_overhead_pct",
                           "max_memory_overhead_mib", "max_pause_ms", "require_semantic_pass"}) {
    EXPECT_THAT(reject.stdout_data, HasSubstr(rule)) << rule << " not listed in\n"
                                                     << reject.stdout_data;
  }

  auto unknown = Patchlab({"gate", "fix-9"});
  EXPECT_EQ(unknown.status.code, 3) << unknown.stdout_data;
  EXPECT_THAT(unknown.stdout_data, HasSubstr("no results recorded for patch fix-9"));

  // A ring whose image never ran fix-2: not enough data, naming the image.
  auto policy = dir_ / "rings.yaml";
  ASSERT_TRUE(WriteFileAtomic(policy, "rings:\n  - name: pilot\n    images: [deb12, alpine]\n")
                  .has_value());
  auto ring = Patchlab({"gate", "fix-2", "--policy", policy.string(), "--ring", "pilot", "--json"});
  EXPECT_EQ(ring.status.code, 3) << ring.stdout_data << ring.stderr_data;
  auto j = nlohmann::json::parse(ring.stdout_data, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << ring.stdout_data;
  EXPECT_EQ(j["outcome"], "not-enough-data");
  EXPECT_THAT(j["missing"][0]["what"].get<std::string>(), HasSubstr("alpine"));

  auto bad_policy = dir_ / "bad.yaml";
  ASSERT_TRUE(WriteFileAtomic(bad_policy, "max_crashes: 0\nmax_cpu: 3\n").has_value());
  auto bad = Patchlab({"gate", "fix-2", "--policy", bad_policy.string()});
  EXPECT_EQ(bad.status.code, 2);
  EXPECT_THAT(bad.stderr_data, HasSubstr(bad_policy.string() + ":2:1")) << bad.stderr_data;

  auto no_db = Patchlab({"gate", "fix-2", "--db", (dir_ / "absent.db").string()}, false);
  EXPECT_EQ(no_db.status.code, 2);
  EXPECT_THAT(no_db.stderr_data, HasSubstr("absent.db")) << no_db.stderr_data;
  EXPECT_FALSE(std::filesystem::exists(dir_ / "absent.db"));
  EXPECT_EQ(Patchlab({"gate"}).status.code, 2);
}

TEST_F(PatchlabDb, ReportWritesEveryFormat) {
  for (const char* format : {"html", "junit", "md", "json", "openmetrics"}) {
    auto out = dir_ / (std::string("report.") + format);
    auto r = Patchlab(
        {"report", "--run", std::to_string(showcase_run_), "--format", format, "-o", out.string()});
    EXPECT_EQ(r.status.code, 0) << format << ": " << r.stderr_data;
    auto text = ReadFile(out);
    ASSERT_TRUE(text.has_value()) << format;
    EXPECT_GT(text->size(), 500u) << format;
  }
  // The newest run by default, and a patch's view.
  auto newest = Patchlab({"report", "--format", "json", "-o", "-"});
  EXPECT_EQ(newest.status.code, 0);
  EXPECT_EQ(nlohmann::json::parse(newest.stdout_data)["run"]["id"], good_run_);
  auto patch = Patchlab({"report", "--patch", "fix-2", "--format", "md", "-o", "-"});
  EXPECT_EQ(patch.status.code, 0);
  EXPECT_THAT(patch.stdout_data, HasSubstr("✅ ship")) << patch.stdout_data;

  EXPECT_EQ(
      Patchlab({"report", "--run", "99", "--format", "html", "-o", (dir_ / "x.html").string()})
          .status.code,
      2);
  EXPECT_EQ(Patchlab({"report", "--format", "pdf", "-o", "x"}).status.code, 2);
  EXPECT_EQ(Patchlab({"report", "--run", "1", "--patch", "fix-1", "--format", "md", "-o", "x"})
                .status.code,
            2);
}

TEST_F(PatchlabDb, QueriesPrintTablesAndJson) {
  auto compat = Patchlab({"compat", "fix-1", "--json"});
  EXPECT_EQ(compat.status.code, 0) << compat.stderr_data;
  EXPECT_EQ(nlohmann::json::parse(compat.stdout_data)["cells"].size(), 10u);
  auto table = Patchlab({"compat", "fix-2"});
  EXPECT_THAT(table.stdout_data, HasSubstr("deb12-old")) << table.stdout_data;

  auto label =
      Patchlab({"runs", "--set-label", "pre-release", "--run", std::to_string(showcase_run_)});
  EXPECT_EQ(label.status.code, 0) << label.stderr_data;
  auto runs = Patchlab({"runs", "--label", "pre-release", "--json"});
  auto j = nlohmann::json::parse(runs.stdout_data);
  ASSERT_EQ(j.size(), 1u) << runs.stdout_data;
  EXPECT_EQ(j[0]["id"], showcase_run_);
  EXPECT_EQ(j[0]["cells_missing"], 1);

  auto history = Patchlab({"history", "--image", "deb12-old", "--patch", "fix-2", "--json"});
  EXPECT_EQ(history.status.code, 0);
  EXPECT_EQ(nlohmann::json::parse(history.stdout_data)["cells"].size(), 1u);
}

TEST_F(PatchlabDb, RegressionsExitCodes) {
  // Run 2 (fix-2 only) against run 1 (fix-1 only): nothing comparable, no regression.
  auto none = Patchlab({"regressions"});
  EXPECT_EQ(none.status.code, 0) << none.stdout_data << none.stderr_data;

  auto db = CompatDb::Open(db_path_);
  ASSERT_TRUE(db.has_value());
  auto worse = *db->BeginRun(RunInfo{.label = "nightly"});
  CellResult c = GoodCell(worse, "deb12", "qemu64", "default", "fix-2");
  c.crashes[CrashKind::kPanic] = 1;
  ASSERT_TRUE(db->RecordCell(c).has_value());
  auto found = Patchlab({"regressions", "--label", "nightly"});
  EXPECT_EQ(found.status.code, 1) << found.stdout_data << found.stderr_data;
  EXPECT_THAT(found.stdout_data, HasSubstr("[new-crash]: panic 0 -> 1")) << found.stdout_data;
  auto json = Patchlab({"regressions", "--run", std::to_string(worse), "--since-run",
                        std::to_string(good_run_), "--json"});
  EXPECT_EQ(json.status.code, 1);
  EXPECT_EQ(nlohmann::json::parse(json.stdout_data)["regressions"][0]["kind"], "new-crash");

  auto first = Patchlab({"regressions", "--run", "1"});
  EXPECT_EQ(first.status.code, 3) << first.stdout_data;
}

TEST_F(PatchlabDb, EveryQueryWorksStraightFromReadOnlyMedia) {
  ReadOnlyMedia media(dir_.path(), dir_ / "media");
  REQUIRE_MOUNT(media);
  db_path_ = (dir_ / "media/lab.db").string();
  struct Query {
    std::vector<std::string> args;
    int exit_code;
  };
  const std::vector<Query> queries = {
      {{"compat", "fix-1", "--json"}, 0},
      {{"runs", "--json"}, 0},
      {{"history", "--image", "deb12"}, 0},
      {{"gate", "fix-2"}, 0},
      {{"gate", "fix-1"}, 1},
      {{"report", "--run", std::to_string(showcase_run_), "--format", "html", "-o", "-"}, 0},
      {{"report", "--patch", "fix-1", "--format", "openmetrics", "-o", "-"}, 0},
      {{"regressions", "--run", std::to_string(good_run_)}, 0},
  };
  for (const Query& q : queries) {
    auto r = Patchlab(q.args);
    EXPECT_EQ(r.status.code, q.exit_code) << fmt::format("{}", fmt::join(q.args, " ")) << "\n"
                                          << r.stdout_data << r.stderr_data;
    EXPECT_FALSE(r.stdout_data.empty()) << fmt::format("{}", fmt::join(q.args, " "));
  }
  // Writing is refused there, naming the file.
  auto label = Patchlab({"runs", "--set-label", "x", "--run", std::to_string(good_run_)});
  EXPECT_EQ(label.status.code, 2);
  EXPECT_THAT(label.stderr_data, HasSubstr(db_path_)) << label.stderr_data;
}

}  // namespace
}  // namespace patchlab::metrics
