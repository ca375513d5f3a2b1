#include "emulator/pair_runner.h"

#include <unicorn/unicorn.h>

#include <algorithm>
#include <cassert>
#include <cstring>
#include <filesystem>
#include <optional>

#include "base/function_name.h"
#include "base/log.h"
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
  auto sb = Sandbox::Create(config);
  if (!sb) return std::unexpected(sb.error());
  const SideLayout& layout = layout_.sides[side];
  ImageLinker linker(**sb, ld_so_, ifuncs_[side]);
  for (const SideImage& image : layout.images) {
    auto added = linker.Add(image.elf, image.bias, image.label, image.lookup);
    if (!added) return std::unexpected(added.error());
  }
  if (auto s = MapArgPages(**sb, sig_, mode); !s) return std::unexpected(s.error());
  if (auto s = linker.Link(); !s) return std::unexpected(s.error());
  auto entry = linker.EntryOf(layout.function_image, layout.symbol, layout.address);
  if (!entry) return std::unexpected(entry.error());
  SetFunction(side, layout, *entry);
  if (auto s = (*sb)->Freeze(); !s) return std::unexpected(s.error());
  return sb;
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
  pr->max_blocks_ = options.max_blocks;
  pr->syscall_seed_ = options.seed;
  auto cpu = CpuModelByName(options.cpu);
  if (!cpu) return std::unexpected(cpu.error());
  pr->cpu_ = std::move(*cpu);
  auto layout = PlanLayout(old_ref, new_ref);
  if (!layout) return std::unexpected(layout.error());
  pr->layout_ = std::move(*layout);
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

void PairRunner::Place(Sandbox& sb, const Input& in, uint64_t* args) {
  size_t page = 0;  // pointer parameters have argument pages in order
  for (size_t i = 0; i < sig_.params.size(); ++i) {
    const Param& p = sig_.params[i];
    const ArgValue& v = in.args[i];
    if (!p.is_pointer) {
      args[i] = v.value;
      continue;
    }
    const size_t k = page++;
    if (v.is_null) {
      args[i] = 0;
      continue;
    }
    const uint64_t size = PlacedSize(p, v);
    const uint64_t offset = in.leading ? 0 : kArgBytes - size;
    uint8_t* host = sb.PlaceInArgPage(k, offset, size);
    if (!v.bytes.empty()) std::memcpy(host, v.bytes.data(), v.bytes.size());
    if (p.cstring) host[v.bytes.size()] = 0;
    args[i] = ArgPage(i) + offset;
  }
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
  uint64_t args[6] = {0};
  sb.Reset();
  Place(sb, in, args);
  ran_[side] = &sb;
  return sb.Run(side == 0 ? old_fn_.entry : new_fn_.entry, {args, sig_.params.size()});
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
  out.divergence = Compare(sig_, old_sb, *out.old_out, new_sb, *out.new_out, &clean);
  // Equal pages placed the same way: clean on one side, clean on both.
  old_sb.MarkCleanArgPages(clean.span());
  new_sb.MarkCleanArgPages(clean.span());
  return out;
}

}  // namespace patchlab::emulator
