#include "patchcore/module_set.h"

#include <elf.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "base/log.h"
#include "base/scoped_fd.h"

namespace patchlab::patchcore {
namespace {

// Where a loaded ELF file sits: its load bias from the mapping of its first
// PT_LOAD segment, and the range of all its mappings. nullopt when no
// mapping holds that segment (the file is mapped as data).
std::optional<LoadedModule> LocateModule(const std::string& path,
                                         std::shared_ptr<const ElfFile> elf,
                                         const std::vector<const MapEntry*>& mappings) {
  auto loads = elf->LoadSegments();
  if (loads.empty()) return std::nullopt;
  const uint64_t first_off = loads.front().offset & ~uint64_t{4095};
  const MapEntry* base = nullptr;
  for (const MapEntry* e : mappings) {
    if (e->offset == first_off) {
      base = e;
      break;
    }
  }
  if (!base) return std::nullopt;
  LoadedModule m;
  m.path = path;
  m.bias = elf->type() == ElfType::kExecutable
               ? 0
               : base->start.addr() - (loads.front().vaddr & ~uint64_t{4095});
  m.range = RemoteRange{mappings.front()->start, mappings.back()->end};
  m.elf = std::move(elf);
  return m;
}

bool IsExportedDefinition(const ElfSymbol& s) {
  return s.dynamic && s.defined &&
         (s.binding == SymbolBinding::kGlobal || s.binding == SymbolBinding::kWeak) &&
         s.type != SymbolType::kSection && s.type != SymbolType::kFile;
}

}  // namespace

const ElfSymbol* LoadedModule::FindDefined(std::string_view name) const {
  for (const ElfFile* f : {elf.get(), debug.get()}) {
    if (!f) continue;
    const ElfSymbol* s = f->FindSymbol(name);
    if (s && s->defined) return s;
  }
  return nullptr;
}

Result<ModuleSet> ModuleSet::Load(pid_t pid, const ProcessMaps& maps, ElfCache* cache) {
  ElfCache local;
  ElfCache& files = cache ? *cache : local;
  ModuleSet set;
  std::error_code ec;
  std::string exe = std::filesystem::read_symlink(fmt::format("/proc/{}/exe", pid), ec).string();
  for (const std::string& path : maps.FilePaths()) {
    auto mappings = maps.MappingsOf(path);
    auto elf = files.Module(pid, *mappings.front());
    if (!elf) {
      if (elf.error().code() == ErrorCode::kTargetGone) return std::unexpected(elf.error());
      Log("patchcore")->debug("pid {}: skipping {}: {}", pid, path, elf.error().ToString());
      continue;
    }
    auto module = LocateModule(path, *elf, mappings);
    if (!module) continue;  // mapped as data, not by a loader
    module->debug = files.DebugFile((*elf)->build_id());
    if (path == exe) {
      set.modules_.insert(set.modules_.begin(), std::move(*module));
    } else {
      set.modules_.push_back(std::move(*module));
    }
  }
  if (set.modules_.empty())
    return Fail(ErrorCode::kNotFound, "pid {} has no ELF module mapped", pid);
  return set;
}

const LoadedModule* ModuleSet::FindByBuildId(std::string_view build_id) const {
  for (const LoadedModule& m : modules_) {
    if (!build_id.empty() && m.elf->build_id() == build_id) return &m;
  }
  return nullptr;
}

const LoadedModule* ModuleSet::FindByFileName(std::string_view file_name) const {
  for (const LoadedModule& m : modules_) {
    if (std::filesystem::path(m.path).filename() == file_name) return &m;
  }
  return nullptr;
}

const LoadedModule* ModuleSet::FindByAddress(RemotePtr addr) const {
  for (const LoadedModule& m : modules_) {
    if (m.range.Contains(addr)) return &m;
  }
  return nullptr;
}

Result<RemotePtr> ModuleSet::ResolveExported(std::string_view name,
                                             const ProcessMemory& memory) const {
  for (const LoadedModule& m : modules_) {
    const ElfSymbol* best = nullptr;
    for (const ElfSymbol* s : m.elf->FindSymbols(name)) {
      if (IsExportedDefinition(*s)) {
        best = s;
        break;
      }
    }
    if (!best) continue;
    if (best->type != SymbolType::kIfunc) return m.Runtime(best->value);
    // An IFUNC: reuse what the target's loader chose, read from a filled GOT slot.
    for (const LoadedModule& user : modules_) {
      for (const ElfRelocation& r : user.elf->dynamic_relocations()) {
        if (r.symbol != name || r.symbol_defined) continue;
        if (r.type != R_X86_64_GLOB_DAT && r.type != R_X86_64_JUMP_SLOT) continue;
        auto word = memory.Read(user.Runtime(r.offset), 8);
        if (!word) continue;
        uint64_t v;
        std::memcpy(&v, word->data(), 8);
        if (m.range.Contains(RemotePtr(v))) return RemotePtr(v);
      }
    }
    return Fail(ErrorCode::kUnsupported,
                "symbol {} is an IFUNC of {} that no loaded module has resolved yet (resolving "
                "it would run target code)",
                name, m.path);
  }
  return Fail(ErrorCode::kNotFound, "no module of pid {} exports symbol {}", memory.pid(), name);
}

}  // namespace patchlab::patchcore
