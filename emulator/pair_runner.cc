#include "emulator/pair_runner.h"

#include <unicorn/unicorn.h>

#include <cassert>
#include <cstring>
#include <filesystem>

#include "emulator/layout.h"

namespace patchlab::emulator {

Result<FunctionRef> FunctionRef::Parse(std::string_view text) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size()) {
    return Fail(ErrorCode::kInvalidArgument, "'{}': expected ELF:SYMBOL", text);
  }
  return FunctionRef{std::string(text.substr(0, colon)), std::string(text.substr(colon + 1))};
}

Result<const ElfSymbol*> FindFunction(const ElfFile& elf, const std::string& symbol, uint64_t* address) {
  if (symbol.rfind("0x", 0) == 0) {
    uint64_t addr = std::strtoull(symbol.c_str(), nullptr, 16);
    *address = addr;
    return elf.SymbolAt(addr);  // may be nullptr: a stripped file has no size to offer
  }
  const ElfSymbol* s = elf.FindSymbol(symbol);
  if (s == nullptr || !s->defined) {
    return Fail(ErrorCode::kNotFound, "{}: no defined symbol '{}'", elf.path().string(), symbol);
  }
  if (s->type != SymbolType::kFunc && s->type != SymbolType::kNone) {
    return Fail(ErrorCode::kInvalidArgument, "{}: '{}' is not a function", elf.path().string(), symbol);
  }
  *address = s->value;
  return s;
}

namespace {

Result<std::shared_ptr<const ElfFile>> OpenShared(const std::string& path) {
  auto elf = ElfFile::Open(path);
  if (!elf) return std::unexpected(elf.error());
  return std::make_shared<const ElfFile>(std::move(*elf));
}

Result<LoadedFunction> Locate(std::shared_ptr<const ElfFile> elf, uint64_t bias, const std::string& symbol) {
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

Status MapArgPages(Sandbox& sb, const Signature& sig) {
  for (size_t i = 0; i < sig.params.size(); ++i) {
    if (!sig.params[i].is_pointer) continue;
    auto m = sb.Map(kArgBase + i * kArgStride, kArgBytes, UC_PROT_READ | UC_PROT_WRITE, RegionKind::kArg,
                    fmt::format("{}", sig.params[i].name));
    if (!m) return std::unexpected(m.error());
  }
  return {};
}

}  // namespace

Result<std::unique_ptr<PairRunner>> PairRunner::Create(const Signature& sig, const FunctionRef& old_ref,
                                                       const FunctionRef& new_ref, uint64_t max_blocks) {
  std::unique_ptr<PairRunner> pr(new PairRunner());
  pr->sig_ = sig;
  auto old_elf = OpenShared(old_ref.elf);
  if (!old_elf) return std::unexpected(old_elf.error());
  std::error_code ec;
  bool same_file = std::filesystem::equivalent(old_ref.elf, new_ref.elf, ec);
  std::shared_ptr<const ElfFile> new_elf = *old_elf;
  if (!same_file) {
    auto n = OpenShared(new_ref.elf);
    if (!n) return std::unexpected(n.error());
    new_elf = *n;
  }
  const uint64_t target_bias = ChooseBias(**old_elf, kTargetBase);
  for (int side = 0; side < 2; ++side) {
    auto sb = Sandbox::Create(max_blocks);
    if (!sb) return std::unexpected(sb.error());
    auto target = MapImage(**sb, *old_elf, target_bias, "target");
    if (!target) return std::unexpected(target.error());
    const LoadedImage* none[] = {&*target};
    if (auto s = ApplyRelocations(**sb, *target, std::span<const LoadedImage* const>(none, 0)); !s) {
      return std::unexpected(s.error());
    }
    if (auto s = MapArgPages(**sb, sig); !s) return std::unexpected(s.error());
    if (side == 0) {
      auto f = Locate(*old_elf, target_bias, old_ref.symbol);
      if (!f) return std::unexpected(f.error());
      pr->old_fn_ = *f;
      pr->old_sb_ = std::move(*sb);
      continue;
    }
    uint64_t new_bias = target_bias;
    if (!same_file) {
      new_bias = ChooseBias(*new_elf, kPatchBase);
      auto patch = MapImage(**sb, new_elf, new_bias, "patch");
      if (!patch) return std::unexpected(patch.error());
      const LoadedImage* lookup[] = {&*target};
      if (auto s = ApplyRelocations(**sb, *patch, lookup); !s) return std::unexpected(s.error());
    }
    auto f = Locate(new_elf, new_bias, new_ref.symbol);
    if (!f) return std::unexpected(f.error());
    pr->new_fn_ = *f;
    pr->new_sb_ = std::move(*sb);
  }
  if (auto s = pr->old_sb_->Freeze(); !s) return std::unexpected(s.error());
  if (auto s = pr->new_sb_->Freeze(); !s) return std::unexpected(s.error());
  return pr;
}

void PairRunner::Place(Sandbox& sb, const Input& in, uint64_t* args) {
  for (size_t i = 0; i < sig_.params.size(); ++i) {
    const Param& p = sig_.params[i];
    const ArgValue& v = in.args[i];
    if (!p.is_pointer) {
      args[i] = v.value;
      continue;
    }
    if (v.is_null) {
      args[i] = 0;
      continue;
    }
    uint64_t size = PlacedSize(p, v);
    uint64_t page = kArgBase + i * kArgStride;
    uint64_t addr = in.leading ? page : page + kArgBytes - size;
    uint8_t* host = sb.HostPtr(page, kArgBytes) + (addr - page);
    if (!v.bytes.empty()) std::memcpy(host, v.bytes.data(), v.bytes.size());
    if (p.cstring) host[v.bytes.size()] = 0;
    args[i] = addr;
  }
}

PairOutcome PairRunner::Run(const Input& in, bool exact) {
  assert(in.args.size() == sig_.params.size());
  uint64_t args[6] = {0};
  const size_t n = sig_.params.size();
  old_sb_->Reset();
  new_sb_->Reset();
  Place(*old_sb_, in, args);
  const RunOutcome& o = exact ? old_sb_->RunExact(old_fn_.entry, {args, n}) : old_sb_->Run(old_fn_.entry, {args, n});
  Place(*new_sb_, in, args);
  const RunOutcome& nw = exact ? new_sb_->RunExact(new_fn_.entry, {args, n}) : new_sb_->Run(new_fn_.entry, {args, n});
  PairOutcome out;
  out.old_out = &o;
  out.new_out = &nw;
  out.divergence = Compare(sig_, *old_sb_, o, *new_sb_, nw);
  return out;
}

}  // namespace patchlab::emulator
