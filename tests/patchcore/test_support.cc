#include "test_support.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <sstream>
#include <thread>

#include "base/file_util.h"
#include "patchcore/process_maps.h"
#include "patchcore/process_memory.h"
#include "patchcore/remote_syscall.h"
#include "tests/support/status_matchers.h"

namespace patchlab::patchcore::testing {

std::unique_ptr<Target> Target::Start(const std::string& binary, std::vector<std::string> args,
                                      const std::filesystem::path& dir) {
  auto t = std::make_unique<Target>();
  t->out_ = dir / "target.out";
  SubprocessOptions o;
  o.argv = {binary};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.stdout_mode = OutputMode::kFile;
  o.stdout_path = t->out_.string();
  o.stderr_to_stdout = true;
  auto p = Subprocess::Start(o);
  EXPECT_OK(p);
  if (!p) return nullptr;
  t->process_.emplace(std::move(*p));
  t->WaitFor([](const auto& tick) { return tick.count("calls") && tick.at("calls") > 0; });
  return t;
}

bool Target::Alive() const { return ::kill(pid(), 0) == 0; }

std::map<std::string, long> Target::Tick() const {
  std::map<std::string, long> out;
  auto text = ReadFile(out_);
  if (!text) return out;
  size_t end = text->rfind('\n');
  if (end == std::string::npos) return out;
  size_t start = text->rfind("tick ", end);
  if (start == std::string::npos) return out;
  std::istringstream line(text->substr(start + 5, end - start - 5));
  std::string kv;
  while (line >> kv) {
    size_t eq = kv.find('=');
    if (eq != std::string::npos) out[kv.substr(0, eq)] = std::stol(kv.substr(eq + 1));
  }
  return out;
}

bool Target::WaitFor(const std::function<bool(const std::map<std::string, long>&)>& pred,
                     int max_ms) const {
  for (int waited = 0; waited < max_ms; waited += 10) {
    auto tick = Tick();
    if (!tick.empty() && pred(tick)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

std::vector<std::string> AnonymousCodeMappings(pid_t pid) {
  std::vector<std::string> out;
  std::istringstream maps(ReadFile("/proc/" + std::to_string(pid) + "/maps").value_or(""));
  for (std::string line; std::getline(maps, line);) {
    std::istringstream fields(line);
    std::string range, perms, offset, dev, inode, path;
    fields >> range >> perms >> offset >> dev >> inode >> path;
    if (perms.size() > 2 && perms[2] == 'x' && inode == "0" && path.empty()) out.push_back(line);
  }
  return out;
}

size_t StrandedStubs(pid_t pid) {
  auto maps = ProcessMaps::Read(pid);
  auto memory = ProcessMemory::Open(pid);
  if (!maps || !memory) {
    ADD_FAILURE() << "cannot read pid " << pid;
    return 0;
  }
  return FindStrandedStubs(*memory, *maps).size();
}

SubprocessResult Hotpatch(std::vector<std::string> args) {
  SubprocessOptions o;
  o.argv = {HOTPATCH_BIN};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.timeout = std::chrono::seconds(60);
  auto r = RunSubprocess(o);
  EXPECT_OK(r);
  return r.value_or(SubprocessResult{});
}

Workspace::Workspace() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  // The pid keeps two runs of the suite (two checkouts, or ctest --repeat
  // beside a build) out of each other's folders.
  dir = std::filesystem::path(::testing::TempDir()) / "patchcore" /
        fmt::format("{}.{}-{}", info->test_suite_name(), info->name(), ::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  ::setenv("HOTPATCH_STATE_DIR", (dir / "state").c_str(), 1);
  auto r = Hotpatch({"keygen", "--out", (dir / "keys").string()});
  EXPECT_EQ(r.status.code, 0) << r.stderr_data;
}

Workspace::~Workspace() {
  if (::testing::Test::HasFailure()) return;
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

std::string Workspace::Pack(const std::string& target, const std::string& object,
                            const std::string& id, int seq, std::vector<std::string> extra,
                            bool sign) {
  std::string out = (dir / (id + ".hpk")).string();
  std::vector<std::string> args = {"pack", "--target", target,  "--object",          object,
                                   "--id", id,         "--seq", std::to_string(seq), "-o",
                                   out};
  if (sign) {
    args.push_back("--key");
    args.push_back(key());
  }
  args.insert(args.end(), extra.begin(), extra.end());
  auto r = Hotpatch(args);
  EXPECT_EQ(r.status.code, 0) << r.stderr_data;
  return out;
}

}  // namespace patchlab::patchcore::testing
