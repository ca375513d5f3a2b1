#include "emulator/ld_so_data.h"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <fcntl.h>

#include <cstring>
#include <optional>

#include "base/log.h"
#include "base/scoped_fd.h"

namespace patchlab::emulator {
namespace {

// glibc's cpu_features.features[] index of each cpuid leaf it records
// (enum cpuid_index, the same from glibc 2.33 to 2.38).
constexpr struct {
  uint32_t leaf;
  int index;
} kFeatureLeaves[] = {{1, 0}, {7, 1}, {0x80000001, 2}};

// A struct type's member: its offset and type.
struct Member {
  uint64_t offset = 0;
  Dwarf_Die type{};
};

bool TypeOf(Dwarf_Die* die, Dwarf_Die* out) {
  Dwarf_Attribute a;
  Dwarf_Die t;
  if (dwarf_attr_integrate(die, DW_AT_type, &a) == nullptr || dwarf_formref_die(&a, &t) == nullptr)
    return false;
  return dwarf_peel_type(&t, out) == 0;
}

std::optional<Member> FindMember(Dwarf_Die type, std::string_view name) {
  Dwarf_Die child;
  if (dwarf_child(&type, &child) != 0) return std::nullopt;
  do {
    const char* n = dwarf_diename(&child);
    if (dwarf_tag(&child) != DW_TAG_member || n == nullptr || name != n) continue;
    Dwarf_Attribute a;
    Dwarf_Word off = 0;
    if (dwarf_attr(&child, DW_AT_data_member_location, &a) == nullptr ||
        dwarf_formudata(&a, &off) != 0)
      return std::nullopt;
    Member m;
    m.offset = off;
    if (!TypeOf(&child, &m.type)) return std::nullopt;
    return m;
  } while (dwarf_siblingof(&child, &child) == 0);
  return std::nullopt;
}

// The struct type of the variable `name`, searched in every unit.
std::optional<Dwarf_Die> VariableType(Dwarf* dw, std::string_view name) {
  Dwarf_Off off = 0, next = 0;
  size_t header = 0;
  while (dwarf_nextcu(dw, off, &next, &header, nullptr, nullptr, nullptr) == 0) {
    Dwarf_Die cu, child;
    if (dwarf_offdie(dw, off + header, &cu) != nullptr && dwarf_child(&cu, &child) == 0) {
      do {
        const char* n = dwarf_diename(&child);
        Dwarf_Die type;
        if (dwarf_tag(&child) == DW_TAG_variable && n != nullptr && name == n &&
            TypeOf(&child, &type) && dwarf_tag(&type) == DW_TAG_structure_type)
          return type;
      } while (dwarf_siblingof(&child, &child) == 0);
    }
    off = next;
  }
  return std::nullopt;
}

template <typename T>
std::vector<uint8_t> Bytes(T v) {
  std::vector<uint8_t> b(sizeof v);
  std::memcpy(b.data(), &v, sizeof v);
  return b;
}

// The fields of _rtld_global_ro set from ld.so's DWARF at `debug_path`.
Result<std::vector<std::pair<uint64_t, std::vector<uint8_t>>>> RtldGlobalRo(
    const std::string& debug_path, const CpuModel& cpu) {
  ScopedFd fd(::open(debug_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return FailErrno("open " + debug_path);
  Dwarf* dw = dwarf_begin(fd.get(), DWARF_C_READ);
  if (dw == nullptr) return Fail(ErrorCode::kNotFound, "{} has no DWARF", debug_path);
  std::vector<std::pair<uint64_t, std::vector<uint8_t>>> out;
  auto fail = [&](std::string what) {
    dwarf_end(dw);
    return Fail(ErrorCode::kNotFound, "{}: no {} in _rtld_global_ro's type", debug_path, what);
  };
  std::optional<Dwarf_Die> ro = VariableType(dw, "_rtld_global_ro");
  if (!ro) return fail("variable");
  for (auto [field, value] :
       {std::pair<const char*, uint64_t>{"_dl_pagesize", 4096}, {"_dl_minsigstacksize", 2048}}) {
    if (auto m = FindMember(*ro, field)) out.emplace_back(m->offset, Bytes<uint64_t>(value));
  }
  if (auto m = FindMember(*ro, "_dl_clktck")) out.emplace_back(m->offset, Bytes<int32_t>(100));
  auto features = FindMember(*ro, "_dl_x86_cpu_features");
  if (!features) return fail("_dl_x86_cpu_features");
  auto array = FindMember(features->type, "features");
  if (!array) return fail("cpu_features.features");
  Dwarf_Die element;
  Dwarf_Word element_size = 0;
  if (!TypeOf(&array->type, &element) || dwarf_aggregate_size(&element, &element_size) != 0 ||
      element_size != 32)
    return fail("32-byte cpuid_feature_internal");
  for (const auto& [leaf, index] : kFeatureLeaves) {
    const std::array<uint32_t, 4> regs = cpu.Cpuid(leaf, 0);
    const uint64_t at = features->offset + array->offset + index * element_size;
    std::vector<uint8_t> words(16);
    std::memcpy(words.data(), regs.data(), 16);
    out.emplace_back(at, words);       // cpuid: what the CPU reports
    out.emplace_back(at + 16, words);  // active: what glibc found usable
  }
  dwarf_end(dw);
  return out;
}

bool IsLdSo(const ElfFile& elf) {
  return elf.soname().starts_with("ld-linux") ||
         elf.path().filename().string().starts_with("ld-linux");
}

}  // namespace

Result<LdSoData> LdSoData::Create(const std::vector<std::string>& libraries, const CpuModel& cpu) {
  LdSoData data;
  const bool baseline = cpu.name == "x86-64";
  std::string why_not;  // ld.so is loaded but its layout could not be read
  for (const std::string& path : libraries) {
    auto elf = ElfFile::Open(path);
    if (!elf) return std::unexpected(elf.error());
    for (const ElfSymbol& s : elf->symbols()) {
      if (s.dynamic && s.defined && (s.type == SymbolType::kObject || s.type == SymbolType::kTls))
        data.sizes_.emplace(s.name, s.size);
    }
    if (!IsLdSo(*elf)) continue;
    auto debug = elf->build_id().empty() ? Result<std::filesystem::path>(std::unexpected(
                                               Error(ErrorCode::kNotFound, "no build-id")))
                                         : FindDebugFile(elf->build_id());
    if (!debug) {
      why_not = fmt::format("{}: {}", path, debug.error().message());
      continue;
    }
    auto fields = RtldGlobalRo(debug->string(), cpu);
    if (!fields) {
      why_not = fields.error().ToString();
      continue;
    }
    data.rtld_global_ro_ = std::move(*fields);
  }
  if (!why_not.empty() && !baseline) {
    return Fail(ErrorCode::kUnsupported,
                "--cpu {}: glibc's IFUNC resolvers read the CPU's features from ld.so's "
                "_rtld_global_ro, whose layout comes from ld.so's DWARF (libc6-dbg): {}",
                cpu.name, why_not);
  }
  if (!why_not.empty()) Log("emulator")->debug("ld.so data left zero: {}", why_not);
  return data;
}

uint64_t LdSoData::SizeOf(std::string_view name) const {
  auto it = sizes_.find(name);
  return it == sizes_.end() ? 0 : it->second;
}

std::vector<uint8_t> LdSoData::InitialBytes(std::string_view name, uint64_t size) const {
  std::vector<uint8_t> bytes(size, 0);
  if (name != "_rtld_global_ro") return bytes;
  for (const auto& [offset, value] : rtld_global_ro_) {
    if (offset + value.size() <= size)
      std::memcpy(bytes.data() + offset, value.data(), value.size());
  }
  return bytes;
}

}  // namespace patchlab::emulator
