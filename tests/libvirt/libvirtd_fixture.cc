#include "tests/libvirt/libvirtd_fixture.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "base/file_util.h"
#include "base/parent_death.h"

namespace patchlab::testing {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

volatile sig_atomic_t g_stop = 0;
void OnStop(int) { g_stop = 1; }

// PIDs whose parent is us (QEMUs reparented to the subreaper).
std::vector<pid_t> Children() {
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return out;
  pid_t self = ::getpid();
  while (dirent* e = ::readdir(d)) {
    pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    if (pid <= 0) continue;
    std::ifstream status(fmt::format("/proc/{}/status", pid));
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("PPid:", 0) == 0) {
        if (std::atoi(line.c_str() + 5) == self) out.push_back(pid);
        break;
      }
    }
  }
  ::closedir(d);
  return out;
}

void BindOrDie(const fs::path& from, const char* to) {
  ::mkdir(to, 0755);
  if (::mount(from.c_str(), to, nullptr, MS_BIND, nullptr) != 0) {
    std::fprintf(stderr, "fixture: bind %s on %s: %s\n", from.c_str(), to, std::strerror(errno));
    ::_exit(120);
  }
}

// In the forked child: private mounts, then the subreaper loop around libvirtd.
[[noreturn]] void RunReaper(const fs::path& dir) {
  ::setsid();
  if (::unshare(CLONE_NEWNS) != 0 ||
      ::mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    std::fprintf(stderr, "fixture: mount namespace: %s\n", std::strerror(errno));
    ::_exit(121);
  }
  BindOrDie(dir / "etc", "/etc/libvirt");
  BindOrDie(dir / "run", "/run/libvirt");
  BindOrDie(dir / "lib", "/var/lib/libvirt");
  BindOrDie(dir / "cache", "/var/cache/libvirt");
  BindOrDie(dir / "log", "/var/log/libvirt");
  BindOrDie(dir / "passwd", "/etc/passwd");
  BindOrDie(dir / "group", "/etc/group");
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  struct sigaction sa {};
  sa.sa_handler = OnStop;  // no SA_RESTART: waitpid returns EINTR
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);

  pid_t daemon = ::fork();
  if (daemon == 0) {
    int log =
        ::open((dir / "libvirtd.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log >= 0) {
      ::dup2(log, 1);
      ::dup2(log, 2);
    }
    std::string conf = (dir / "etc" / "libvirtd.conf").string();
    std::string pid_file = (dir / "libvirtd.pid").string();
    ::execlp("libvirtd", "libvirtd", "--config", conf.c_str(), "--pid-file", pid_file.c_str(),
             nullptr);
    std::fprintf(stderr, "fixture: exec libvirtd: %s\n", std::strerror(errno));
    ::_exit(127);
  }
  bool daemon_gone = false;
  bool forwarded = false;
  while (true) {
    if (g_stop && !forwarded && !daemon_gone) {
      ::kill(daemon, SIGTERM);
      forwarded = true;
    }
    int st = 0;
    pid_t pid = ::waitpid(-1, &st, 0);
    if (pid == daemon) daemon_gone = true;
    if (pid < 0 && errno == ECHILD) ::_exit(0);
    if (daemon_gone) {
      // The host is down: its VMs go with it.
      for (pid_t child : Children()) ::kill(child, SIGKILL);
    }
  }
}

bool SocketAnswers(const fs::path& socket) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket.c_str(), sizeof addr.sun_path - 1);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

Status WriteConfig(const fs::path& dir) {
  for (const char* sub : {"etc", "run", "lib", "cache", "log", "sock"}) {
    if (auto s = MakeDirs(dir / sub); !s) return s;
  }
  std::string libvirtd_conf = fmt::format(
      "unix_sock_dir = \"{}\"\n"
      "unix_sock_rw_perms = \"0700\"\n"
      "log_outputs = \"3:stderr\"\n",
      (dir / "sock").string());
  std::string qemu_conf =
      "user = \"root\"\n"
      "group = \"root\"\n"
      "dynamic_ownership = 0\n"
      "remember_owner = 0\n"
      "security_driver = \"none\"\n"
      "stdio_handler = \"file\"\n";
  if (auto s = WriteFileAtomic(dir / "etc" / "libvirtd.conf", libvirtd_conf); !s) return s;
  if (auto s = WriteFileAtomic(dir / "etc" / "qemu.conf", qemu_conf); !s) return s;
  auto passwd = ReadFile("/etc/passwd");
  auto group = ReadFile("/etc/group");
  if (!passwd) return std::unexpected(passwd.error());
  if (!group) return std::unexpected(group.error());
  if (passwd->find("\nlibvirt-qemu:") == std::string::npos &&
      passwd->rfind("libvirt-qemu:", 0) != 0) {
    *passwd += "libvirt-qemu:x:64055:64055:Libvirt Qemu:/var/lib/libvirt:/usr/sbin/nologin\n";
  }
  if (group->find("\nlibvirt-qemu:") == std::string::npos &&
      group->rfind("libvirt-qemu:", 0) != 0) {
    *group += "libvirt-qemu:x:64055:\n";
  }
  if (auto s = WriteFileAtomic(dir / "passwd", *passwd); !s) return s;
  return WriteFileAtomic(dir / "group", *group);
}

}  // namespace

Result<std::unique_ptr<PrivateLibvirtd>> PrivateLibvirtd::Start(const fs::path& dir_in,
                                                                std::chrono::milliseconds timeout) {
  if (::geteuid() != 0) return Fail(ErrorCode::kUnsupported, "a private libvirtd needs root");
  fs::path dir = fs::absolute(dir_in);
  if (auto s = WriteConfig(dir); !s) return std::unexpected(s.error());
  std::unique_ptr<PrivateLibvirtd> d(new PrivateLibvirtd());
  d->dir_ = dir;
  fs::path socket = dir / "sock" / "libvirt-sock";
  d->uri_ = "qemu+unix:///system?socket=" + socket.string();
  const pid_t starter = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return FailErrno("fork");
  if (pid == 0) {
    // A test binary killed outright (a ctest timeout) stops the daemon and
    // its QEMUs as Stop() does: SIGTERM to the reaper.
    DieWithParent(starter, SIGTERM);
    RunReaper(dir);
  }
  d->reaper_ = pid;
  Clock::time_point deadline = Clock::now() + timeout;
  while (!SocketAnswers(socket)) {
    int st = 0;
    if (::waitpid(pid, &st, WNOHANG) == pid) {
      d->reaper_ = -1;
      auto log = ReadFile(d->log_path());
      return Fail(ErrorCode::kInfra, "libvirtd in {} exited at start; its log:\n{}", dir.string(),
                  log ? *log : "(none)");
    }
    if (Clock::now() >= deadline) {
      d->Stop();
      return Fail(ErrorCode::kTimeout, "libvirtd in {} did not answer on {}; see {}", dir.string(),
                  socket.string(), d->log_path().string());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return d;
}

PrivateLibvirtd::~PrivateLibvirtd() { Stop(); }

void PrivateLibvirtd::Stop() {
  if (reaper_ <= 0) return;
  ::kill(reaper_, SIGTERM);
  Clock::time_point deadline = Clock::now() + std::chrono::seconds(20);
  int st = 0;
  while (::waitpid(reaper_, &st, WNOHANG) == 0) {
    if (Clock::now() >= deadline) {
      // libvirtd hangs: kill it and its reaper; orphans go to PID 1.
      ::kill(reaper_, SIGKILL);
      ::waitpid(reaper_, &st, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  reaper_ = -1;
}

}  // namespace patchlab::testing
