#include "patchcore/internal/inherited_state.h"

#include <cstring>
#include <set>

#include "base/file_util.h"
#include "base/proc_stat.h"
#include "patchcore/island.h"

namespace patchlab::patchcore::internal {
namespace {

struct Origin {
  pid_t pid;
  uint64_t start_time;
};

// The origins island pages name: anonymous executable pages that start with
// the island marker.
std::vector<Origin> IslandOrigins(const ProcessMaps& maps, const ProcessMemory& memory) {
  std::vector<Origin> out;
  for (const MapEntry& e : maps.entries()) {
    if (!e.exec || !e.path.empty() || e.end - e.start < static_cast<int64_t>(kIslandPageSize)) {
      continue;
    }
    auto head = memory.Read(e.start, 32);
    if (!head || std::memcmp(head->data(), kIslandMagic, sizeof kIslandMagic) != 0) continue;
    uint64_t pid = 0, start = 0;
    std::memcpy(&pid, head->data() + 16, 8);
    std::memcpy(&start, head->data() + 24, 8);
    out.push_back({static_cast<pid_t>(pid), start});
  }
  return out;
}

// Ancestors first (a worker's master), then the makers of the island pages.
std::vector<Origin> Candidates(pid_t pid, const std::vector<Origin>& island_origins) {
  std::vector<Origin> out;
  pid_t at = pid;
  for (int depth = 0; depth < 64; ++depth) {
    auto stat = ReadProcStat(at);
    if (!stat || stat->ppid <= 1) break;
    at = stat->ppid;
    auto parent = ReadProcStat(at);
    if (!parent) break;
    out.push_back({at, parent->start_ticks});
  }
  out.insert(out.end(), island_origins.begin(), island_origins.end());
  return out;
}

std::optional<ProcessState> RecordOf(const Origin& o) {
  const auto file = StateRoot() / fmt::format("{}-{}", o.pid, o.start_time) / "state.json";
  auto text = ReadFile(file);
  if (!text) return std::nullopt;
  auto state = ProcessState::FromJson(*text, file.string());
  if (!state || state->patches.empty()) return std::nullopt;
  return std::move(*state);
}

}  // namespace

std::vector<std::string> StateMismatches(const ProcessState& state, const ProcessMemory& memory,
                                         int* checked) {
  std::vector<std::string> out;
  auto bytes = [&](RemotePtr addr, const std::vector<uint8_t>& want, const std::string& what) {
    ++*checked;
    auto got = memory.Read(addr, want.size());
    if (!got) {
      out.push_back(fmt::format("{} at {}: {}", what, addr, got.error().ToString()));
    } else if (*got != want) {
      out.push_back(fmt::format("{} at {}: found {}, expected {}", what, addr, HexBytes(*got),
                                HexBytes(want)));
    }
  };
  for (const SiteState& site : state.sites) {
    bytes(site.patch_at, site.jump, "entry jump of " + site.function);
    auto target = state.LiveTarget(site.entry);
    if (!target) {
      out.push_back("site " + site.function + " has no live patch");
      continue;
    }
    bytes(site.slot, EncodeSlot(*target), "island slot of " + site.function);
  }
  for (const IslandState& is : state.islands) {
    bytes(is.addr, std::vector<uint8_t>(kIslandMagic, kIslandMagic + sizeof kIslandMagic),
          "island marker");
  }
  for (const PatchState& p : state.patches) {
    for (const SegmentState& s : p.segments) {
      ++*checked;
      auto got = memory.Read(s.addr, s.size);
      std::string_view view;
      if (got) view = std::string_view(reinterpret_cast<const char*>(got->data()), got->size());
      if (!got || Sha256Hex(view) != s.sha256) {
        out.push_back(fmt::format("code of patch {} at {} ({} bytes) differs from what was loaded",
                                  p.id, s.addr, s.size));
      }
    }
  }
  return out;
}

Result<std::optional<InheritedState>> FindInheritedState(pid_t pid, uint64_t start_time,
                                                         const ProcessMaps& maps,
                                                         const ProcessMemory& memory) {
  const auto islands = IslandOrigins(maps, memory);
  if (islands.empty()) return std::optional<InheritedState>();
  std::set<std::pair<pid_t, uint64_t>> tried;
  for (const Origin& o : Candidates(pid, islands)) {
    if (o.pid == pid || !tried.insert({o.pid, o.start_time}).second) continue;
    auto record = RecordOf(o);
    if (!record) continue;
    int checked = 0;
    if (!StateMismatches(*record, memory, &checked).empty()) continue;
    record->pid = pid;
    record->start_time = start_time;
    return std::optional<InheritedState>(InheritedState{std::move(*record), o.pid});
  }
  if (islands.front().pid == pid) {
    return Fail(ErrorCode::kRefused,
                "pid {} holds island pages of an earlier apply, but its record is gone; restart "
                "the process to run the code on disk",
                pid);
  }
  return Fail(ErrorCode::kRefused,
              "pid {} runs patched code it inherited from pid {} (its island pages), but no "
              "record of a patched process matches it any more (the stack changed since the "
              "fork, or the record is gone); restart the process to run the code on disk",
              pid, islands.front().pid);
}

}  // namespace patchlab::patchcore::internal
