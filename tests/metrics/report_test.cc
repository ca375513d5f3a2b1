// Every report format checked by the program that consumes it: HTML rendered by
// headless Chromium, JUnit XML validated by xmllint against the JUnit shape,
// OpenMetrics text checked by promtool, JSON parsed back. Names in the data are
// hostile (markup, quotes, pipes) and must come out escaped.
#include "metrics/report.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "base/file_util.h"
#include "base/subprocess.h"
#include "tests/metrics/test_util.h"
#include "tests/support/status_matchers.h"

using ::testing::HasSubstr;
using ::testing::Not;

namespace patchlab::metrics {
namespace {

using testing::RecordShowcaseRun;
using testing::ScratchDir;

// The path of `tool` in PATH, or "" when it is not installed.
std::string Which(const std::string& tool) {
  SubprocessOptions o;
  o.argv = {"sh", "-c", "command -v " + tool};
  auto r = RunSubprocess(o);
  if (!r || !r->status.Success()) return "";
  std::string path = r->stdout_data;
  while (!path.empty() && path.back() == '\n') path.pop_back();
  return path;
}

class Reports : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = CompatDb::Open(dir_ / "lab.db");
    ASSERT_OK(db);
    db_.emplace(std::move(*db));
    run_ = RecordShowcaseRun(*db_);
    auto data = GatherRunReport(*db_, run_, DefaultPolicy());
    ASSERT_OK(data);
    data_ = std::move(*data);
  }
  std::filesystem::path Write(const std::string& name, ReportFormat format) {
    auto path = dir_ / name;
    auto s = WriteFileAtomic(path, RenderReport(data_, format));
    EXPECT_TRUE(s.has_value());
    return path;
  }

  ScratchDir dir_;
  std::optional<CompatDb> db_;
  int64_t run_ = 0;
  ReportData data_;
};

TEST_F(Reports, GatheredRunJudgesEachPatch) {
  ASSERT_EQ(data_.verdicts.size(), 1u);
  const GateDecision& d = data_.verdicts[0];
  EXPECT_EQ(d.outcome, GateOutcome::kReject) << d.Explain();
  // The planned cell never recorded is named.
  EXPECT_THAT(d.Explain(), HasSubstr("deb12 x Skylake-Client x burst")) << d.Explain();
  EXPECT_EQ(data_.cells.size(), 10u);
  EXPECT_EQ(data_.findings.size(), 2u);
}

