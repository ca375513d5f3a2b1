#include "emulator/pair_runner.h"

#include <unicorn/unicorn.h>

#include <algorithm>
#include <cassert>
#include <cstring>
#include <filesystem>
#include <optional>

#include "base/function_name.h"
#include "base/log.h"
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

Result<std::shared_ptr<const ElfFile>> OpenShared(const std::string& path) {
  auto elf = ElfFile::Open(path);
  if (!elf) return std::unexpected(elf.error());
  return std::make_shared<const ElfFile>(std::move(*elf));
}

Result<LoadedFunction> Locate(std::shared_ptr<const ElfFile> elf, uint64_t bias,
                              const std::string& symbol) {
  uint64_t addr = 0;
  auto s = FindFunction(*elf, symbol, &addr);
  if (!s) return std::unexpected(s.error());
  LoadedFunction f;
  f.elf = std::move(elf);
  f.entry = addr + bias;
  f.link_address = addr;
  f.size = *s != nullptr ? (*s)->size : 0;
  return f;
}

bool IsGlibcLibrary(const std::string& soname) {
  for (const char* prefix : {"libc.so", "libm.so", "libpthread.so", "libdl.so", "librt.so",
                             "ld-linux", "libmvec.so", "libresolv.so", "libutil.so"}) {
    if (soname.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

std::optional<std::filesystem::path> FindLibrary(const std::string& name,
                                                 const std::filesystem::path& beside) {
  std::vector<std::filesystem::path> dirs = {beside,
                                             "/lib/x86_64-linux-gnu",
                                             "/usr/lib/x86_64-linux-gnu",
                                             "/lib64",
                                             "/usr/lib64",
                                             "/lib",
                                             "/usr/lib",
                                             "/usr/local/lib"};
  for (const auto& d : dirs) {
    std::error_code ec;
    if (std::filesystem::is_regular_file(d / name, ec)) return d / name;
  }
  return std::nullopt;
}

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
  auto sb = Sandbox::Create(max_blocks_, mode, watchdog_.get());
  if (!sb) return std::unexpected(sb.error());
  auto target = MapImage(**sb, old_elf_, target_bias_, "target");
  if (!target) return std::unexpected(target.error());
  std::vector<LoadedImage> libs;
  for (const Library& lib : libraries_) {
    auto m = MapImage(**sb, lib.elf, lib.bias, lib.elf->path().filename().string());
    if (!m) return std::unexpected(m.error());
    libs.push_back(std::move(*m));
  }
  // A library's own imports resolve against the other libraries, then stubs.
  std::vector<const LoadedImage*> lib_lookup;
  lib_lookup.reserve(libs.size());
  for (const LoadedImage& l : libs) lib_lookup.push_back(&l);
  for (const LoadedImage& l : libs) {
    if (auto s = ApplyRelocations(**sb, l, lib_lookup); !s) return std::unexpected(s.error());
  }
  if (auto s = ApplyRelocations(**sb, *target, lib_lookup); !s) return std::unexpected(s.error());
  if (auto s = MapArgPages(**sb, sig_, mode); !s) return std::unexpected(s.error());
  if (side == 1 && !same_file_) {
    auto patch = MapImage(**sb, new_elf_, new_bias_, "patch");
    if (!patch) return std::unexpected(patch.error());
    std::vector<const LoadedImage*> lookup = {&*target};
    lookup.insert(lookup.end(), lib_lookup.begin(), lib_lookup.end());
    if (auto s = ApplyRelocations(**sb, *patch, lookup); !s) return std::unexpected(s.error());
  }
  if (auto s = (*sb)->Freeze(); !s) return std::unexpected(s.error());
  return sb;
}

Result<std::unique_ptr<PairRunner>> PairRunner::Create(const Signature& sig,
                                                       const FunctionRef& old_ref,
                                                       const FunctionRef& new_ref,
                                                       uint64_t max_blocks) {
  std::unique_ptr<PairRunner> pr(new PairRunner());
  pr->sig_ = sig;
  pr->max_blocks_ = max_blocks;
  auto old_elf = OpenShared(old_ref.elf);
  if (!old_elf) return std::unexpected(old_elf.error());
  pr->old_elf_ = *old_elf;
  std::error_code ec;
  pr->same_file_ = std::filesystem::equivalent(old_ref.elf, new_ref.elf, ec);
  pr->new_elf_ = pr->old_elf_;
  if (!pr->same_file_) {
    auto n = OpenShared(new_ref.elf);
    if (!n) return std::unexpected(n.error());
    pr->new_elf_ = *n;
  }
  pr->target_bias_ = ChooseBias(*pr->old_elf_, kTargetBase);
  // Needed libraries, breadth first, each once.
  std::vector<const ElfFile*> queue = {pr->old_elf_.get()};
  if (!pr->same_file_) queue.push_back(pr->new_elf_.get());
  std::vector<std::string> seen;
  for (size_t q = 0; q < queue.size(); ++q) {
    for (const std::string& name : queue[q]->needed()) {
      if (IsGlibcLibrary(name) || std::find(seen.begin(), seen.end(), name) != seen.end()) continue;
      seen.push_back(name);
      auto path = FindLibrary(name, queue[q]->path().parent_path());
      if (!path) {
        Log("emulator")
            ->warn("{} needs {}, which is not found: calls into it end runs as inconclusive",
                   queue[q]->path().string(), name);
        continue;
      }
      auto lib = OpenShared(path->string());
      if (!lib) return std::unexpected(std::move(lib.error()).AddContext("loading " + name));
      uint64_t base = kLibraryBase + pr->libraries_.size() * kLibraryStride;
      pr->libraries_.push_back({*lib, ChooseBias(**lib, base)});
      queue.push_back(pr->libraries_.back().elf.get());
    }
  }
  pr->new_bias_ = pr->same_file_ ? pr->target_bias_ : ChooseBias(*pr->new_elf_, kPatchBase);
  auto old_fn = Locate(pr->old_elf_, pr->target_bias_, old_ref.symbol);
  if (!old_fn) return std::unexpected(old_fn.error());
  pr->old_fn_ = *old_fn;
  auto new_fn = Locate(pr->new_elf_, pr->new_bias_, new_ref.symbol);
  if (!new_fn) return std::unexpected(new_fn.error());
  pr->new_fn_ = *new_fn;
  pr->watchdog_ = std::make_unique<RunWatchdog>();
  pr->fast_tick_limit_ = RunWatchdog::MinTicksFor(max_blocks);
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
