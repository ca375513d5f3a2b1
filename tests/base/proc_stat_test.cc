// ProcStat on made-up stat lines (a command name with spaces and parentheses,
// short and malformed lines) and on real processes: this one, one of its
// threads, a zombie child and a reaped one.
#include "base/proc_stat.h"

#include <errno.h>
#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "tests/support/status_matchers.h"

using ::testing::HasSubstr;

namespace patchlab {
namespace {

// Fields 3 to 52 of a stat line: state, then 48 numbers, field 22 = 424242.
std::string Tail(char state) {
  std::string s(1, state);
  for (int field = 4; field <= 52; ++field) s += " " + std::to_string(field == 22 ? 424242 : field);
  return s;
}

TEST(ProcStat, FieldsCountFromTheLastParenthesis) {
  auto s = ParseProcStat("77 (a) b) (c ) S 9) " + Tail('t') + "\n");
  ASSERT_OK(s);
  EXPECT_EQ(s->comm, "a) b) (c ) S 9");
  EXPECT_EQ(s->state, 't');
  EXPECT_EQ(s->ppid, 4);
  EXPECT_EQ(s->start_ticks, 424242u);
  s = ParseProcStat("1 (init) " + Tail('S'));
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->state, 'S');
}

TEST(ProcStat, MalformedLinesAreParseErrors) {
  for (const std::string& text :
       {std::string("77 no command name S 1 2"), std::string("77 (x) S 1 2 3"),
        std::string("77 (x) ") + Tail('S').substr(0, 40),
        std::string("77 (x) S 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 "
                    "notanumber 23")}) {
    SCOPED_TRACE(text);
    auto s = ParseProcStat(text);
    ASSERT_FALSE(s.has_value());
    EXPECT_EQ(s.error().code(), ErrorCode::kParse);
  }
}

TEST(ProcStat, ReadsThisProcessAndItsThread) {
  auto self = ReadProcStat(::getpid());
  ASSERT_OK(self);
  EXPECT_EQ(self->state, 'R');
  EXPECT_EQ(self->ppid, ::getppid());
  EXPECT_EQ(self->comm, std::string(program_invocation_short_name).substr(0, 15));
  EXPECT_GT(self->start_ticks, 0u);
  auto thread = ReadProcStat(::getpid(), static_cast<pid_t>(::syscall(SYS_gettid)));
  ASSERT_OK(thread);
  EXPECT_EQ(thread->start_ticks, self->start_ticks);
  EXPECT_FALSE(HasEnded(::getpid()));
}

TEST(ProcStat, AZombieHasEndedAndAReapedChildIsGone) {
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  // Not reaped yet: a zombie, once it has exited.
  for (int i = 0; i < 1000 && !HasEnded(child); ++i) ::usleep(1000);
  auto zombie = ReadProcStat(child);
  ASSERT_OK(zombie);
  EXPECT_EQ(zombie->state, 'Z');
  EXPECT_TRUE(HasEnded(child));
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  auto gone = ReadProcStat(child);
  ASSERT_FALSE(gone.has_value());
  EXPECT_EQ(gone.error().code(), ErrorCode::kTargetGone);
  EXPECT_THAT(gone.error().message(), HasSubstr(std::to_string(child)));
  EXPECT_TRUE(HasEnded(child));
}

}  // namespace
}  // namespace patchlab
