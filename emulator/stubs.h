// StubTable: the library functions a checked function may call through its
// PLT or GOT, emulated on the host when the call reaches the stub page.
//
// Each name gets a 16-byte slot holding `ret` on the sandbox's stub page; a
// code hook limited to that page runs the stub's body (reading arguments from
// rdi/rsi/rdx, working on guest memory through the sandbox's host pointers,
// writing rax) before the `ret` returns to the caller. A code hook confined to
// one page costs nothing anywhere else.
//
// Stubbed: memcpy memmove memset memcmp bcmp strlen strnlen strcmp strncmp
// strchr strrchr memchr malloc calloc realloc free abort __stack_chk_fail
// __assert_fail (and their __*_chk / glibc-internal aliases listed in
// stubs.cc), and ld.so's __tls_get_addr (static TLS blocks of the loaded
// modules, Sandbox::SetTlsModules). A stub that touches memory a real one would fault on reports
// the same fault (class and first bad byte) "in NAME". Any other name ends the run as inconclusive,
// naming the function.
//
// The heap is a bump allocator on the sandbox heap region: deterministic, so
// both sides hand out the same addresses for the same sequence of requests.
// Only calls with effects beyond their return value and memory (allocation,
// abort) are recorded in RunOutcome::calls.
//
// Thread-safety: belongs to its Sandbox's thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "emulator/signature.h"

struct uc_struct;

namespace patchlab::emulator {

class Sandbox;

class StubTable {
 public:
  explicit StubTable(Sandbox& sandbox) : sandbox_(sandbox) {}

  // Whether `name` has a stub body (rather than the inconclusive slot).
  static bool IsStubbed(std::string_view name);

  // The slot address for `name`, allocated on first use. Aborts when the page
  // is full (thousands of distinct imports: a bug, not an input).
  uint64_t AddressOf(const std::string& name);

  // A slot that answers as generated callback `behaviour` (callback.h) of
  // a function pointer of `type`.
  uint64_t AddCallback(const CallbackType& type, int behaviour);

  // Runs the stub whose slot holds `pc`. Called from the stub page's code hook.
  void OnCall(uc_struct* uc, uint64_t pc);

  // Forgets every allocation (the sandbox clears the used part of the heap).
  void ResetHeap();
  uint64_t heap_used() const { return heap_next_; }
  // `len` bytes (a multiple of the page size) of zeroed heap at a page
  // boundary, for anonymous mmap (syscalls.h); 0 when the heap is full.
  uint64_t AllocatePages(uint64_t len);

 private:
  struct Call;
  // The stub bodies, by family. Each returns the value for rax, or nothing
  // after it reported a fault (and stopped the run). `id` is the stub's Id.
  std::optional<uint64_t> MemoryStub(const Call& c, int id);
  std::optional<uint64_t> StringStub(const Call& c, int id);
  std::optional<uint64_t> AllocationStub(const Call& c, int id);
  std::optional<uint64_t> Reallocate(const Call& c);
  // __tls_get_addr: the address of a variable in a module's static TLS block.
  std::optional<uint64_t> TlsGetAddr(const Call& c);
  // A generated callback's answer; nothing for a void one.
  std::optional<uint64_t> Callback(const Call& c, const CallbackType& type, int behaviour);
  // [p, p+n) in host memory when it is all mapped with `prot`; else reports
  // the fault a real libc would hit (class and first bad byte) and returns
  // nullptr. n == 0 is valid and never dereferenced.
  uint8_t* Check(const Call& c, uint64_t p, uint64_t n, int prot);
  // Length of the NUL-terminated string at p, reading at most `limit` bytes;
  // -1 after a fault.
  int64_t StringLength(const Call& c, uint64_t p, uint64_t limit);
  // strcmp over at most `limit` bytes; nothing after a fault.
  std::optional<int> StringCompare(const Call& c, uint64_t s1, uint64_t s2, uint64_t limit);
  // Adds the call to the run's compared calls.
  void Record(const Call& c, std::vector<uint64_t> args, uint64_t ret);
  void Fault(uc_struct* uc, int fault_class, uint64_t addr, std::string_view name);
  void Stop(uc_struct* uc);
  uint64_t Allocate(uint64_t size);

  Sandbox& sandbox_;
  std::map<std::string, uint64_t, std::less<>> slots_;
  std::vector<std::string> slot_names_;            // index: slot number - 1
  uint64_t heap_next_ = 0;                         // offset of the next free heap byte
  std::map<uint64_t, uint64_t> live_allocations_;  // guest address -> size
  struct CallbackSpec {
    CallbackType type;
    int behaviour = 0;
  };
  std::map<uint64_t, CallbackSpec> callbacks_;  // slot number -> what it answers
};

}  // namespace patchlab::emulator
