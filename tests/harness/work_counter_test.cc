// The regex work counter on load generators' real output formats: ab's
// summary, a per-line counter, redis-benchmark's "requests per second" lines.
#include "harness/lab/internal/work_counter.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/status_matchers.h"

namespace patchlab::harness::internal {
namespace {

using ::testing::HasSubstr;

// ab 2.3's summary (apache2-utils), trimmed.
constexpr const char* kAbOutput = R"(Server Software:        nginx/1.22.1
Concurrency Level:      2
Time taken for tests:   3.001 seconds
Complete requests:      1234
Failed requests:        0
Requests per second:    411.20 [#/sec] (mean)

Percentage of the requests served within a certain time (ms)
  50%      4
  66%      5
  90%      7
  99%     12
 100%     31 (longest request)
)";

TEST(WorkCounter, SumsTheFirstGroupOfEveryMatch) {
  auto n = CountWork(R"(Complete requests:\s+(\d+))", kAbOutput);
  ASSERT_OK(n);
  EXPECT_EQ(*n, std::optional<uint64_t>(1234));
  // Several lines, several matches: one sum.
  n = CountWork(R"(done (\d+))", "done 3\nnoise\ndone 4\ndone 10\n");
  ASSERT_OK(n);
  EXPECT_EQ(*n, std::optional<uint64_t>(17));
  // A fraction is rounded down.
  n = CountWork(R"(SET: ([0-9.]+) requests per second)", "SET: 1523.75 requests per second\n");
  ASSERT_OK(n);
  EXPECT_EQ(*n, std::optional<uint64_t>(1523));
}

TEST(WorkCounter, WithoutAGroupEachMatchCountsOne) {
  auto n = CountWork("^ok$", "ok\nbad\nok\n");
  ASSERT_OK(n);
  // ECMAScript ^ and $ anchor at the whole text, not lines: "ok\nbad\nok\n" has no
  // whole-text match, so a per-line pattern must not use them.
  EXPECT_EQ(*n, std::nullopt);
  n = CountWork("request served", "request served\nrequest served\nrequest served\n");
  ASSERT_OK(n);
  EXPECT_EQ(*n, std::optional<uint64_t>(3));
}

TEST(WorkCounter, NoMatchIsNoWorkNotZero) {
  auto n = CountWork(R"(Complete requests:\s+(\d+))", "apr_socket_connect(): Connection refused");
  ASSERT_OK(n);
  EXPECT_EQ(*n, std::nullopt);
  n = CountWork(R"(Complete requests:\s+(\d+))", "");
  ASSERT_OK(n);
  EXPECT_EQ(*n, std::nullopt);
}

TEST(WorkCounter, AGroupThatIsNotANumberIsAnError) {
  auto n = CountWork(R"(Server Software:\s+(\S+))", kAbOutput);
  ASSERT_FALSE(n);
  EXPECT_THAT(n.error().ToString(), HasSubstr("nginx/1.22.1"));
  EXPECT_THAT(n.error().ToString(), HasSubstr("not a number"));
  EXPECT_FALSE(CountWork("(unclosed", "x"));
}

TEST(WorkCounter, LatencyIsTheFirstMatchsNumber) {
  auto p50 = FirstNumber(R"(\n\s+50%\s+(\d+))", kAbOutput);
  ASSERT_OK(p50);
  EXPECT_EQ(*p50, std::optional<double>(4));
  auto p99 = FirstNumber(R"(\n\s+99%\s+(\d+))", kAbOutput);
  ASSERT_OK(p99);
  EXPECT_EQ(*p99, std::optional<double>(12));
  auto none = FirstNumber(R"(99\.9%\s+(\d+))", kAbOutput);
  ASSERT_OK(none);
  EXPECT_EQ(*none, std::nullopt);
  EXPECT_FALSE(FirstNumber("50%", kAbOutput)) << "a latency regex needs a group";
}

}  // namespace
}  // namespace patchlab::harness::internal
