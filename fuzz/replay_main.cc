// fuzz_replay: the harnesses of fuzz/ without libFuzzer, built by the main
// (GCC) build so that ctest replays every corpus and regression input.
//
//   fuzz_replay NAME PATH...   runs harness NAME once on each PATH (a file, or
//                              every file under a folder, in name order)
//   fuzz_replay --list         the registered harness names
//
// Exit 0 when every input ran; 2 on a usage error, an unknown harness, a path
// that does not exist or no input at all (an empty corpus would pass silently).
// A harness that crashes or fails a FUZZ_CHECK takes the process down; the
// signal handler first names the input it was running.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "fuzz/fuzz_target.h"

namespace patchlab::fuzz {
namespace {

std::map<std::string, FuzzFunction, std::less<>>& Registry() {
  static std::map<std::string, FuzzFunction, std::less<>> registry;
  return registry;
}

// The input being replayed, for the crash handler (async-signal-safe use only).
char g_current_input[4096];

void OnFatalSignal(int sig) {
  static const char kPrefix[] = "fuzz_replay: crashed on input ";
  (void)!::write(STDERR_FILENO, kPrefix, sizeof kPrefix - 1);
  (void)!::write(STDERR_FILENO, g_current_input, std::strlen(g_current_input));
  (void)!::write(STDERR_FILENO, "\n", 1);
  ::raise(sig);  // SA_RESETHAND restored the default action: the process ends with `sig`
}

void InstallCrashHandler() {
  struct sigaction sa {};
  sa.sa_handler = OnFatalSignal;
  sa.sa_flags = SA_RESETHAND | SA_NODEFER;
  for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) ::sigaction(sig, &sa, nullptr);
}

// Every regular file named by `path`, sorted; false (with a message) when it is absent.
bool CollectInputs(const std::filesystem::path& path, std::vector<std::filesystem::path>* out) {
  std::error_code ec;
  if (std::filesystem::is_regular_file(path, ec)) {
    out->push_back(path);
    return true;
  }
  if (!std::filesystem::is_directory(path, ec)) {
    std::fprintf(stderr, "fuzz_replay: %s: no such file or folder\n", path.c_str());
    return false;
  }
  std::vector<std::filesystem::path> found;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(path, ec)) {
    if (entry.is_regular_file()) found.push_back(entry.path());
  }
  std::sort(found.begin(), found.end());
  out->insert(out->end(), found.begin(), found.end());
  return true;
}

}  // namespace

bool RegisterFuzzTarget(std::string_view name, FuzzFunction fn) {
  bool inserted = Registry().emplace(std::string(name), fn).second;
  if (!inserted) {
    std::fprintf(stderr, "fuzz_replay: two harnesses are called %.*s\n",
                 static_cast<int>(name.size()), name.data());
    std::abort();
  }
  return true;
}

FuzzFunction FindFuzzTarget(std::string_view name) {
  auto it = Registry().find(name);
  return it == Registry().end() ? nullptr : it->second;
}

}  // namespace patchlab::fuzz

int main(int argc, char** argv) {
  using namespace patchlab::fuzz;
  if (argc == 2 && std::strcmp(argv[1], "--list") == 0) {
    for (const auto& [name, fn] : Registry()) std::printf("%s\n", name.c_str());
    return 0;
  }
  if (argc < 3) {
    std::fprintf(stderr, "usage: fuzz_replay NAME PATH... | fuzz_replay --list\n");
    return 2;
  }
  FuzzFunction fn = FindFuzzTarget(argv[1]);
  if (fn == nullptr) {
    std::fprintf(stderr, "fuzz_replay: no harness called %s (see --list)\n", argv[1]);
    return 2;
  }
  std::vector<std::filesystem::path> inputs;
  for (int i = 2; i < argc; ++i) {
    if (!CollectInputs(argv[i], &inputs)) return 2;
  }
  if (inputs.empty()) {
    std::fprintf(stderr, "fuzz_replay: %s: no input to replay\n", argv[1]);
    return 2;
  }
  InstallCrashHandler();
  for (const std::filesystem::path& input : inputs) {
    std::snprintf(g_current_input, sizeof g_current_input, "%s", input.c_str());
    std::ifstream in(input, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) {
      std::fprintf(stderr, "fuzz_replay: cannot read %s\n", input.c_str());
      return 2;
    }
    // An exact-size heap copy, so that a sanitized build sees a read past the end.
    std::vector<uint8_t> data(bytes.begin(), bytes.end());
    fn(data.data(), data.size());
  }
  std::printf("%s: %zu inputs replayed\n", argv[1], inputs.size());
  return 0;
}
