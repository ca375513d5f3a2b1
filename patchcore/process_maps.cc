#include "patchcore/process_maps.h"

#include <sys/sysmacros.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <set>

#include "base/file_util.h"
#include "base/proc_stat.h"

namespace patchlab::patchcore {
namespace {

constexpr uint64_t kPage = 4096;
// Leave the lowest addresses alone (mmap_min_addr and null-pointer catching).
constexpr uint64_t kLowest = 0x10000;
// The top of the user address space on x86-64 with 4-level paging.
constexpr uint64_t kUserTop = 0x7ffffffff000ull;

}  // namespace

Result<ProcessMaps> ProcessMaps::Read(pid_t pid) {
  auto text = ReadFile(fmt::format("/proc/{}/maps", pid));
  if (!text) {
    if (text.error().sys_errno() == ENOENT || text.error().sys_errno() == ESRCH) {
      return Fail(ErrorCode::kTargetGone, "pid {} is gone", pid);
    }
    return std::unexpected(std::move(text.error()));
  }
  return Parse(*text, fmt::format("/proc/{}/maps", pid));
}

Result<ProcessMaps> ProcessMaps::Parse(std::string_view text, std::string_view origin) {
  ProcessMaps maps;
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string line(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    if (line.empty()) continue;
    uint64_t start = 0, end = 0, offset = 0, inode = 0;
    char perms[5] = {};
    unsigned dev_major = 0, dev_minor = 0;
    int path_pos = -1;
    if (std::sscanf(line.c_str(), "%" SCNx64 "-%" SCNx64 " %4s %" SCNx64 " %x:%x %" SCNu64 " %n",
                    &start, &end, perms, &offset, &dev_major, &dev_minor, &inode, &path_pos) < 7) {
      return Fail(ErrorCode::kParse, "{}:{}: malformed line '{}'", origin, line_no, line);
    }
    MapEntry e;
    e.start = RemotePtr(start);
    e.end = RemotePtr(end);
    e.read = perms[0] == 'r';
    e.write = perms[1] == 'w';
    e.exec = perms[2] == 'x';
    e.shared = perms[3] == 's';
    e.offset = offset;
    e.dev = makedev(dev_major, dev_minor);
    e.inode = inode;
    if (path_pos > 0 && static_cast<size_t>(path_pos) < line.size()) e.path = line.substr(path_pos);
    maps.entries_.push_back(std::move(e));
  }
  std::sort(maps.entries_.begin(), maps.entries_.end(),
            [](const MapEntry& a, const MapEntry& b) { return a.start < b.start; });
  return maps;
}

std::string MapEntry::MapFilesName() const {
  return fmt::format("{:x}-{:x}", start.addr(), end.addr());
}

const MapEntry* ProcessMaps::Find(RemotePtr addr) const {
  auto it = std::upper_bound(entries_.begin(), entries_.end(), addr,
                             [](RemotePtr a, const MapEntry& e) { return a < e.start; });
  if (it == entries_.begin()) return nullptr;
  --it;
  return addr < it->end ? &*it : nullptr;
}

std::vector<std::string> ProcessMaps::FilePaths() const {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const MapEntry& e : entries_) {
    if (e.is_file() && seen.insert(e.path).second) out.push_back(e.path);
  }
  return out;
}

std::vector<const MapEntry*> ProcessMaps::MappingsOf(const std::string& path) const {
  std::vector<const MapEntry*> out;
  for (const MapEntry& e : entries_) {
    if (e.path == path) out.push_back(&e);
  }
  return out;
}

std::optional<RemotePtr> ProcessMaps::FindFreeNear(RemotePtr near, uint64_t size,
                                                   uint64_t reach) const {
  size = (size + kPage - 1) & ~(kPage - 1);
  const uint64_t n = near.addr();
  const uint64_t lo_limit = n > reach ? std::max(n - reach, kLowest) : kLowest;
  const uint64_t hi_limit = std::min(n + reach, kUserTop);
  std::optional<uint64_t> best;
  auto consider = [&](uint64_t gap_start, uint64_t gap_end) {
    gap_start = std::max(gap_start, lo_limit);
    gap_end = std::min(gap_end, hi_limit);
    gap_start = (gap_start + kPage - 1) & ~(kPage - 1);
    gap_end &= ~(kPage - 1);
    if (gap_end <= gap_start || gap_end - gap_start < size) return;
    // The candidate inside this gap closest to `near`.
    uint64_t cand;
    if (gap_end <= n) {
      cand = gap_end - size;
    } else if (gap_start >= n) {
      cand = gap_start;
    } else {
      cand = std::min((n & ~(kPage - 1)), gap_end - size);
    }
    auto dist = [&](uint64_t c) {
      uint64_t far_end = c + size;
      uint64_t d1 = c > n ? c - n : n - c;
      uint64_t d2 = far_end > n ? far_end - n : n - far_end;
      return std::max(d1, d2);
    };
    if (dist(cand) > reach) return;
    if (!best || dist(cand) < dist(*best)) best = cand;
  };
  uint64_t prev_end = kLowest;
  for (const MapEntry& e : entries_) {
    if (e.start.addr() > prev_end) consider(prev_end, e.start.addr());
    prev_end = std::max(prev_end, e.end.addr());
  }
  consider(prev_end, kUserTop);
  if (!best) return std::nullopt;
  return RemotePtr(*best);
}

void ProcessMaps::Reserve(RemoteRange range) {
  MapEntry e;
  e.start = range.start;
  e.end = range.end;
  e.path = "[reserved]";
  auto it =
      std::upper_bound(entries_.begin(), entries_.end(), e,
                       [](const MapEntry& a, const MapEntry& b) { return a.start < b.start; });
  entries_.insert(it, std::move(e));
}

Result<uint64_t> ProcessStartTime(pid_t pid) {
  auto stat = ReadProcStat(pid);
  if (!stat) return std::unexpected(stat.error());
  return stat->start_ticks;
}

}  // namespace patchlab::patchcore
