// Helpers for the patch core's process tests: start a target program with its
// output in a file, read its latest tick line, run the real hotpatch binary,
// and build packages for a test.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/subprocess.h"

namespace patchlab::patchcore::testing {

// One running target; killed when destroyed.
class Target {
 public:
  static std::unique_ptr<Target> Start(const std::string& binary, std::vector<std::string> args,
                                       const std::filesystem::path& dir);
  pid_t pid() const { return process_->pid(); }
  // The counters of the latest complete tick line (calls, wrong, v0..v3, private, z, sig, child).
  std::map<std::string, long> Tick() const;
  // Waits (bounded, for liveness only) until `pred` holds on a fresh tick.
  bool WaitFor(const std::function<bool(const std::map<std::string, long>&)>& pred,
               int max_ms = 20000) const;
  // True while the process has not exited.
  bool Alive() const;

 private:
  std::optional<Subprocess> process_;
  std::filesystem::path out_;
};

SubprocessResult Hotpatch(std::vector<std::string> args);

// The lines of /proc/PID/maps for anonymous executable mappings: where the
// patcher's objects and island pages live (the test programs have none of
// their own).
std::vector<std::string> AnonymousCodeMappings(pid_t pid);
// How many spin stubs with saved registers `pid` still holds (island pages'
// and code caves'): none once every injected call is over or recovered.
size_t StrandedStubs(pid_t pid);

// A scratch folder with a key pair, fresh for each test.
// A scratch folder per test and process, with a key pair and HOTPATCH_STATE_DIR
// inside. Removed when the test passed; kept for a look when it failed.
struct Workspace {
  Workspace();
  ~Workspace();
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  std::filesystem::path dir;
  std::string key() const { return (dir / "keys" / "patch.key").string(); }
  std::string pub() const { return (dir / "keys" / "patch.pub").string(); }
  // hotpatch pack; returns the package path. Fails the test on error.
  std::string Pack(const std::string& target, const std::string& object, const std::string& id,
                   int seq, std::vector<std::string> extra, bool sign = true);
};

}  // namespace patchlab::patchcore::testing
