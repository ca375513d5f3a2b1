// Journal: the write-ahead record of one apply or revert, so that a patcher
// killed part-way (even by SIGKILL) can be finished by `hotpatch recover`.
//
// Before the first byte of the target changes, the journal lists every write
// the operation will make to live code (address, old bytes, new bytes); every
// mapping it makes is added as soon as it exists. Recovery of an apply writes
// the old bytes back and unmaps what it mapped (rollback); recovery of a
// revert writes the new bytes again and unmaps what the revert frees (roll
// forward), then commits `new_state`. A journal whose `serial` is behind the
// saved state belongs to an operation that committed and is simply removed.
// File: ROOT/PID-STARTTIME/journal.json, 0600, replaced atomically.
//
// Fault injection for tests: HOTPATCH_FAULT=NAME makes FaultPoint(NAME) kill
// the patcher with SIGKILL. Names: mid-staging (a thread runs injected
// calls from an island's stub), after-map, after-write-N (N from 1),
// before-commit.
//
// Thread-safety: value types and functions on distinct files.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"
#include "patchcore/remote_ptr.h"

namespace patchlab::patchcore {

struct JournalWrite {
  RemotePtr addr;
  std::vector<uint8_t> old_bytes;
  std::vector<uint8_t> new_bytes;
};

struct Journal {
  enum class Op { kApply, kRevert };
  Op op = Op::kApply;
  std::string patch_id;
  uint64_t serial = 0;               // the state serial the operation started from
  std::vector<JournalWrite> writes;  // in the order they are made
  std::vector<RemoteRange> mapped;   // made (or about to be made) by this operation
  // The first bytes each mapping gets: recovery unmaps a range only when it
  // still starts with them, so a range never mapped is never touched.
  std::vector<std::vector<uint8_t>> mapped_heads;
  std::vector<RemoteRange> to_unmap;  // freed when the operation completes
  std::string new_state;              // the state to commit when rolling forward

  std::string ToJson() const;
  static Result<Journal> FromJson(std::string_view json, std::string_view origin);
};

Status SaveJournal(const std::filesystem::path& path, const Journal& journal);
// The journal at `path`; kNotFound when there is none.
Result<Journal> LoadJournal(const std::filesystem::path& path);
Status RemoveJournal(const std::filesystem::path& path);

// Kills this process with SIGKILL when $HOTPATCH_FAULT equals `name`.
void FaultPoint(std::string_view name);

}  // namespace patchlab::patchcore
