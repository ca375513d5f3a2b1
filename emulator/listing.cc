#include "emulator/listing.h"

#include <capstone/capstone.h>
#include <fmt/format.h>

#include <algorithm>
#include <vector>

namespace patchlab::emulator {
namespace {

std::vector<std::string> Disassemble(const LoadedFunction& f) {
  std::vector<std::string> lines;
  uint64_t size = f.size != 0 ? f.size : 4096;
  auto bytes = f.elf->ReadAt(f.link_address, size);
  if (!bytes && f.size == 0) {
    // Unsized and near a segment's end: take what the segment holds.
    for (uint64_t s = 2048; s >= 16 && !bytes; s /= 2) bytes = f.elf->ReadAt(f.link_address, s);
  }
  if (!bytes) return {fmt::format("(cannot read code: {})", bytes.error().ToString())};
  csh cs;
  if (cs_open(CS_ARCH_X86, CS_MODE_64, &cs) != CS_ERR_OK) return {"(capstone unavailable)"};
  cs_insn* insn = cs_malloc(cs);
  const uint8_t* code = bytes->data();
  size_t left = bytes->size();
  uint64_t addr = f.entry;
  while (left > 0) {
    uint64_t at = addr;
    if (!cs_disasm_iter(cs, &code, &left, &addr, insn)) {
      lines.push_back(fmt::format("{:x}: (undecodable byte {:02x})", at, *code));
      break;
    }
    lines.push_back(fmt::format("{:x}: {} {}", insn->address, insn->mnemonic, insn->op_str));
    if (f.size == 0 && std::string_view(insn->mnemonic) == "ret") break;
  }
  cs_free(insn, 1);
  cs_close(&cs);
  return lines;
}

}  // namespace

std::string SideBySideListing(const LoadedFunction& old_fn, const LoadedFunction& new_fn) {
  std::vector<std::string> a = Disassemble(old_fn), b = Disassemble(new_fn);
  size_t width = 12;
  for (const std::string& l : a) width = std::max(width, l.size());
  width = std::min<size_t>(width, 60);
  std::string out = fmt::format("{:<{}} | {}\n", fmt::format("old ({} instructions)", a.size()),
                                width, fmt::format("new ({} instructions)", b.size()));
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    std::string l = i < a.size() ? a[i] : "";
    if (l.size() > width) l = l.substr(0, width);
    out += fmt::format("{:<{}} | {}\n", l, width, i < b.size() ? b[i] : "");
  }
  return out;
}

std::vector<std::vector<uint8_t>> ExtractTokens(const LoadedFunction& f) {
  std::vector<std::vector<uint8_t>> tokens;
  uint64_t size = f.size != 0 ? f.size : 1024;
  auto bytes = f.elf->ReadAt(f.link_address, size);
  if (!bytes) return tokens;
  csh cs;
  if (cs_open(CS_ARCH_X86, CS_MODE_64, &cs) != CS_ERR_OK) return tokens;
  cs_option(cs, CS_OPT_DETAIL, CS_OPT_ON);
  cs_insn* insn = cs_malloc(cs);
  const uint8_t* code = bytes->data();
  size_t left = bytes->size();
  uint64_t addr = f.link_address;  // link-time addresses, so that targets can be read from the file
  auto printable = [](uint8_t c) {
    return (c >= 0x20 && c < 0x7f) || c == '\n' || c == '\t' || c == '\r';
  };
  while (left > 0 && cs_disasm_iter(cs, &code, &left, &addr, insn)) {
    const cs_x86& x = insn->detail->x86;
    for (uint8_t i = 0; i < x.op_count; ++i) {
      const cs_x86_op& op = x.operands[i];
      if (op.type == X86_OP_IMM && op.size >= 1 && op.size <= 8) {
        std::vector<uint8_t> t;
        uint64_t v = static_cast<uint64_t>(op.imm);
        for (int b = 0; b < op.size; ++b) t.push_back(static_cast<uint8_t>(v >> (8 * b)));
        while (t.size() > 1 && t.back() == 0) t.pop_back();
        if (std::all_of(t.begin(), t.end(), printable)) tokens.push_back(std::move(t));
      } else if (op.type == X86_OP_MEM && op.mem.base == X86_REG_RIP) {
        uint64_t target = insn->address + insn->size + op.mem.disp;
        for (uint64_t n = 64; n >= 2; n /= 2) {
          auto s = f.elf->ReadAt(target, n);
          if (!s) continue;
          std::vector<uint8_t> t;
          for (uint8_t c : *s) {
            if (c == 0 || !printable(c)) break;
            t.push_back(c);
          }
          if (!t.empty() && t.size() < s->size() && (*s)[t.size()] == 0)
            tokens.push_back(std::move(t));
          break;
        }
      }
    }
    if (f.size == 0 && std::string_view(insn->mnemonic) == "ret") break;
  }
  cs_free(insn, 1);
  cs_close(&cs);
  std::sort(tokens.begin(), tokens.end());
  tokens.erase(std::unique(tokens.begin(), tokens.end()), tokens.end());
  return tokens;
}

}  // namespace patchlab::emulator
