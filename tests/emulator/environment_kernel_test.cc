// The sandbox's model of a process's environment (emulator/syscalls.h)
// against the real kernel: each case of the environment fixture's
// env_probe runs in a fresh process that sees what the model describes
// (an empty tmpfs as its root and working directory, user 1000, /dev/null
// as descriptor 0 and pipes as 1 and 2, nothing else open but the pipes'
// read ends and the report pipe, at numbers the probes do not use), and must
// answer what env_probe_model says. Needs root (a mount namespace and
// chroot); skips without it.
#include <dlfcn.h>
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

namespace {

using Probe = long (*)(int);
constexpr int kReportFd = 50;
constexpr int kReadEnds = 60;

struct Answer {
  int which;
  long kernel;
  long model;
};

// In the child: an empty tmpfs at `dir` as root, user 1000, descriptors
// 0-2 as the model says. Returns false (errno set) when one step fails.
bool EnterEmptyRoot(const char* dir) {
  if (unshare(CLONE_NEWNS) != 0) return false;
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return false;
  if (mount("tmpfs", dir, "tmpfs", 0, "mode=755,size=1m") != 0) return false;
  int null_fd = open("/dev/null", O_RDONLY);
  int out[2], err[2];
  if (null_fd < 0 || pipe(out) != 0 || pipe(err) != 0) return false;
  if (dup2(null_fd, 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0) return false;
  // The pipes' read ends stay open, as the model's capture holds them (a
  // pipe without readers polls POLLERR), at numbers no probe uses.
  if (dup2(out[0], kReadEnds) < 0 || dup2(err[0], kReadEnds + 1) < 0) return false;
  for (int fd = 3; fd < 1024; ++fd) {
    if (fd != kReportFd && fd != kReadEnds && fd != kReadEnds + 1) close(fd);
  }
  // The model's machine has one CPU.
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(0, &one);
  if (sched_setaffinity(0, sizeof one, &one) != 0) return false;
  if (chdir(dir) != 0 || chroot(".") != 0 || chdir("/") != 0) return false;
  return setgroups(0, nullptr) == 0 && setgid(1000) == 0 && setuid(1000) == 0;
}

// Runs case `which` in a fresh process and reports it on kReportFd.
void RunCase(Probe probe, Probe model, int which) {
  pid_t pid = fork();
  if (pid == 0) {
    Answer a{which, probe(which), model(which)};
    (void)!write(kReportFd, &a, sizeof a);
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
}

TEST(EnvironmentKernel, TheModelAnswersAsLinuxDoes) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for a mount namespace and chroot";
  void* lib = dlopen(FIXTURE_ENVIRONMENT, RTLD_NOW);
  ASSERT_NE(lib, nullptr) << dlerror();
  auto probe = reinterpret_cast<Probe>(dlsym(lib, "env_probe"));
  auto model = reinterpret_cast<Probe>(dlsym(lib, "env_probe_model"));
  auto cases = reinterpret_cast<int (*)()>(dlsym(lib, "env_probe_cases"));
  ASSERT_TRUE(probe != nullptr && model != nullptr && cases != nullptr);
  char dir[] = "/tmp/patchlab-checker-envroot-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  int report[2];
  ASSERT_EQ(pipe(report), 0);
  const int n = cases();
  pid_t pid = fork();
  if (pid == 0) {
    dup2(report[1], kReportFd);
    if (!EnterEmptyRoot(dir)) {
      Answer failed{-1, -errno, 0};
      (void)!write(kReportFd, &failed, sizeof failed);
      _exit(1);
    }
    for (int i = 0; i < n; ++i) RunCase(probe, model, i);
    _exit(0);
  }
  close(report[1]);
  std::vector<Answer> answers;
  Answer a;
  while (read(report[0], &a, sizeof a) == static_cast<ssize_t>(sizeof a)) answers.push_back(a);
  close(report[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  rmdir(dir);
  if (!answers.empty() && answers[0].which == -1)
    GTEST_SKIP() << "cannot enter an empty root: "
                 << strerror(static_cast<int>(-answers[0].kernel));
  ASSERT_EQ(answers.size(), static_cast<size_t>(n));
  for (const Answer& x : answers)
    EXPECT_EQ(x.kernel, x.model) << "case " << x.which << " (fixtures/environment.c)";
}

}  // namespace