TEST_F(Reports, HtmlIsSelfContainedEscapedAndRendersInChromium) {
  std::string html = RenderHtml(data_);
  EXPECT_THAT(html, Not(HasSubstr("<script>"))) << "user text must not become markup";
  EXPECT_THAT(html, HasSubstr("&lt;script&gt;alert(&quot;x&quot;)"));
  for (const char* remote : {"src=\"http", "href=\"http", "url(http", "@import"}) {
    EXPECT_THAT(html, Not(HasSubstr(remote))) << "fetches " << remote;
  }
  for (const char* part : {"must not ship", "<svg", "CPU overhead per cell", "Pause distribution",
                           "Memory overhead per patched process", "Crashes by kind", "parse_kv",
                           "href=\"out/run%201/deb12%20%26%20burst\""}) {
    EXPECT_THAT(html, HasSubstr(part)) << part;
  }

  std::string chromium = Which("chromium");
  if (chromium.empty()) GTEST_SKIP() << "chromium is not installed (ci/setup installs it)";
  auto page = Write("report.html", ReportFormat::kHtml);
  auto png = dir_ / "report.png";
  auto profile = dir_ / "chromium-profile";
  SubprocessOptions o;
  o.argv = {chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--user-data-dir=" + profile.string(),
            "--screenshot=" + png.string(),
            "--window-size=1280,2000",
            "file://" + page.string()};
  o.timeout = std::chrono::seconds(120);
  auto r = RunSubprocess(o);
  ASSERT_OK(r);
  ASSERT_TRUE(std::filesystem::exists(png)) << r->status.ToString() << "\n" << r->stderr_data;
  auto bytes = ReadFile(png);
  ASSERT_TRUE(bytes.has_value());
  EXPECT_EQ(bytes->substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  // A blank 1280x2000 page compresses to a few KiB; tables, banners and charts do not.
  EXPECT_GT(bytes->size(), 60u * 1024) << "the screenshot looks empty";
  if (const char* keep = std::getenv("PATCHLAB_KEEP_SCREENSHOT")) {
    // For looking at the page by hand: the screenshot and the HTML beside it.
    std::filesystem::copy_file(png, keep, std::filesystem::copy_options::overwrite_existing);
    std::filesystem::copy_file(page, std::string(keep) + ".html",
                               std::filesystem::copy_options::overwrite_existing);
  }
}

TEST_F(Reports, JunitMatchesTheJunitSchemaShape) {
  std::string xml = RenderJunit(data_);
  EXPECT_THAT(xml, Not(HasSubstr("<script>")));
  std::string xmllint = Which("xmllint");
  if (xmllint.empty()) GTEST_SKIP() << "xmllint is not installed (libxml2-utils, in ci/setup)";
  auto file = Write("junit.xml", ReportFormat::kJunit);
  SubprocessOptions o;
  o.argv = {xmllint, "--noout", "--schema", PATCHLAB_SOURCE_DIR "/tests/metrics/junit.xsd",
            file.string()};
  auto r = RunSubprocess(o);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->status.Success()) << r->stderr_data;

  // One testcase per cell; the crash and the divergence fail, the infra error errs,
  // and a failure carries its rule and reason.
  SubprocessOptions count;
  count.argv = {
      xmllint, "--xpath",
      "concat(count(//testcase),' ',count(//testcase/failure),' ',count(//testcase/error))",
      file.string()};
  auto c = RunSubprocess(count);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->stdout_data.substr(0, c->stdout_data.find('\n')), "10 3 1") << c->stderr_data;
  EXPECT_THAT(xml, HasSubstr("max_crashes: 3 crashes"));
  EXPECT_THAT(xml, HasSubstr("type=\"not-hotpatchable\""));

  // Breaking the shape is noticed (the check can fail).
  auto broken = dir_ / "broken.xml";
  ASSERT_TRUE(WriteFileAtomic(
      broken, "<testsuites><testsuite name=\"x\"><testcase/></testsuite></testsuites>"));
  o.argv.back() = broken.string();
  auto bad = RunSubprocess(o);
  ASSERT_TRUE(bad.has_value());
  EXPECT_FALSE(bad->status.Success());
}

TEST_F(Reports, OpenMetricsPassesPromtool) {
  std::string text = RenderOpenMetrics(data_);
  EXPECT_THAT(text,
              HasSubstr("patchlab_cell_crashes{scenario=\"kv <script>alert(\\\"x\\\")</script>"));
  EXPECT_EQ(text.substr(text.size() - 6), "# EOF\n");
  std::string promtool = Which("promtool");
  if (promtool.empty()) GTEST_SKIP() << "promtool is not installed (prometheus, in ci/setup)";
  SubprocessOptions o;
  o.argv = {promtool, "check", "metrics"};
  o.stdin_data = text;
  o.stderr_to_stdout = true;
  auto r = RunSubprocess(o);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->status.Success()) << r->status.ToString() << "\n" << r->stdout_data;
  // A malformed exposition is refused (the check can fail).
  o.stdin_data = "patchlab_cell_verdict{scenario=\"unterminated} 1\n";
  auto bad = RunSubprocess(o);
  ASSERT_TRUE(bad.has_value());
  EXPECT_FALSE(bad->status.Success());
}

TEST_F(Reports, JsonCarriesEveryCellAndTheVerdict) {
  auto j = nlohmann::json::parse(RenderJson(data_));
  EXPECT_EQ(j["cells"].size(), 10u);
  EXPECT_EQ(j["run"]["id"], run_);
  EXPECT_EQ(j["patches"][0]["gate"]["outcome"], "reject");
  EXPECT_EQ(j["findings"].size(), 2u);
  EXPECT_EQ(j["cells"][0]["scenario"].get<std::string>().find("<script>"), 3u);  // data, not markup
}

TEST_F(Reports, MarkdownTableSurvivesPipesInNames) {
  std::string md = RenderMarkdown(data_);
  EXPECT_THAT(md, HasSubstr("❌ reject")) << md;
  EXPECT_THAT(md, HasSubstr("kv &lt;script&gt;")) << md;
  // Every table row has the same number of unescaped pipes as the header.
  size_t header_pipes = 13;
  size_t pos = md.find("| Scenario |");
  ASSERT_NE(pos, std::string::npos);
  std::string rest = md.substr(pos);
  for (size_t start = 0; start < rest.size();) {
    size_t end = rest.find('\n', start);
    std::string line = rest.substr(start, end - start);
    if (line.empty() || line[0] != '|') break;
    size_t pipes = 0;
    for (size_t i = 0; i < line.size(); ++i) {
      if (line[i] == '|' && (i == 0 || line[i - 1] != '\\')) ++pipes;
    }
    EXPECT_EQ(pipes, header_pipes) << line;
    start = end + 1;
  }
  EXPECT_THAT(md, HasSubstr("max_crashes"));
}

