#include "emulator/side_layout.h"

#include <elf.h>

#include <algorithm>
#include <filesystem>
#include <optional>

#include "base/function_name.h"
#include "base/log.h"
#include "emulator/image_loader.h"
#include "emulator/layout.h"
#include "emulator/pair_runner.h"

namespace patchlab::emulator {
namespace {

Result<std::shared_ptr<const ElfFile>> OpenShared(const std::string& path) {
  auto elf = ElfFile::Open(path);
  if (!elf) return std::unexpected(elf.error());
  return std::make_shared<const ElfFile>(std::move(*elf));
}

std::optional<std::filesystem::path> FindLibrary(const std::string& name,
                                                 const std::filesystem::path& beside) {
  const std::filesystem::path dirs[] = {beside,
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

// The shared libraries `roots` need, breadth first, each once, as images at
// kLibraryBase + k * kLibraryStride; glibc's are only listed by path.
Status CollectLibraries(std::vector<const ElfFile*> queue, std::vector<SideImage>& libraries,
                        std::vector<std::string>& glibc) {
  std::vector<std::string> seen;
  for (size_t q = 0; q < queue.size(); ++q) {
    for (const std::string& name : queue[q]->needed()) {
      if (std::find(seen.begin(), seen.end(), name) != seen.end()) continue;
      seen.push_back(name);
      auto path = FindLibrary(name, queue[q]->path().parent_path());
      if (!path) {
        Log("emulator")
            ->warn("{} needs {}, which is not found: calls into it end runs as inconclusive",
                   queue[q]->path().string(), name);
        continue;
      }
      if (IsGlibcLibrary(name)) {
        glibc.push_back(path->string());
        continue;
      }
      auto lib = OpenShared(path->string());
      if (!lib) return std::unexpected(std::move(lib.error()).AddContext("loading " + name));
      const uint64_t base = kLibraryBase + libraries.size() * kLibraryStride;
      SideImage image;
      image.bias = ChooseBias(**lib, base);
      image.label = path->filename().string();
      image.elf = std::move(*lib);
      libraries.push_back(std::move(image));
      queue.push_back(libraries.back().elf.get());
    }
  }
  return {};
}

Status FindEntry(SideLayout& side, const std::string& symbol) {
  const ElfFile& elf = *side.images[side.function_image].elf;
  auto match = FindFunctionByName(elf, symbol);
  if (!match) return std::unexpected(match.error());
  side.symbol = match->symbol;
  side.address = match->address;
  return {};
}

// Why `new_elf` is a whole program or library rather than a patch object
// for `old_elf`; empty when it is a patch object.
std::string WholeProgram(const ElfFile& new_elf, const ElfFile& old_elf) {
  if (new_elf.type() == ElfType::kExecutable) return "an ET_EXEC program";
  for (const ElfSegment& s : new_elf.segments()) {
    if (s.type == PT_INTERP) return "a program (it has an interpreter)";
  }
  if (!new_elf.soname().empty() && new_elf.soname() == old_elf.soname())
    return fmt::format("a build of the same library ({})", old_elf.soname());
  return "";
}

// A side that maps `root` as its target, with the libraries it needs.
Result<SideLayout> StandAlone(std::shared_ptr<const ElfFile> root,
                              std::vector<std::string>& glibc) {
  std::vector<SideImage> libraries;
  if (auto s = CollectLibraries({root.get()}, libraries, glibc); !s)
    return std::unexpected(s.error());
  std::vector<size_t> library_indexes;
  for (size_t i = 0; i < libraries.size(); ++i) library_indexes.push_back(i + 1);
  SideLayout side;
  const uint64_t bias = ChooseBias(*root, kTargetBase);
  side.images.push_back({std::move(root), bias, "target", library_indexes});
  for (SideImage lib : libraries) {
    lib.lookup = library_indexes;
    side.images.push_back(std::move(lib));
  }
  return side;
}

}  // namespace

bool IsGlibcLibrary(const std::string& soname) {
  for (const char* prefix : {"libc.so", "libm.so", "libpthread.so", "libdl.so", "librt.so",
                             "ld-linux", "libmvec.so", "libresolv.so", "libutil.so"}) {
    if (soname.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

Result<PairLayout> PlanLayout(const FunctionRef& old_ref, const FunctionRef& new_ref) {
  PairLayout layout;
  auto old_elf = OpenShared(old_ref.elf);
  if (!old_elf) return std::unexpected(old_elf.error());
  std::error_code ec;
  const bool same_file = std::filesystem::equivalent(old_ref.elf, new_ref.elf, ec);
  std::shared_ptr<const ElfFile> new_elf = *old_elf;
  if (!same_file) {
    auto n = OpenShared(new_ref.elf);
    if (!n) return std::unexpected(n.error());
    new_elf = std::move(*n);
  }
  if (!same_file) layout.why_separate = WholeProgram(*new_elf, **old_elf);
  layout.separate_spaces = !layout.why_separate.empty();
  if (layout.separate_spaces) {
    auto old_side = StandAlone(*old_elf, layout.glibc_libraries);
    if (!old_side) return std::unexpected(old_side.error());
    auto new_side = StandAlone(new_elf, layout.glibc_libraries);
    if (!new_side) return std::unexpected(new_side.error());
    if (auto s = FindEntry(*old_side, old_ref.symbol); !s) return std::unexpected(s.error());
    if (auto s = FindEntry(*new_side, new_ref.symbol); !s) return std::unexpected(s.error());
    std::sort(layout.glibc_libraries.begin(), layout.glibc_libraries.end());
    layout.glibc_libraries.erase(
        std::unique(layout.glibc_libraries.begin(), layout.glibc_libraries.end()),
        layout.glibc_libraries.end());
    layout.sides[0] = std::move(*old_side);
    layout.sides[1] = std::move(*new_side);
    return layout;
  }
  std::vector<const ElfFile*> roots = {old_elf->get()};
  if (!same_file) roots.push_back(new_elf.get());
  std::vector<SideImage> libraries;
  if (auto s = CollectLibraries(roots, libraries, layout.glibc_libraries); !s)
    return std::unexpected(s.error());
  // Image 0 is the target; 1.. the libraries, each resolving in all of
  // them; a patch object comes last and resolves in the target first.
  std::vector<size_t> library_indexes;
  for (size_t i = 0; i < libraries.size(); ++i) library_indexes.push_back(i + 1);
  SideLayout old_side;
  old_side.images.push_back(
      {*old_elf, ChooseBias(**old_elf, kTargetBase), "target", library_indexes});
  for (SideImage lib : libraries) {
    lib.lookup = library_indexes;
    old_side.images.push_back(std::move(lib));
  }
  SideLayout new_side = old_side;
  if (!same_file) {
    std::vector<size_t> lookup = {0};
    lookup.insert(lookup.end(), library_indexes.begin(), library_indexes.end());
    new_side.images.push_back({new_elf, ChooseBias(*new_elf, kPatchBase), "patch", lookup});
    new_side.function_image = new_side.images.size() - 1;
  }
  if (auto s = FindEntry(old_side, old_ref.symbol); !s) return std::unexpected(s.error());
  if (auto s = FindEntry(new_side, new_ref.symbol); !s) return std::unexpected(s.error());
  layout.sides[0] = std::move(old_side);
  layout.sides[1] = std::move(new_side);
  return layout;
}

}  // namespace patchlab::emulator
