#include "patchcore/patch_state.h"

#include <fcntl.h>
#include <sys/file.h>

#include <nlohmann/json.hpp>

#include "base/file_util.h"
#include "base/json_util.h"
#include "patchcore/process_maps.h"

namespace patchlab::patchcore {
namespace {

using nlohmann::json;

std::string Hex(RemotePtr p) { return fmt::format("{:#x}", p.addr()); }

RemotePtr Ptr(const json& j) { return RemotePtr(std::stoull(j.get<std::string>(), nullptr, 16)); }

}  // namespace

std::string HexBytes(const std::vector<uint8_t>& bytes) {
  std::string out;
  for (uint8_t b : bytes) out += fmt::format("{:02x}", b);
  return out;
}

Result<std::vector<uint8_t>> ParseHexBytes(std::string_view hex) {
  if (hex.size() % 2) return Fail(ErrorCode::kParse, "odd-length hex string");
  std::vector<uint8_t> out;
  for (size_t i = 0; i < hex.size(); i += 2) {
    auto digit = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      return -1;
    };
    int hi = digit(hex[i]), lo = digit(hex[i + 1]);
    if (hi < 0 || lo < 0) return Fail(ErrorCode::kParse, "bad hex digit in '{}'", hex);
    out.push_back(static_cast<uint8_t>(hi * 16 + lo));
  }
  return out;
}

std::filesystem::path StateRoot() {
  const char* env = std::getenv("HOTPATCH_STATE_DIR");
  return env && *env ? std::filesystem::path(env) : std::filesystem::path("/run/hotpatch");
}

std::string ProcessState::ToJson() const {
  json j;
  j["pid"] = pid;
  j["start_time"] = start_time;
  j["serial"] = serial;
  j["patches"] = json::array();
  for (const PatchState& p : patches) {
    json jp = {{"id", p.id},
               {"seq", p.seq},
               {"package_sha256", p.package_sha256},
               {"module", p.module},
               {"mapping", {{"addr", Hex(p.mapping.start)}, {"size", p.mapping.size()}}}};
    jp["segments"] = json::array();
    for (const SegmentState& s : p.segments) {
      jp["segments"].push_back({{"addr", Hex(s.addr)}, {"size", s.size}, {"sha256", s.sha256}});
    }
    jp["depends"] = p.depends;
    jp["functions"] = json::array();
    for (const PatchFunctionState& f : p.functions) {
      jp["functions"].push_back({{"name", f.name},
                                 {"new_name", f.new_name},
                                 {"old_addr", Hex(f.old_addr)},
                                 {"new_addr", Hex(f.new_addr)}});
    }
    j["patches"].push_back(std::move(jp));
  }
  j["sites"] = json::array();
  for (const SiteState& s : sites) {
    j["sites"].push_back({{"function", s.function},
                          {"module", s.module},
                          {"entry", Hex(s.entry)},
                          {"size", s.size},
                          {"patch_at", Hex(s.patch_at)},
                          {"original", HexBytes(s.original)},
                          {"jump", HexBytes(s.jump)},
                          {"slot", Hex(s.slot)},
                          {"island", Hex(s.island)}});
  }
  j["islands"] = json::array();
  for (const IslandState& i : islands) {
    j["islands"].push_back({{"addr", Hex(i.addr)},
                            {"size", i.size},
                            {"module", i.module},
                            {"next_slot", i.next_slot}});
  }
  return j.dump(2);
}

