#include "fleet.h"

#include <sstream>
#include <thread>

#include "base/elf_file.h"
#include "base/file_util.h"
#include "patchcore/patch_state.h"

namespace patchlab::patchcore::testing {

Result<pid_t> Fleet::Start(std::vector<std::string> argv,
                           std::vector<std::pair<std::string, std::string>> env) {
  SubprocessOptions o;
  o.argv = std::move(argv);
  o.env_set = std::move(env);
  o.stdout_mode = OutputMode::kFile;
  o.stdout_path = (dir_ / fmt::format("fleet.{}.out", processes_.size())).string();
  o.stderr_to_stdout = true;
  auto p = Subprocess::Start(std::move(o));
  if (!p) return std::unexpected(std::move(p.error()));
  pids_.push_back(p->pid());
  processes_.push_back(std::move(*p));
  return pids_.back();
}

std::map<pid_t, ZLine> Fleet::Lines() const {
  std::map<pid_t, ZLine> out;
  for (size_t i = 0; i < processes_.size(); ++i) {
    auto text = ReadFile(dir_ / fmt::format("fleet.{}.out", i));
    if (!text) continue;
    std::istringstream lines(*text);
    for (std::string line; std::getline(lines, line);) {
      int pid = 0;
      char z[32] = {};
      long wrong = 0;
      if (std::sscanf(line.c_str(), "pid=%d z=%31s wrong=%ld", &pid, z, &wrong) == 3) {
        out[pid] = ZLine{z, wrong};
      }
    }
  }
  return out;
}

std::map<pid_t, ZLine> Fleet::WaitUntil(const std::vector<pid_t>& pids,
                                        const std::function<bool(const ZLine&)>& pred,
                                        int max_ms) const {
  std::map<pid_t, ZLine> lines;
  for (int waited = 0; waited < max_ms; waited += 50) {
    lines = Lines();
    bool all = true;
    for (pid_t pid : pids) {
      auto it = lines.find(pid);
      if (it == lines.end() || !pred(it->second)) {
        all = false;
        break;
      }
    }
    if (all) return lines;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return lines;
}

Status CopyWithBuildId(const std::filesystem::path& from, const std::filesystem::path& to,
                       const std::string& build_id) {
  auto bytes = ReadFile(from);
  if (!bytes) return std::unexpected(bytes.error());
  auto old_id = ParseHexBytes(BuildIdOf(from));
  auto new_id = ParseHexBytes(build_id);
  if (!old_id || !new_id || old_id->size() != new_id->size() || old_id->empty()) {
    return Fail(ErrorCode::kInvalidArgument, "build-ids of different lengths");
  }
  const std::string old_raw(old_id->begin(), old_id->end());
  const size_t at = bytes->find(old_raw);
  if (at == std::string::npos || bytes->find(old_raw, at + 1) != std::string::npos) {
    return Fail(ErrorCode::kInvalidArgument, "{}: its build-id is not there exactly once",
                from.string());
  }
  bytes->replace(at, old_raw.size(), std::string(new_id->begin(), new_id->end()));
  // A new inode, as a package manager replaces a library.
  return WriteFileAtomic(to, *bytes, 0755);
}

std::string BuildIdOf(const std::filesystem::path& path) {
  auto elf = ElfFile::Open(path);
  return elf ? elf->build_id() : std::string();
}

}  // namespace patchlab::patchcore::testing