// Three applications under one library patch, as a release team reads them.
ReportData ThreeApplications() {
  ReportData data;
  data.title = "patch zlib-fix";
  auto cell = [](std::string scenario, std::string application, Verdict v, int crashes) {
    CellResult c;
    c.key = {scenario, "zlib-fix", "debian12-apps", "qemu64", "default"};
    c.application = std::move(application);
    c.verdict = v;
    if (crashes > 0) c.crashes[CrashKind::kWorkloadSignal] = crashes;
    return c;
  };
  data.cells = {cell("nginx-gzip", "nginx-light 1.22.1-9", Verdict::kPass, 0),
                cell("python3-zlib", "python3-minimal 3.11.2-1", Verdict::kPass, 0),
                cell("redis-zlib", "redis-server 5:7.0.15-1", Verdict::kFail, 2),
                cell("nginx-gzip-2", "nginx-light 1.22.1-9", Verdict::kPass, 0)};
  return data;
}

TEST(ReportsByApplication, MarkdownHtmlAndJsonGroupAPatchsCellsByApplication) {
  ReportData data = ThreeApplications();
  std::string md = RenderMarkdown(data);
  EXPECT_THAT(
      md, HasSubstr("- zlib-fix: nginx-light 1.22.1-9 ok (2 cells), python3-minimal 3.11.2-1 ok "
                    "(1 cell), redis-server 5:7.0.15-1 crashes (1 cell)"))
      << md;
  std::string html = RenderHtml(data);
  EXPECT_THAT(html, HasSubstr("<h2>By application</h2>"));
  EXPECT_THAT(html, HasSubstr("<td>zlib-fix</td><td>redis-server 5:7.0.15-1</td><td><b "
                              "class=\"bad\">crashes</b></td>"))
      << html;
  auto json = nlohmann::json::parse(RenderJson(data));
  ASSERT_EQ(json["applications"].size(), 1u);
  EXPECT_EQ(json["applications"][0]["patch_id"], "zlib-fix");
  ASSERT_EQ(json["applications"][0]["applications"].size(), 3u);
  EXPECT_EQ(json["applications"][0]["applications"][0]["cells"], 2);
  EXPECT_EQ(json["applications"][0]["applications"][2]["outcome"], "crashes");
}

// Issue 13: the patch's own mapped bytes and island pages beside the PSS
// growth they are part of, in every table a person reads; a cell without them
// shows the PSS growth alone.
TEST(ReportsMemory, ThePatchsMappedAndIslandBytesStandBesideThePssGrowth) {
  ReportData data = ThreeApplications();
  data.cells[0].mem_overhead_kib = 2048;
  data.cells[0].patch_mapped_kib = 24;
  data.cells[0].island_kib = 12;
  data.cells[1].mem_overhead_kib = 1024;
  EXPECT_EQ(PatchMemoryNote(data.cells[0]), "patch 24 KiB, island 12 KiB");
  EXPECT_EQ(PatchMemoryNote(data.cells[1]), "");
  std::string md = RenderMarkdown(data);
  EXPECT_THAT(md, HasSubstr("| 2.00 (patch 24 KiB, island 12 KiB) |")) << md;
  EXPECT_THAT(md, HasSubstr("| 1.00 |")) << md;
  EXPECT_THAT(RenderHtml(data), HasSubstr("2.00<br>patch 24 KiB, island 12 KiB</td>"));
  EXPECT_THAT(RenderJunit(data),
              HasSubstr("memory overhead KiB: 2048 (patch 24 KiB, island 12 KiB)\n"));
}

TEST_F(Reports, PatchReportUsesTheGatesView) {
  auto data = GatherPatchReport(*db_, "fix-1", DefaultPolicy());
  ASSERT_OK(data);
  EXPECT_EQ(data->verdicts.size(), 1u);
  EXPECT_EQ(data->cells.size(), 10u);
  auto unknown = GatherPatchReport(*db_, "nope", DefaultPolicy());
  ASSERT_FALSE(unknown.has_value());
  EXPECT_THAT(unknown.error().ToString(), HasSubstr("nope"));
}

}  // namespace
}  // namespace patchlab::metrics
