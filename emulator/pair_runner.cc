#include "emulator/pair_runner.h"

#include <elf.h>
#include <unicorn/unicorn.h>

#include <algorithm>
#include <cassert>
#include <cstring>
#include <filesystem>
#include <optional>
#include <set>

#include "base/function_name.h"
#include "base/log.h"
#include "emulator/callback.h"
#include "emulator/image_linker.h"
#include "emulator/layout.h"

namespace patchlab::emulator {

Result<FunctionRef> FunctionRef::Parse(std::string_view text) {
  // The last ':' that is not half of a C++ '::'.
  size_t colon = std::string_view::npos;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != ':') continue;
    if (i + 1 < text.size() && text[i + 1] == ':') {
      ++i;
      continue;
    }
    colon = i;
  }
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size()) {
    return Fail(ErrorCode::kInvalidArgument, "'{}': expected ELF:SYMBOL", text);
  }
  return FunctionRef{std::string(text.substr(0, colon)), std::string(text.substr(colon + 1))};
}

Result<const ElfSymbol*> FindFunction(const ElfFile& elf, const std::string& symbol,
                                      uint64_t* address) {
  auto match = FindFunctionByName(elf, symbol);
  if (!match) return std::unexpected(match.error());
  *address = match->address;
  return match->symbol;  // nullptr for an address no symbol covers (a stripped file)
}

namespace {

// A fast sandbox maps const buffers read-only: nothing need be compared or
// refilled there after a run, and a run that writes through one anyway is
// re-run in a counting sandbox, where every argument page is writable.
Status MapArgPages(Sandbox& sb, const Signature& sig, RunMode mode) {
  for (size_t i = 0; i < sig.params.size(); ++i) {
    const Param& p = sig.params[i];
    if (!p.is_pointer) continue;
    const int prot =
        mode == RunMode::kFast && p.pointee_const ? UC_PROT_READ : UC_PROT_READ | UC_PROT_WRITE;
    auto m = sb.Map(ArgPage(i), kArgBytes, prot, RegionKind::kArg, fmt::format("{}", p.name));
    if (!m) return std::unexpected(m.error());
  }
  return {};
}

}  // namespace

Result<std::unique_ptr<Sandbox>> PairRunner::BuildSide(int side, RunMode mode) {
  SandboxConfig config;
  config.max_blocks = max_blocks_;
  config.mode = mode;
  config.watchdog = watchdog_.get();
  config.cpu = &cpu_;
  config.syscall_seed = syscall_seed_;
  config.deny_syscalls = deny_syscalls_;
  auto sb = Sandbox::Create(config);
  if (!sb) return std::unexpected(sb.error());
  // Generated callbacks first, so that every sandbox has them at the same
  // stub addresses.
  for (size_t i = 0; i < sig_.params.size(); ++i) {
    const Param& p = sig_.params[i];
    if (p.kind != ValueKind::kFunction || !p.callback_target.empty()) continue;
    for (int b = 0; b < kCallbackBehaviours; ++b)
      callback_slots_[i][b] = (*sb)->AddCallback(p.callback, b);
  }
  const SideLayout& layout = layout_.sides[side];
  ImageLinker linker(**sb, ld_so_, ifuncs_[side]);
  for (const SideImage& image : layout.images) {
    auto added = linker.Add(image.elf, image.bias, image.label, image.lookup);
    if (!added) return std::unexpected(added.error());
  }
  if (auto s = MapArgPages(**sb, sig_, mode); !s) return std::unexpected(s.error());
  if (auto s = MapReturnBuffer(**sb); !s) return std::unexpected(s.error());
  if (auto s = linker.Link(); !s) return std::unexpected(s.error());
  auto entry = linker.EntryOf(layout.function_image, layout.symbol, layout.address);
  if (!entry) return std::unexpected(entry.error());
  SetFunction(side, layout, *entry);
  if (auto s = FindCallbackTargets(linker, side); !s) return std::unexpected(s.error());
  if (auto s = (*sb)->Freeze(); !s) return std::unexpected(s.error());
  return sb;
}

