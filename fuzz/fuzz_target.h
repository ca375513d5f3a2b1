// PATCHLAB_FUZZ_TARGET: how a harness in fuzz/ is written, once for its two
// builds (docs/fuzz.md).
//
//   PATCHLAB_FUZZ_TARGET(elf) {
//     (void)ElfFile::FromBytes(std::string(AsText(data, size)), "input.elf");
//     return 0;
//   }
//
// With clang and libFuzzer (the `fuzz` preset, PATCHLAB_LIBFUZZER defined) the
// body becomes LLVMFuzzerTestOneInput of the harness's own binary, fuzz_NAME.
// In the main build it is registered under NAME in the replay driver
// (replay_main.cc), which ctest runs over the harness's corpus and regression
// inputs. The body sees `data` and `size`, returns 0, and ends the process
// (FUZZ_CHECK, or a sanitizer) on a bug; an error Result is not a bug.
//
// Thread-safety: harnesses run one input at a time on one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace patchlab::fuzz {

using FuzzFunction = int (*)(const uint8_t* data, size_t size);

// Registers `fn` as the harness called `name` in the replay driver; returns
// true so that a namespace-scope bool can hold the call. Names are unique.
bool RegisterFuzzTarget(std::string_view name, FuzzFunction fn);

// Looks up a registered harness; nullptr when there is none called `name`.
FuzzFunction FindFuzzTarget(std::string_view name);

inline std::string_view AsText(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Ends the process with a message when a property a harness checks fails, so
// that libFuzzer keeps the input as a crash and ctest's replay fails.
[[noreturn]] inline void FuzzCheckFailed(const char* file, int line, const char* what) {
  std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", file, line, what);
  std::abort();
}

}  // namespace patchlab::fuzz

#define FUZZ_CHECK(cond) \
  ((cond) ? (void)0 : ::patchlab::fuzz::FuzzCheckFailed(__FILE__, __LINE__, #cond))

#ifdef PATCHLAB_LIBFUZZER
#define PATCHLAB_FUZZ_TARGET(name) \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
#else
#define PATCHLAB_FUZZ_TARGET(name)                                  \
  static int FuzzOne_##name(const uint8_t* data, size_t size);      \
  [[maybe_unused]] static const bool fuzz_registered_##name =       \
      ::patchlab::fuzz::RegisterFuzzTarget(#name, &FuzzOne_##name); \
  static int FuzzOne_##name(const uint8_t* data, size_t size)
#endif
