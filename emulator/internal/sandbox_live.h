// The state of the run in progress, shared by the sandbox's hooks and the stubs.
#pragma once

#include <capstone/capstone.h>
#include <unicorn/unicorn.h>

#include <array>
#include <cstdint>

#include "base/error.h"
#include "emulator/outcome.h"
#include "emulator/sandbox.h"

namespace patchlab::emulator {

// An Error for a Unicorn call that failed.
inline Error UcError(std::string_view what, uc_err err) {
  return Error(ErrorCode::kInternal, fmt::format("unicorn: {}: {}", what, uc_strerror(err)));
}

struct Sandbox::Live {
  Sandbox* sandbox = nullptr;
  RunOutcome out;
  // A hook or stub already decided how the run ended; uc_emu_start's own
  // return value is then only the consequence of uc_emu_stop.
  bool decided = false;
  uint64_t max_blocks = 0;
  uint64_t last_pc = 0;  // with the instruction hook of an exact run
  csh capstone = 0;

  // Instructions per translated block, so that counting them costs a table
  // lookup per block instead of an instruction hook.
  struct BlockInsns {
    uint64_t addr = ~0ull;
    uint32_t size = 0;
    uint32_t insns = 0;
  };
  std::array<BlockInsns, 4096> block_insns{};

  void Decide(Ending ending, FaultClass fault, uint64_t addr, std::string where) {
    if (decided) return;
    decided = true;
    out.ending = ending;
    out.fault = fault;
    out.fault_addr = addr;
    out.where = std::move(where);
  }
};

}  // namespace patchlab::emulator
