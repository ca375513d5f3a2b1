#include "patchcore/internal/rollback_guard.h"

#include <sys/mman.h>

#include <cstdlib>

#include "base/log.h"

namespace patchlab::patchcore::internal {

RollbackGuard::~RollbackGuard() {
  if (committed_) return;
  if (auto st = Undo(); !st) {
    Log("patchcore")
        ->error("pid {}: {}; run `hotpatch recover`", memory_.pid(), st.error().ToString());
  }
}

Status RollbackGuard::Write(const JournalWrite& w) {
  if (auto st = memory_.Write(w.addr, w.new_bytes); !st) return st;
  done_.push_back(w);
  return {};
}

Status RollbackGuard::Map(RemoteRange range, int prot) {
  if (!sys_) std::abort();  // a caller that maps must hand in its RemoteSyscall
  auto got = sys_->Mmap(range.start, range.size(), prot,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE);
  if (!got) return std::unexpected(std::move(got.error()));
  if (*got != range.start) {
    // A kernel without MAP_FIXED_NOREPLACE treats it as a hint.
    (void)sys_->Munmap(*got, range.size());
    return Fail(ErrorCode::kIo, "pid {}: {} is no longer free", memory_.pid(), range.start);
  }
  mapped_.push_back(range);
  return {};
}

Status RollbackGuard::Undo() {
  committed_ = true;  // once: a second undo would write stale bytes
  while (!done_.empty()) {
    const JournalWrite& w = done_.back();
    // SAFETY: the caller holds every thread, and the bytes written back are
    // the ones this guard replaced moments ago while they were held too: a
    // jump nobody has executed since, or a slot nobody jumps to.
    if (auto st = memory_.Write(w.addr, w.old_bytes); !st) {
      return Fail(ErrorCode::kIo, "rollback of {} in pid {} failed: {}", w.addr, memory_.pid(),
                  st.error().ToString());
    }
    done_.pop_back();
  }
  for (const RemoteRange& r : mapped_) {
    if (auto st = sys_->Munmap(r.start, r.size()); !st) {
      Log("patchcore")->warn("pid {}: {}", memory_.pid(), st.error().ToString());
    }
  }
  mapped_.clear();
  return {};
}

}  // namespace patchlab::patchcore::internal
