// ImageLinker: links the images mapped into one sandbox the way ld.so links
// a process, without running any code but IFUNC resolvers and glibc's
// per-thread start-up:
//  - static TLS: every image with a PT_TLS segment gets a block below the
//    thread pointer (fs), in load order, laid out as ld.so lays out the
//    initial modules (variant II), initialised from its TLS image after
//    relocation; TPOFF64, DTPMOD64 and DTPOFF64 relocations and
//    __tls_get_addr (a stub) reach them.
//  - dynamic relocations (RELATIVE, GLOB_DAT, JUMP_SLOT, 64, IRELATIVE and
//    the TLS ones; COPY left alone): a symbol defined in the image itself
//    resolves there; otherwise in the images its lookup list names, in
//    order (a patch's target lends it private .symtab symbols too; a
//    library only global ones); otherwise a function goes to a library stub
//    slot (stubs.h: inconclusive unless stubbed) and data to zero-filled
//    storage of the size glibc's libraries give it (ld_so_data.h), an
//    unresolved weak reference to 0.
//  - the allocator is interposed: calls through the PLT or GOT to malloc,
//    calloc, realloc, free, abort, __stack_chk_fail and __assert_fail reach
//    the sandbox's stubs even where an image defines them (glibc's own),
//    as an LD_PRELOADed allocator would.
//  - IFUNCs: each resolver runs in the sandbox (Sandbox::CallDuringLoad) on
//    the CPU model the sandbox answers cpuid with, glibc's reading the
//    features LdSoData filled in; the slot gets what it returns. A resolver
//    that fails leaves a stub that makes calls inconclusive, naming it.
//  - glibc's start-up for the thread: when libc.so is among the images, its
//    __ctype_init runs (the C locale's ctype tables in TLS) and
//    __libc_single_threaded is set, as in a process that has not started a
//    thread.
//
// Thread-safety: none (works on one Sandbox).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/elf_file.h"
#include "base/error.h"
#include "emulator/image_loader.h"
#include "emulator/ld_so_data.h"
#include "emulator/sandbox.h"

namespace patchlab::emulator {

// Resolver address -> what it returned, shared by the sandboxes of one side
// (same images at the same addresses, so the same answers): each resolver
// runs once per side.
using IfuncCache = std::map<uint64_t, uint64_t>;

class ImageLinker {
 public:
  // `ld_so` and `ifuncs` must outlive the linker.
  ImageLinker(Sandbox& sandbox, const LdSoData& ld_so, IfuncCache& ifuncs)
      : sandbox_(sandbox), ld_so_(ld_so), ifuncs_(ifuncs) {}

  // Maps `elf` at link-time address + `bias` (MapImage). Its undefined
  // symbols will resolve in the images already added whose indexes
  // `lookup` lists, in that order. Returns the image's index.
  Result<size_t> Add(std::shared_ptr<const ElfFile> elf, uint64_t bias, std::string label,
                     std::vector<size_t> lookup);

  // Links every image added (see above). Fails naming the file, offset and
  // type of a relocation it cannot apply, or when static TLS or extern data
  // do not fit their regions.
  Status Link();

  // Where a function of image `index` at link-time `address` runs: the
  // address itself, or what its resolver returns when `symbol` is an IFUNC.
  // Fails when the resolver does. REQUIRES: Link() succeeded.
  Result<uint64_t> EntryOf(size_t index, const ElfSymbol* symbol, uint64_t address);

  const LoadedImage& image(size_t index) const { return images_[index].loaded; }

 private:
  struct Image {
    LoadedImage loaded;
    std::vector<size_t> lookup;
    uint64_t tls_offset = 0;  // its block is at fs - tls_offset; 0: no PT_TLS
    uint64_t tls_module = 0;  // 1-based; 0: no PT_TLS
  };
  // A slot whose value an IFUNC resolver decides: resolver's result + addend.
  struct IfuncSlot {
    uint64_t slot = 0;
    uint64_t resolver = 0;
    int64_t addend = 0;
    std::string name;
  };
  // Where a symbol reference of an image resolves.
  struct Target {
    uint64_t value = 0;
    bool ifunc = false;             // value is a resolver
    const Image* module = nullptr;  // TLS symbols: the defining module
  };

  Status LayOutStaticTls();
  // Static TLS for the thread-local variables the images take from glibc's
  // libraries, which are not mapped (a library's errno): a block each, of
  // the size glibc gives it, after the modules' blocks; returns the end.
  uint64_t LayOutExternTls(uint64_t offset);
  Status Relocate(const Image& image);
  Result<uint64_t> RelocationValue(const Image& image, const ElfRelocation& r, bool* ifunc);
  Target Resolve(const Image& image, const ElfRelocation& r);
  // Storage for the data symbol `name` that no mapped image defines.
  Result<uint64_t> ExternData(const std::string& name);
  Status InitialiseStaticTls();
  Status ResolveIfuncs();
  Result<uint64_t> RunResolver(uint64_t resolver, const std::string& name);
  Status StartGlibcThread();

  Sandbox& sandbox_;
  const LdSoData& ld_so_;
  IfuncCache& ifuncs_;
  std::vector<Image> images_;
  std::vector<IfuncSlot> ifunc_slots_;
  uint64_t tls_size_ = 0;
  std::map<std::string, uint64_t> extern_;  // placed extern data by name
  // Extern thread-local variables by name: their offset below fs.
  std::map<std::string, uint64_t> extern_tls_;
  uint8_t* extern_host_ = nullptr;
  uint64_t extern_used_ = 0;
};

}  // namespace patchlab::emulator
