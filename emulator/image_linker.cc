#include "emulator/image_linker.h"

#include <elf.h>
#include <unicorn/unicorn.h>

#include <algorithm>
#include <cstring>

#include "base/log.h"
#include "emulator/layout.h"

namespace patchlab::emulator {
namespace {

// Reached through the PLT or GOT, these go to the sandbox's own stubs even
// where an image defines them: a process's allocator and its fatal exits
// need process state (arenas, signals) that a sandbox does not have.
bool Interposed(const std::string& name) {
  for (const char* n :
       {"malloc", "calloc", "realloc", "free", "abort", "__stack_chk_fail", "__assert_fail"}) {
    if (name == n) return true;
  }
  return false;
}

const ElfSegment* TlsSegment(const ElfFile& elf) {
  for (const ElfSegment& s : elf.segments()) {
    if (s.type == PT_TLS) return &s;
  }
  return nullptr;
}

uint64_t RoundUp(uint64_t v, uint64_t align) { return (v + align - 1) / align * align; }

}  // namespace

Result<size_t> ImageLinker::Add(std::shared_ptr<const ElfFile> elf, uint64_t bias,
                                std::string label, std::vector<size_t> lookup) {
  auto m = MapImage(sandbox_, std::move(elf), bias, std::move(label));
  if (!m) return std::unexpected(m.error());
  Image image;
  image.loaded = std::move(*m);
  image.lookup = std::move(lookup);
  images_.push_back(std::move(image));
  return images_.size() - 1;
}

Status ImageLinker::Link() {
  if (auto s = LayOutStaticTls(); !s) return s;
  for (const Image& image : images_) {
    if (auto s = Relocate(image); !s) return s;
  }
  if (extern_used_ > 0) {
    auto host = sandbox_.Map(kExternBase, RoundUp(extern_used_, kPageSize),
                             UC_PROT_READ | UC_PROT_WRITE, RegionKind::kImageData, "extern data");
    if (!host) return std::unexpected(host.error());
    extern_host_ = *host;
    for (const auto& [name, addr] : extern_) {
      const uint64_t size = std::max<uint64_t>(ld_so_.SizeOf(name), 1);
      const std::vector<uint8_t> bytes = ld_so_.InitialBytes(name, size);
      std::memcpy(extern_host_ + (addr - kExternBase), bytes.data(), bytes.size());
    }
  }
  if (auto s = InitialiseStaticTls(); !s) return s;
  if (auto s = ResolveIfuncs(); !s) return s;
  return StartGlibcThread();
}

Status ImageLinker::LayOutStaticTls() {
  std::vector<uint64_t> offsets;
  uint64_t offset = 0;
  for (Image& image : images_) {
    const ElfSegment* tls = TlsSegment(*image.loaded.elf);
    if (tls == nullptr || tls->memsz == 0) continue;
    // As ld.so places the initial modules' blocks below the thread pointer.
    offset = RoundUp(offset + tls->memsz, std::max<uint64_t>(tls->align, 1));
    image.tls_offset = offset;
    image.tls_module = offsets.size() + 1;
    offsets.push_back(offset);
  }
  offset = LayOutExternTls(offset);
  if (offset > kStaticTlsBytes) {
    return Fail(ErrorCode::kUnsupported, "the images' static TLS needs {} bytes; at most {} fit",
                offset, kStaticTlsBytes);
  }
  sandbox_.SetTlsModules(offsets);
  tls_size_ = offset;
  if (offset == 0) return {};
  const uint64_t bytes = RoundUp(offset, kPageSize);
  auto host = sandbox_.Map(kTlsBase - bytes, bytes, UC_PROT_READ | UC_PROT_WRITE,
                           RegionKind::kImageData, "static tls");
  if (!host) return std::unexpected(host.error());
  return {};
}

uint64_t ImageLinker::LayOutExternTls(uint64_t offset) {
  for (const Image& image : images_) {
    for (const ElfRelocation& r : image.loaded.elf->dynamic_relocations()) {
      // Only the initial-exec model's offsets: a dynamic-model reference
      // (DTPMOD64) needs a module, and stays refused.
      if (r.type != R_X86_64_TPOFF64 || r.symbol.empty() || r.symbol_defined) continue;
      if (extern_tls_.contains(r.symbol) || Resolve(image, r).module != nullptr) continue;
      const uint64_t size = ld_so_.SizeOf(r.symbol);
      if (size == 0) continue;  // defined nowhere: refused when relocated
      offset = RoundUp(offset + size, 16);
      extern_tls_[r.symbol] = offset;
    }
  }
  return offset;
}

ImageLinker::Target ImageLinker::Resolve(const Image& image, const ElfRelocation& r) {
  const uint64_t bias = image.loaded.bias;
  const bool through_got = r.type == R_X86_64_GLOB_DAT || r.type == R_X86_64_JUMP_SLOT;
  if (through_got && Interposed(r.symbol)) return {sandbox_.StubAddress(r.symbol), false, nullptr};
  if (r.symbol_defined) {
    if (r.symbol_type == SymbolType::kTls) return {r.symbol_value, false, &image};
    return {bias + r.symbol_value, r.symbol_type == SymbolType::kIfunc, nullptr};
  }
  for (size_t index : image.lookup) {
    const Image& other = images_[index];
    const ElfSymbol* s = other.loaded.elf->FindSymbol(r.symbol);
    if (s == nullptr || !s->defined) continue;
    // A shared library exports only its global symbols; a patch's target
    // lends it private ones too (that is what its references are for).
    if (other.loaded.label != "target" && s->binding == SymbolBinding::kLocal) continue;
    if (s->type == SymbolType::kTls) return {s->value, false, &other};
    return {other.loaded.bias + s->value, s->type == SymbolType::kIfunc, nullptr};
  }
  return {0, false, nullptr};  // not defined by any loaded image
}

Result<uint64_t> ImageLinker::RelocationValue(const Image& image, const ElfRelocation& r,
                                              bool* ifunc) {
  const uint64_t bias = image.loaded.bias;
  const auto addend = static_cast<uint64_t>(r.addend);
  *ifunc = false;
  auto symbol = [&]() -> Result<uint64_t> {
    Target t = Resolve(image, r);
    *ifunc = t.ifunc;
    if (t.value != 0 || r.symbol_defined) return t.value;
    // Not defined anywhere loaded: data gets storage, functions a stub, an
    // unresolved weak reference stays 0 (as ld.so leaves it).
    if (r.symbol_type == SymbolType::kObject) return ExternData(r.symbol);
    if (r.symbol_binding == SymbolBinding::kWeak && r.symbol_type != SymbolType::kFunc) return 0;
    return sandbox_.StubAddress(r.symbol);
  };
  switch (r.type) {
    case R_X86_64_RELATIVE:
      return bias + addend;
    case R_X86_64_GLOB_DAT:
    case R_X86_64_JUMP_SLOT:
      return symbol();
    case R_X86_64_64: {
      if (r.symbol.empty()) return bias + addend;
      auto v = symbol();
      if (!v) return v;
      return *v + addend;
    }
    case R_X86_64_IRELATIVE:
      *ifunc = true;
      return bias + addend;
    case R_X86_64_TPOFF64:
    case R_X86_64_DTPMOD64:
    case R_X86_64_DTPOFF64: {
      Target t = r.symbol.empty() ? Target{0, false, &image} : Resolve(image, r);
      if (auto it = extern_tls_.find(r.symbol);
          r.type == R_X86_64_TPOFF64 && t.module == nullptr && it != extern_tls_.end())
        return addend - it->second;  // negative: below fs
      if (t.module == nullptr || t.module->tls_module == 0) {
        return Fail(ErrorCode::kUnsupported, "{}: thread-local '{}' is in no loaded module",
                    image.loaded.elf->path().string(), r.symbol);
      }
      if (r.type == R_X86_64_DTPMOD64) return t.module->tls_module;
      if (r.type == R_X86_64_DTPOFF64) return t.value + addend;
      return t.value + addend - t.module->tls_offset;  // negative: below fs
    }
    default:
      return Fail(ErrorCode::kUnsupported, "{}: relocation type {} at {:#x} ({}) is not supported",
                  image.loaded.elf->path().string(), r.type, r.offset,
                  r.symbol.empty() ? "no symbol" : r.symbol);
  }
}

Status ImageLinker::Relocate(const Image& image) {
  const ElfFile& elf = *image.loaded.elf;
  for (const ElfRelocation& r : elf.dynamic_relocations()) {
    if (r.type == R_X86_64_COPY || r.type == R_X86_64_NONE) continue;
    bool ifunc = false;
    auto value = RelocationValue(image, r, &ifunc);
    if (!value) return std::unexpected(value.error());
    const uint64_t slot = image.loaded.bias + r.offset;
    uint8_t* word = sandbox_.HostPtr(slot, 8);
    if (word == nullptr) {
      return Fail(ErrorCode::kParse, "{}: relocation at {:#x} lies outside every loaded segment",
                  elf.path().string(), r.offset);
    }
    if (ifunc) {
      // The resolver's answer (plus the addend of a 64 relocation) goes
      // there once every image is relocated and its data is in place.
      const int64_t add = r.type == R_X86_64_64 ? r.addend : 0;
      ifunc_slots_.push_back({slot, *value - static_cast<uint64_t>(add), add,
                              r.symbol.empty() ? "an IRELATIVE slot" : r.symbol});
      continue;
    }
    std::memcpy(word, &*value, 8);
  }
  return {};
}

Result<uint64_t> ImageLinker::ExternData(const std::string& name) {
  if (auto it = extern_.find(name); it != extern_.end()) return it->second;
  uint64_t size = ld_so_.SizeOf(name);
  if (size == 0) {
    Log("emulator")->debug("data symbol {} is defined nowhere: 64 zero bytes", name);
    size = 64;
  }
  const uint64_t at = RoundUp(extern_used_, 16);
  if (at + size > kExternBytes) {
    return Fail(ErrorCode::kUnsupported,
                "data the images import from glibc's libraries ({}) "
                "needs more than {} bytes",
                name, kExternBytes);
  }
  extern_used_ = at + size;
  extern_[name] = kExternBase + at;
  return kExternBase + at;
}

Status ImageLinker::InitialiseStaticTls() {
  for (const Image& image : images_) {
    if (image.tls_module == 0) continue;
    const ElfSegment* tls = TlsSegment(*image.loaded.elf);
    // The TLS image as relocated in the mapped segment (pointers in .tdata
    // have their relocations applied there).
    const uint8_t* src =
        tls->filesz == 0 ? nullptr : sandbox_.HostPtr(image.loaded.bias + tls->vaddr, tls->filesz);
    uint8_t* dst = sandbox_.HostPtr(kTlsBase - image.tls_offset, tls->memsz);
    if ((tls->filesz != 0 && src == nullptr) || dst == nullptr) {
      return Fail(ErrorCode::kParse, "{}: PT_TLS lies outside its loaded segments",
                  image.loaded.elf->path().string());
    }
    if (src != nullptr) std::memcpy(dst, src, tls->filesz);
  }
  return {};
}

Result<uint64_t> ImageLinker::RunResolver(uint64_t resolver, const std::string& name) {
  if (auto it = ifuncs_.find(resolver); it != ifuncs_.end()) return it->second;
  auto chosen = sandbox_.CallDuringLoad(resolver);
  if (!chosen) {
    return std::unexpected(
        std::move(chosen.error()).AddContext(fmt::format("IFUNC resolver of {}", name)));
  }
  const bool code = sandbox_.HostPtr(*chosen, 1, UC_PROT_EXEC) != nullptr;
  if (!code) {
    return Fail(ErrorCode::kUnsupported, "IFUNC resolver of {} at {:#x} returned {:#x}, no code",
                name, resolver, *chosen);
  }
  ifuncs_[resolver] = *chosen;
  return *chosen;
}

Status ImageLinker::ResolveIfuncs() {
  for (const IfuncSlot& s : ifunc_slots_) {
    auto chosen = RunResolver(s.resolver, s.name);
    uint64_t value = 0;
    if (chosen) {
      value = *chosen + static_cast<uint64_t>(s.addend);
    } else {
      Log("emulator")->debug("{}", chosen.error().ToString());
      value = sandbox_.StubAddress(
          fmt::format("{} (an IFUNC whose resolver failed: {})", s.name, chosen.error().message()));
    }
    std::memcpy(sandbox_.HostPtr(s.slot, 8), &value, 8);
  }
  return {};
}

Status ImageLinker::StartGlibcThread() {
  for (const Image& image : images_) {
    const ElfFile& elf = *image.loaded.elf;
    if (!elf.soname().starts_with("libc.so")) continue;
    // What glibc's start-up does for the main thread before main().
    if (const ElfSymbol* s = elf.FindSymbol("__libc_single_threaded"); s && s->defined) {
      if (uint8_t* flag = sandbox_.HostPtr(image.loaded.bias + s->value, 1)) *flag = 1;
    }
    const ElfSymbol* init = elf.FindSymbol("__ctype_init");
    if (init == nullptr || !init->defined) continue;
    if (auto r = sandbox_.CallDuringLoad(image.loaded.bias + init->value); !r) {
      return std::unexpected(std::move(r.error()).AddContext(
          fmt::format("{}: __ctype_init, as a thread's start-up runs it", elf.path().string())));
    }
  }
  return {};
}

Result<uint64_t> ImageLinker::EntryOf(size_t index, const ElfSymbol* symbol, uint64_t address) {
  const uint64_t at = images_[index].loaded.bias + address;
  if (symbol == nullptr || symbol->type != SymbolType::kIfunc) return at;
  return RunResolver(at, symbol->name);
}

}  // namespace patchlab::emulator