void PairRunner::PairGlobals() {
  const SideImage& old_program = layout_.sides[0].images[0];
  const SideImage& new_program = layout_.sides[1].images[0];
  separate_.program[0] = old_program.elf.get();
  separate_.program[1] = new_program.elf.get();
  separate_.bias[0] = old_program.bias;
  separate_.bias[1] = new_program.bias;
  auto writable = [](const ElfFile& elf, uint64_t addr) {
    for (const ElfSegment& s : elf.LoadSegments()) {
      if ((s.flags & PF_W) != 0 && addr - s.vaddr < s.memsz) return true;
    }
    return false;
  };
  std::set<std::string> seen;
  for (const ElfSymbol& s : old_program.elf->symbols()) {
    // Variables by name; a static local's numbered suffix (counter.3) is the
    // compiler's and differs between builds.
    if (s.type != SymbolType::kObject || !s.defined || s.size == 0 ||
        s.name.find('.') != std::string::npos || !seen.insert(s.name).second ||
        !writable(*old_program.elf, s.value))
      continue;
    const ElfSymbol* n = new_program.elf->FindSymbol(s.name);
    if (n == nullptr || !n->defined || n->type != SymbolType::kObject || n->size != s.size)
      continue;
    separate_.globals.push_back(
        {s.name, old_program.bias + s.value, new_program.bias + n->value, s.size});
  }
  AddNote(
      fmt::format("new is {}: it runs in its own address space; {} global variables of the "
                  "same name and size are compared by name",
                  layout_.why_separate, separate_.globals.size()));
}

Status PairRunner::MapReturnBuffer(Sandbox& sb) {
  CallShape shape;
  shape.sse_entry = plan_.needs_sse_entry;
  shape.stack_bytes = plan_.stack_bytes;
  // A scalar returned in rax alone is compared from RunOutcome::ret (as
  // comparator.cc reads it): reading its image would cost a batch of
  // register reads per run for nothing.
  const bool rax_only = sig_.ret_kind == ValueKind::kVoid || sig_.ret_kind == ValueKind::kPointer ||
                        (sig_.ret_kind == ValueKind::kInteger && sig_.ret_width <= 8);
  if (!rax_only) {
    shape.ret = plan_.ret;
    shape.return_size = plan_.return_size;
  }
  if (plan_.hidden_return) {
    // Flush against the page's end, 16-aligned: a write past it faults.
    return_buffer_ = kReturnBuffer + kPageSize - (plan_.return_size + 15) / 16 * 16;
    shape.return_buffer = return_buffer_;
    auto m = sb.Map(kReturnBuffer, kPageSize, UC_PROT_READ | UC_PROT_WRITE, RegionKind::kReturn,
                    "return value");
    if (!m) return std::unexpected(m.error());
  }
  sb.SetCallShape(std::move(shape));
  return {};
}

Status PairRunner::FindCallbackTargets(ImageLinker& linker, int side) {
  for (size_t i = 0; i < sig_.params.size(); ++i) {
    const Param& p = sig_.params[i];
    if (p.kind != ValueKind::kFunction || p.callback_target.empty()) continue;
    // The function the annotation names, in the side's program (image 0).
    const ElfFile& elf = *linker.image(0).elf;
    auto match = FindFunctionByName(elf, p.callback_target);
    if (!match) {
      return std::unexpected(
          std::move(match.error())
              .AddContext(fmt::format("parameter '{}': fn = {}", p.name, p.callback_target)));
    }
    auto at = linker.EntryOf(0, match->symbol, match->address);
    if (!at) return std::unexpected(at.error());
    callback_targets_[side][i] = *at;
  }
  return {};
}

void PairRunner::AddNote(std::string note) {
  if (std::find(notes_.begin(), notes_.end(), note) == notes_.end())
    notes_.push_back(std::move(note));
}

void PairRunner::SetFunction(int side, const SideLayout& layout, uint64_t entry) {
  LoadedFunction& f = side == 0 ? old_fn_ : new_fn_;
  const SideImage& image = layout.images[layout.function_image];
  f.elf = image.elf;
  f.entry = entry;
  f.link_address = entry - image.bias;
  const ElfSymbol* at =
      f.link_address == layout.address ? layout.symbol : image.elf->SymbolAt(f.link_address);
  f.size = at != nullptr ? at->size : 0;
  if (f.link_address != layout.address && layout.symbol != nullptr) {
    AddNote(fmt::format("{}: {} is an IFUNC; a {} CPU runs {} at {:#x}", side == 0 ? "old" : "new",
                        Demangle(layout.symbol->name), cpu_.name,
                        at != nullptr ? at->name : "the code", f.link_address));
  }
}

Result<std::unique_ptr<PairRunner>> PairRunner::Create(const Signature& sig,
                                                       const FunctionRef& old_ref,
                                                       const FunctionRef& new_ref,
                                                       uint64_t max_blocks) {
  PairOptions options;
  options.max_blocks = max_blocks;
  return Create(sig, old_ref, new_ref, options);
}

