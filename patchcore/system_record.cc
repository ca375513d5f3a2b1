#include "patchcore/system_record.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/file_util.h"
#include "base/proc_stat.h"
#include "patchcore/patch_state.h"

namespace patchlab::patchcore {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

fs::path SystemDir() { return StateRoot() / "system"; }

// Patch ids become file names: keep them to a safe alphabet.
Status CheckId(const std::string& id) {
  const bool safe =
      !id.empty() && id.size() <= 128 && id[0] != '.' &&
      std::all_of(id.begin(), id.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
      });
  if (!safe) return Fail(ErrorCode::kInvalidArgument, "patch id '{}' cannot name a file", id);
  return {};
}

Result<SystemRecord> ParseRecord(const std::string& text, const std::string& origin) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) return Fail(ErrorCode::kParse, "{}: not JSON", origin);
  try {
    return SystemRecord{j.at("id").get<std::string>(), j.at("seq").get<uint64_t>(),
                        j.at("module").get<std::string>(), j.at("build_id").get<std::string>(),
                        j.at("package_sha256").get<std::string>()};
  } catch (const std::exception& e) {
    return Fail(ErrorCode::kParse, "{}: {}", origin, e.what());
  }
}

}  // namespace

Status SaveSystemRecord(const SystemRecord& r) {
  if (auto st = CheckId(r.id); !st) return st;
  if (auto st = MakeDirs(SystemDir(), 0700); !st) return st;
  json j = {{"id", r.id},
            {"seq", r.seq},
            {"module", r.module},
            {"build_id", r.build_id},
            {"package_sha256", r.package_sha256}};
  return WriteFileAtomic(SystemDir() / (r.id + ".json"), j.dump(1), 0600);
}

Result<std::vector<SystemRecord>> LoadSystemRecords() {
  std::vector<SystemRecord> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(SystemDir(), ec)) {
    if (e.path().extension() != ".json" || e.path().filename().string()[0] == '.') continue;
    auto text = ReadFile(e.path());
    if (!text) return std::unexpected(std::move(text.error()));
    auto record = ParseRecord(*text, e.path().string());
    if (!record) return std::unexpected(std::move(record.error()));
    out.push_back(std::move(*record));
  }
  std::sort(out.begin(), out.end(),
            [](const SystemRecord& a, const SystemRecord& b) { return a.id < b.id; });
  return out;
}

Status RemoveSystemRecord(const std::string& id) {
  if (auto st = CheckId(id); !st) return st;
  const fs::path file = SystemDir() / (id + ".json");
  if (::unlink(file.c_str()) != 0 && errno != ENOENT) return FailErrno("unlink " + file.string());
  return {};
}

std::vector<RecordedProcess> LiveRecordedProcesses() {
  std::vector<RecordedProcess> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(StateRoot(), ec)) {
    const std::string name = e.path().filename().string();
    const size_t dash = name.find('-');
    if (dash == std::string::npos || dash == 0) continue;
    RecordedProcess p;
    char* end = nullptr;
    p.pid = static_cast<pid_t>(std::strtol(name.c_str(), &end, 10));
    if (end != name.c_str() + dash) continue;
    p.start_time = std::strtoull(name.c_str() + dash + 1, &end, 10);
    if (*end != '\0' || p.pid <= 0) continue;
    auto stat = ReadProcStat(p.pid);
    if (!stat || stat->start_ticks != p.start_time || HasEndedState(stat->state)) continue;
    out.push_back(p);
  }
  std::sort(out.begin(), out.end(),
            [](const RecordedProcess& a, const RecordedProcess& b) { return a.pid < b.pid; });
  return out;
}

}  // namespace patchlab::patchcore