Result<ProcessState> ProcessState::FromJson(std::string_view text, std::string_view origin) {
  auto parsed = ParseJson(text, origin);
  if (!parsed) return std::unexpected(std::move(parsed.error()));
  const json& j = *parsed;
  ProcessState s;
  try {
    s.pid = JsonInteger<pid_t>(j, "pid");
    s.start_time = JsonInteger<uint64_t>(j, "start_time");
    s.serial = JsonInteger<uint64_t>(j, "serial");
    for (const json& jp : j.at("patches")) {
      PatchState p;
      p.id = jp.at("id").get<std::string>();
      p.seq = JsonInteger<uint64_t>(jp, "seq");
      p.package_sha256 = jp.at("package_sha256").get<std::string>();
      p.module = jp.at("module").get<std::string>();
      p.mapping.start = Ptr(jp.at("mapping").at("addr"));
      p.mapping.end = p.mapping.start + JsonInteger<int64_t>(jp.at("mapping"), "size");
      if (jp.contains("depends")) p.depends = jp.at("depends").get<std::vector<std::string>>();
      for (const json& js : jp.at("segments")) {
        p.segments.push_back({Ptr(js.at("addr")), JsonInteger<uint64_t>(js, "size"),
                              js.at("sha256").get<std::string>()});
      }
      for (const json& jf : jp.at("functions")) {
        p.functions.push_back({jf.at("name").get<std::string>(),
                               jf.at("new_name").get<std::string>(), Ptr(jf.at("old_addr")),
                               Ptr(jf.at("new_addr"))});
      }
      s.patches.push_back(std::move(p));
    }
    for (const json& js : j.at("sites")) {
      SiteState site;
      site.function = js.at("function").get<std::string>();
      site.module = js.at("module").get<std::string>();
      site.entry = Ptr(js.at("entry"));
      site.size = JsonInteger<uint64_t>(js, "size");
      site.patch_at = Ptr(js.at("patch_at"));
      auto original = ParseHexBytes(js.at("original").get<std::string>());
      auto jump = ParseHexBytes(js.at("jump").get<std::string>());
      if (!original || !jump)
        return Fail(ErrorCode::kParse, "{}: bad bytes of site {}", origin, site.function);
      site.original = std::move(*original);
      site.jump = std::move(*jump);
      site.slot = Ptr(js.at("slot"));
      site.island = Ptr(js.at("island"));
      s.sites.push_back(std::move(site));
    }
    for (const json& ji : j.at("islands")) {
      s.islands.push_back({Ptr(ji.at("addr")), JsonInteger<uint64_t>(ji, "size"),
                           ji.at("module").get<std::string>(),
                           JsonInteger<uint64_t>(ji, "next_slot")});
    }
  } catch (const std::exception& e) {
    return Fail(ErrorCode::kParse, "{}: {}", origin, e.what());
  }
  return s;
}

const PatchState* ProcessState::FindPatch(std::string_view id) const {
  for (const PatchState& p : patches) {
    if (p.id == id) return &p;
  }
  return nullptr;
}

SiteState* ProcessState::FindSite(RemotePtr entry) {
  for (SiteState& s : sites) {
    if (s.entry == entry) return &s;
  }
  return nullptr;
}

const SiteState* ProcessState::FindSite(RemotePtr entry) const {
  for (const SiteState& s : sites) {
    if (s.entry == entry) return &s;
  }
  return nullptr;
}

std::optional<RemotePtr> ProcessState::LiveTarget(RemotePtr entry) const {
  for (auto it = patches.rbegin(); it != patches.rend(); ++it) {
    for (const PatchFunctionState& f : it->functions) {
      if (f.old_addr == entry) return f.new_addr;
    }
  }
  return std::nullopt;
}

uint64_t ProcessState::MaxSeq() const {
  uint64_t m = 0;
  for (const PatchState& p : patches) m = std::max(m, p.seq);
  return m;
}

Result<StateStore> StateStore::Open(pid_t pid) {
  auto start = ProcessStartTime(pid);
  if (!start) return Fail(ErrorCode::kTargetGone, "pid {} does not exist", pid);
  StateStore store;
  store.pid_ = pid;
  store.start_time_ = *start;
  std::filesystem::path root = StateRoot();
  if (auto st = MakeDirs(root, 0700); !st) return std::unexpected(std::move(st.error()));
  store.dir_ = root / fmt::format("{}-{}", pid, *start);
  if (auto st = MakeDirs(store.dir_, 0700); !st) return std::unexpected(std::move(st.error()));
  std::string lock_path = (store.dir_ / "lock").string();
  store.lock_.Reset(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!store.lock_) return FailErrno("open " + lock_path);
  if (::flock(store.lock_.get(), LOCK_EX) != 0) return FailErrno("lock " + lock_path);
  return store;
}

Result<ProcessState> StateStore::Load() const {
  std::filesystem::path file = dir_ / "state.json";
  auto text = ReadFile(file);
  if (!text) {
    if (text.error().sys_errno() == ENOENT) {
      ProcessState empty;
      empty.pid = pid_;
      empty.start_time = start_time_;
      return empty;
    }
    return std::unexpected(std::move(text.error()));
  }
  auto state = ProcessState::FromJson(*text, file.string());
  if (!state) return state;
  if (state->pid != pid_ || state->start_time != start_time_) {
    return Fail(ErrorCode::kParse, "{}: recorded for pid {} started at {}, not this process",
                file.string(), state->pid, state->start_time);
  }
  return state;
}

Status StateStore::Save(const ProcessState& state) const {
  return WriteFileAtomic(dir_ / "state.json", state.ToJson(), 0600, Durability::kProcessCrash);
}

}  // namespace patchlab::patchcore