Result<std::unique_ptr<PairRunner>> PairRunner::Create(const Signature& sig,
                                                       const FunctionRef& old_ref,
                                                       const FunctionRef& new_ref,
                                                       const PairOptions& options) {
  std::unique_ptr<PairRunner> pr(new PairRunner());
  pr->sig_ = sig;
  auto plan = PlanCall(sig);
  if (!plan) return std::unexpected(plan.error());
  pr->plan_ = std::move(*plan);
  pr->max_blocks_ = options.max_blocks;
  pr->syscall_seed_ = options.seed;
  pr->deny_syscalls_ = options.deny_syscalls;
  auto cpu = CpuModelByName(options.cpu);
  if (!cpu) return std::unexpected(cpu.error());
  pr->cpu_ = std::move(*cpu);
  auto layout = PlanLayout(old_ref, new_ref);
  if (!layout) return std::unexpected(layout.error());
  pr->layout_ = std::move(*layout);
  if (pr->layout_.separate_spaces) pr->PairGlobals();
  auto ld_so = LdSoData::Create(pr->layout_.glibc_libraries, pr->cpu_);
  if (!ld_so) return std::unexpected(ld_so.error());
  pr->ld_so_ = std::move(*ld_so);
  pr->watchdog_ = std::make_unique<RunWatchdog>();
  pr->fast_tick_limit_ = RunWatchdog::MinTicksFor(options.max_blocks);
  for (RunMode mode : {RunMode::kFast, RunMode::kCounted}) {
    auto o = pr->BuildSide(0, mode);
    if (!o) return std::unexpected(o.error());
    auto n = pr->BuildSide(1, mode);
    if (!n) return std::unexpected(n.error());
    (mode == RunMode::kFast ? pr->old_fast_ : pr->old_counted_) = std::move(*o);
    (mode == RunMode::kFast ? pr->new_fast_ : pr->new_counted_) = std::move(*n);
  }
  return pr;
}

uint64_t PairRunner::PlacePointer(Sandbox& sb, size_t i, size_t page, const Input& in) {
  const Param& p = sig_.params[i];
  const ArgValue& v = in.args[i];
  if (v.is_null) return 0;
  const uint64_t size = PlacedSize(p, v);
  const uint64_t offset = in.leading ? 0 : kArgBytes - size;
  uint8_t* host = sb.PlaceInArgPage(page, offset, size);
  if (!v.bytes.empty()) std::memcpy(host, v.bytes.data(), v.bytes.size());
  if (p.cstring) host[v.bytes.size()] = 0;
  return ArgPage(i) + offset;
}

uint64_t PairRunner::Address(Sandbox& sb, int side, size_t i, size_t* page, const Input& in) {
  const Param& p = sig_.params[i];
  if (p.kind == ValueKind::kFunction) {
    if (!p.callback_target.empty()) return callback_targets_[side][i];
    return callback_slots_[i][in.args[i].value % kCallbackBehaviours];
  }
  if (p.kind != ValueKind::kPointer) return 0;
  return PlacePointer(sb, i, (*page)++, in);
}

void PairRunner::Place(Sandbox& sb, int side, const Input& in, CallFrame& frame) {
  size_t page = 0;  // pointer parameters have argument pages in order
  if (plan_.simple) {
    for (size_t i = 0; i < sig_.params.size(); ++i) {
      const Param& p = sig_.params[i];
      frame.gpr[i] =
          p.kind == ValueKind::kInteger ? in.args[i].value : Address(sb, side, i, &page, in);
    }
    return;
  }
  if (plan_.hidden_return) frame.gpr[0] = return_buffer_;
  frame.al = static_cast<uint64_t>(plan_.sse_registers);
  std::memset(frame.xmm, 0, sizeof frame.xmm);
  stack_args_.assign(plan_.stack_bytes, 0);
  for (size_t i = 0; i < sig_.params.size(); ++i) {
    const std::vector<uint8_t> image =
        ArgImage(sig_.params[i], in.args[i], Address(sb, side, i, &page, in));
    for (const Piece& piece : plan_.params[i].pieces) {
      // A register piece takes 8 bytes of the image when it has them: an
      // integer's are sign-extended already.
      const size_t n =
          std::min<size_t>(piece.where == Piece::kStack ? piece.size : 8,
                           image.size() - std::min<size_t>(image.size(), piece.offset));
      const uint8_t* src = image.data() + piece.offset;
      switch (piece.where) {
        case Piece::kGpr:
          frame.gpr[piece.index] = 0;
          std::memcpy(&frame.gpr[piece.index], src, n);
          break;
        case Piece::kXmm:
          std::memcpy(frame.xmm[piece.index], src, std::min<size_t>(n, piece.size));
          break;
        case Piece::kXmmHigh:
          std::memcpy(frame.xmm[piece.index] + 8, src, std::min<size_t>(n, piece.size));
          break;
        case Piece::kStack:
          std::memcpy(stack_args_.data() + piece.index, src, n);
          break;
        case Piece::kX87:
          break;
      }
    }
  }
  frame.stack = stack_args_.data();
}

