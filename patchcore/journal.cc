#include "patchcore/journal.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "base/file_util.h"
#include "base/json_util.h"
#include "patchcore/patch_state.h"

namespace patchlab::patchcore {
namespace {

using nlohmann::json;

json Range(const RemoteRange& r) {
  return {{"addr", fmt::format("{:#x}", r.start.addr())}, {"size", r.size()}};
}

RemoteRange ParseRange(const json& j) {
  RemotePtr start(std::stoull(j.at("addr").get<std::string>(), nullptr, 16));
  return {start, start + JsonInteger<int64_t>(j, "size")};
}

}  // namespace

std::string Journal::ToJson() const {
  json j;
  j["op"] = op == Op::kApply ? "apply" : "revert";
  j["patch_id"] = patch_id;
  j["serial"] = serial;
  j["writes"] = json::array();
  for (const JournalWrite& w : writes) {
    j["writes"].push_back({{"addr", fmt::format("{:#x}", w.addr.addr())},
                           {"old", HexBytes(w.old_bytes)},
                           {"new", HexBytes(w.new_bytes)}});
  }
  j["mapped"] = json::array();
  for (size_t i = 0; i < mapped.size(); ++i) {
    json r = Range(mapped[i]);
    r["head"] = i < mapped_heads.size() ? HexBytes(mapped_heads[i]) : "";
    j["mapped"].push_back(std::move(r));
  }
  j["to_unmap"] = json::array();
  for (const RemoteRange& r : to_unmap) j["to_unmap"].push_back(Range(r));
  j["new_state"] = new_state;
  return j.dump(1);
}

Result<Journal> Journal::FromJson(std::string_view text, std::string_view origin) {
  auto parsed = ParseJson(text, origin);
  if (!parsed) return std::unexpected(std::move(parsed.error()));
  const json& j = *parsed;
  Journal out;
  try {
    std::string op = j.at("op").get<std::string>();
    if (op != "apply" && op != "revert") {
      return Fail(ErrorCode::kParse, "{}: unknown op '{}'", origin, op);
    }
    out.op = op == "apply" ? Op::kApply : Op::kRevert;
    out.patch_id = j.at("patch_id").get<std::string>();
    out.serial = JsonInteger<uint64_t>(j, "serial");
    for (const json& w : j.at("writes")) {
      auto old_bytes = ParseHexBytes(w.at("old").get<std::string>());
      auto new_bytes = ParseHexBytes(w.at("new").get<std::string>());
      if (!old_bytes || !new_bytes) return Fail(ErrorCode::kParse, "{}: bad write bytes", origin);
      out.writes.push_back({RemotePtr(std::stoull(w.at("addr").get<std::string>(), nullptr, 16)),
                            std::move(*old_bytes), std::move(*new_bytes)});
    }
    for (const json& r : j.at("mapped")) {
      out.mapped.push_back(ParseRange(r));
      auto head = ParseHexBytes(r.value("head", ""));
      if (!head) return Fail(ErrorCode::kParse, "{}: bad mapping head", origin);
      out.mapped_heads.push_back(std::move(*head));
    }
    for (const json& r : j.at("to_unmap")) out.to_unmap.push_back(ParseRange(r));
    out.new_state = j.at("new_state").get<std::string>();
  } catch (const std::exception& e) {
    return Fail(ErrorCode::kParse, "{}: {}", origin, e.what());
  }
  return out;
}

Status SaveJournal(const std::filesystem::path& path, const Journal& journal) {
  return WriteFileAtomic(path, journal.ToJson(), 0600, Durability::kProcessCrash);
}

Result<Journal> LoadJournal(const std::filesystem::path& path) {
  auto text = ReadFile(path);
  if (!text) {
    if (text.error().sys_errno() == ENOENT) {
      return Fail(ErrorCode::kNotFound, "no journal at {}", path.string());
    }
    return std::unexpected(std::move(text.error()));
  }
  return Journal::FromJson(*text, path.string());
}

Status RemoveJournal(const std::filesystem::path& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return FailErrno("unlink " + path.string());
  return {};
}

void FaultPoint(std::string_view name) {
  const char* fault = std::getenv("HOTPATCH_FAULT");
  if (fault && name == fault) ::kill(::getpid(), SIGKILL);
}

}  // namespace patchlab::patchcore
