#include "patchcore/prologue_check.h"

#include <capstone/capstone.h>

#include <cstring>
#include <memory>

namespace patchlab::patchcore {
namespace {

constexpr uint32_t kJumpSize = 5;
constexpr uint8_t kEndbr64[] = {0xf3, 0x0f, 0x1e, 0xfa};

struct CapstoneCloser {
  void operator()(csh* h) const {
    cs_close(h);
    delete h;
  }
};

}  // namespace

Result<PrologueLayout> CheckPrologue(std::string_view function, uint64_t address,
                                     std::span<const uint8_t> code) {
  PrologueLayout layout;
  if (code.size() >= sizeof kEndbr64 && std::memcmp(code.data(), kEndbr64, sizeof kEndbr64) == 0) {
    layout.endbr64 = true;
    layout.patch_offset = sizeof kEndbr64;
  }
  if (code.size() < layout.patch_offset + kJumpSize) {
    return Fail(ErrorCode::kRefused,
                "function {}: too short to patch ({} bytes; rule: at least {} bytes after the "
                "entry{})",
                function, code.size(), kJumpSize, layout.endbr64 ? " endbr64" : "");
  }
  auto handle = std::unique_ptr<csh, CapstoneCloser>(new csh(0));
  if (cs_open(CS_ARCH_X86, CS_MODE_64, handle.get()) != CS_ERR_OK) {
    delete handle.release();
    return Fail(ErrorCode::kInternal, "capstone: cannot open an x86-64 handle");
  }
  cs_option(*handle, CS_OPT_DETAIL, CS_OPT_ON);
  cs_insn* insn = cs_malloc(*handle);
  std::unique_ptr<cs_insn, void (*)(cs_insn*)> insn_owner(insn, [](cs_insn* i) { cs_free(i, 1); });

  const uint8_t* p = code.data();
  size_t left = code.size();
  uint64_t pc = address;
  // First pass: instruction boundaries, and the overwritten span.
  bool span_done = false;
  struct Branch {
    uint64_t from;
    uint64_t to;
  };
  std::vector<Branch> branches;
  while (left > 0) {
    uint64_t at = pc;
    if (!cs_disasm_iter(*handle, &p, &left, &pc, insn)) {
      return Fail(ErrorCode::kRefused,
                  "function {}: undecodable byte {:#04x} at +{:#x} (rule: every byte of the "
                  "function must decode)",
                  function, *p, at - address);
    }
    uint64_t offset = at - address;
    if (!span_done && offset >= layout.patch_offset) {
      layout.patch_size = static_cast<uint32_t>(offset + insn->size - layout.patch_offset);
      if (layout.patch_size >= kJumpSize) span_done = true;
    }
    const cs_detail* d = insn->detail;
    bool relative = false;
    for (uint8_t g = 0; g < d->groups_count; ++g) {
      if (d->groups[g] == CS_GRP_BRANCH_RELATIVE) relative = true;
    }
    if (relative) {
      for (uint8_t i = 0; i < d->x86.op_count; ++i) {
        if (d->x86.operands[i].type == X86_OP_IMM) {
          branches.push_back({at, static_cast<uint64_t>(d->x86.operands[i].imm)});
        }
      }
    }
  }
  if (!span_done) {
    return Fail(ErrorCode::kRefused,
                "function {}: too short to patch (its instructions after the entry end before {} "
                "bytes; rule: whole instructions of at least {} bytes inside the function)",
                function, kJumpSize, kJumpSize);
  }
  const uint64_t lo = address + layout.patch_offset;
  const uint64_t hi = lo + layout.patch_size;
  for (const Branch& b : branches) {
    if (b.to > lo && b.to < hi) {
      return Fail(ErrorCode::kRefused,
                  "function {}: the branch at +{:#x} lands at +{:#x}, inside the {} bytes the "
                  "jump would overwrite (rule: no branch into the overwritten bytes)",
                  function, b.from - address, b.to - address, layout.patch_size);
    }
  }
  return layout;
}

}  // namespace patchlab::patchcore