void PairRunner::SetMaxBlocks(uint64_t n) {
  max_blocks_ = n;
  fast_tick_limit_ = RunWatchdog::MinTicksFor(n);
  for (Sandbox* sb : {old_fast_.get(), new_fast_.get(), old_counted_.get(), new_counted_.get(),
                      old_exact_.get(), new_exact_.get()}) {
    if (sb != nullptr) sb->set_max_blocks(n);
  }
}

const RunOutcome& PairRunner::RunIn(Sandbox& sb, int side, const Input& in) {
  // The registers no argument takes hold zero, as they did on every run.
  std::memset(frame_.gpr, 0, sizeof frame_.gpr);
  frame_.stack = nullptr;
  sb.Reset();
  Place(sb, side, in, frame_);
  ran_[side] = &sb;
  return sb.Run(side == 0 ? old_fn_.entry : new_fn_.entry, frame_);
}

Sandbox& PairRunner::SandboxFor(int side, RunMode mode) {
  switch (mode) {
    case RunMode::kFast:
      return side == 0 ? *old_fast_ : *new_fast_;
    case RunMode::kCounted:
      return side == 0 ? *old_counted_ : *new_counted_;
    case RunMode::kExact:
      break;
  }
  return side == 0 ? *old_exact_ : *new_exact_;
}

PairOutcome PairRunner::Run(const Input& in, RunMode mode) {
  assert(in.args.size() == sig_.params.size());
  if (mode == RunMode::kExact && old_exact_ == nullptr) {
    // Both sides were built the same way once already: only a failing
    // Unicorn could refuse now, and that is not an input's fault.
    auto o = BuildSide(0, RunMode::kExact);
    auto n = BuildSide(1, RunMode::kExact);
    if (!o || !n) {
      Log("emulator")
          ->warn("cannot build exact-address sandboxes: {}",
                 (!o ? o.error() : n.error()).ToString());
      mode = RunMode::kCounted;
    } else {
      old_exact_ = std::move(*o);
      new_exact_ = std::move(*n);
    }
  }
  PairOutcome out;
  if (mode != RunMode::kFast) {
    out.old_out = &RunIn(SandboxFor(0, mode), 0, in);
    out.new_out = &RunIn(SandboxFor(1, mode), 1, in);
  } else {
    // A fast run whose outcome cannot be settled (it took long enough to
    // have passed the block budget, the watchdog cut it short, or it wrote
    // through a read-only const buffer) is run again in the side's counting
    // sandbox, which decides the same way every time. Reading the TSC costs
    // ~16 ns: while pairs are short next to the budget, one interval times
    // the pair (each side took less than all of it), and a pair that came
    // near the budget has the next ones timed a side at a time, so that a
    // long function does not re-run both sides when one went long. An
    // interval also holds the Reset and Place before a run, which can only
    // make a re-run more likely.
    const bool split = split_timing_;
    const uint64_t t0 = RunWatchdog::Now();
    out.old_out = &RunIn(*old_fast_, 0, in);
    const uint64_t t1 = split ? RunWatchdog::Now() : t0;
    out.new_out = &RunIn(*new_fast_, 1, in);
    const uint64_t t2 = RunWatchdog::Now();
    const bool old_in_time = split ? t1 - t0 < fast_tick_limit_ : t2 - t0 < fast_tick_limit_;
    const bool new_in_time = t2 - t1 < fast_tick_limit_;
    split_timing_ = t2 - t0 >= fast_tick_limit_ / 2;
    if (!old_in_time || !ran_[0]->last_run_settled()) {
      ++fast_reruns_;
      out.old_out = &RunIn(*old_counted_, 0, in);
    }
    if (!new_in_time || !ran_[1]->last_run_settled()) {
      ++fast_reruns_;
      out.new_out = &RunIn(*new_counted_, 1, in);
    }
  }
  Sandbox& old_sb = *ran_[0];
  Sandbox& new_sb = *ran_[1];
  out.counted = old_sb.mode() != RunMode::kFast && new_sb.mode() != RunMode::kFast;
  // The sides may come from different sandboxes (one fast, one re-run
  // counted): all map the same layout, so they compare the same way.
  CleanArgPages clean;
  out.divergence = Compare(sig_, old_sb, *out.old_out, new_sb, *out.new_out, &clean,
                           layout_.separate_spaces ? &separate_ : nullptr);
  // Equal pages placed the same way: clean on one side, clean on both.
  old_sb.MarkCleanArgPages(clean.span());
  new_sb.MarkCleanArgPages(clean.span());
  return out;
}

}  // namespace patchlab::emulator
