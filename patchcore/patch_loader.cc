#include "patchcore/patch_loader.h"

#include <elf.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <set>

namespace patchlab::patchcore {
namespace {

constexpr uint64_t kPage = 4096;
uint64_t PageDown(uint64_t v) { return v & ~(kPage - 1); }
uint64_t PageUp(uint64_t v) { return (v + kPage - 1) & ~(kPage - 1); }

}  // namespace

Status PatchObject::LayOut(const std::string& origin) {
  if (object_->type() != ElfType::kShared) {
    return Fail(ErrorCode::kUnsupported, "{}: not a shared object (build it with -fPIC -shared)",
                origin);
  }
  auto loads = object_->LoadSegments();
  if (loads.empty()) return Fail(ErrorCode::kParse, "{}: no PT_LOAD segment", origin);
  for (const ElfSegment& s : object_->segments()) {
    if (s.type == PT_TLS) {
      return Fail(ErrorCode::kUnsupported, "{}: thread-local storage (PT_TLS) is not supported",
                  origin);
    }
  }
  min_vaddr_ = PageDown(loads.front().vaddr);
  uint64_t max_end = 0;
  for (const ElfSegment& s : loads) max_end = std::max(max_end, s.vaddr + s.memsz);
  map_size_ = PageUp(max_end) - min_vaddr_;
  // Page protections: a page shared by two segments gets both sets of rights.
  std::map<uint64_t, int> page_prot;
  for (const ElfSegment& s : loads) {
    int prot = ((s.flags & PF_R) ? PROT_READ : 0) | ((s.flags & PF_W) ? PROT_WRITE : 0) |
               ((s.flags & PF_X) ? PROT_EXEC : 0);
    for (uint64_t pg = PageDown(s.vaddr); pg < PageUp(s.vaddr + s.memsz); pg += kPage) {
      page_prot[pg - min_vaddr_] |= prot;
    }
  }
  for (const auto& [off, prot] : page_prot) {
    if (!protections_.empty() && protections_.back().prot == prot &&
        protections_.back().offset + protections_.back().size == off) {
      protections_.back().size += kPage;
    } else {
      protections_.push_back({off, kPage, prot});
    }
  }
  return {};
}

Result<std::optional<PatchObject::Fixup>> PatchObject::ResolveFixup(
    const ElfRelocation& r, const std::set<std::string>& refs, const LoadedModule& target,
    const ModuleSet& modules, const ProcessMemory& memory, const std::string& origin) const {
  Fixup f{};
  f.type = r.type;
  f.addend = r.addend;
  if (r.offset < min_vaddr_ || r.offset + 8 > min_vaddr_ + map_size_) {
    return Fail(ErrorCode::kParse, "{}: relocation at {:#x} lies outside the image", origin,
                r.offset);
  }
  f.image_offset = r.offset - min_vaddr_;
  switch (r.type) {
    case R_X86_64_NONE:
      return std::nullopt;
    case R_X86_64_RELATIVE:
      f.relative_to_base = true;
      f.link_value = 0;
      return f;
    case R_X86_64_64:
    case R_X86_64_GLOB_DAT:
    case R_X86_64_JUMP_SLOT:
      break;
    default:
      return Fail(ErrorCode::kUnsupported,
                  "{}: relocation type {} against '{}' is not supported (only RELATIVE, 64, "
                  "GLOB_DAT, JUMP_SLOT)",
                  origin, r.type, r.symbol);
  }
  if (r.type != R_X86_64_64) f.addend = 0;
  if (r.symbol_defined && !refs.contains(r.symbol)) {
    if (r.symbol_type == SymbolType::kIfunc || r.symbol_type == SymbolType::kTls) {
      return Fail(ErrorCode::kUnsupported, "{}: symbol {} is an IFUNC or TLS symbol", origin,
                  r.symbol);
    }
    f.relative_to_base = true;
    f.link_value = r.symbol_value;
    return f;
  }
  if (refs.contains(r.symbol)) {
    const ElfSymbol* s = target.FindDefined(r.symbol);
    if (!s) {
      return Fail(ErrorCode::kRefused,
                  "{}: private target symbol {} is not in {} (.symtab, .dynsym or a debug file "
                  "by build-id)",
                  origin, r.symbol, target.path);
    }
    f.absolute = target.Runtime(s->value).addr();
    return f;
  }
  auto value = modules.ResolveExported(r.symbol, memory);
  if (!value) {
    if (value.error().code() == ErrorCode::kNotFound && r.symbol_binding == SymbolBinding::kWeak) {
      f.absolute = 0;  // an undefined weak reference stays null, as ld.so does
      return f;
    }
    return std::unexpected(std::move(value.error()).AddContext(origin));
  }
  f.absolute = value->addr();
  return f;
}

Result<PatchObject> PatchObject::Prepare(std::shared_ptr<const ElfFile> object,
                                         const Manifest& manifest, const LoadedModule& target,
                                         const ModuleSet& modules, const ProcessMemory& memory) {
  const std::string origin = fmt::format("patch object of {}", manifest.id);
  PatchObject p;
  p.object_ = std::move(object);
  if (auto st = p.LayOut(origin); !st) return std::unexpected(st.error());
  std::set<std::string> refs(manifest.refs.begin(), manifest.refs.end());
  for (const ElfRelocation& r : p.object_->dynamic_relocations()) {
    auto fixup = p.ResolveFixup(r, refs, target, modules, memory, origin);
    if (!fixup) return std::unexpected(std::move(fixup.error()));
    if (*fixup) p.fixups_.push_back(**fixup);
  }
  return p;
}

std::vector<uint8_t> PatchObject::Image(RemotePtr base) const {
  std::vector<uint8_t> image(map_size_, 0);
  auto file = object_->bytes();
  for (const ElfSegment& s : object_->LoadSegments()) {
    if (s.filesz == 0) continue;
    std::memcpy(image.data() + (s.vaddr - min_vaddr_), file.data() + s.offset, s.filesz);
  }
  const uint64_t delta = base.addr() - min_vaddr_;
  for (const Fixup& f : fixups_) {
    uint64_t v = f.relative_to_base ? f.link_value + delta + static_cast<uint64_t>(f.addend)
                                    : f.absolute + static_cast<uint64_t>(f.addend);
    std::memcpy(image.data() + f.image_offset, &v, 8);
  }
  return image;
}

Result<RemotePtr> PatchObject::FunctionAddress(RemotePtr base, std::string_view name) const {
  for (const ElfSymbol* s : object_->FindSymbols(name)) {
    if (s->defined && s->type == SymbolType::kFunc) {
      return base + static_cast<int64_t>(s->value - min_vaddr_);
    }
  }
  return Fail(ErrorCode::kNotFound, "the patch object defines no function {}", name);
}

std::vector<RemoteRange> PatchObject::CodeRanges(RemotePtr base) const {
  std::vector<RemoteRange> out;
  for (const PageProtection& p : protections_) {
    if (p.prot & PROT_EXEC) {
      out.push_back(
          {base + static_cast<int64_t>(p.offset), base + static_cast<int64_t>(p.offset + p.size)});
    }
  }
  return out;
}

}  // namespace patchlab::patchcore
