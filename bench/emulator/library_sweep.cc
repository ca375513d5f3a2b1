// How much of a real library the checker can judge: every function of a
// seeded random sample of the library's exported functions is checked
// against itself (old and new are the same function, so any divergence is a
// checker bug), with its signature from DWARF (the library's debug file by
// build-id, e.g. from libc6-dbg). Prints how many were judged equivalent,
// inconclusive, refused (no check ran: no DWARF, an unsupported type, ...)
// and diverged, the reasons grouped, and the pairs checked per second.
//
//   emulator_library_sweep /lib/x86_64-linux-gnu/libc.so.6 --sample 300 --seed 1
//
// Options: --sample N (300; 0: every function), --seed S (1), --inputs N
// (input pairs per function, 1000), --timeout SECONDS (per function, 120),
// --only NAME[,NAME...] (check these instead of a sample), --cpu MODEL,
// --json FILE (one object per function), --verbose (one line per function).
//
// Each check runs in a child process, so that a function that takes the
// checker down (an abort on a broken invariant) or past the timeout is
// reported as such and the sweep goes on.
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "base/elf_file.h"
#include "emulator/checker.h"

namespace patchlab::emulator {
namespace {

struct SweepOptions {
  std::string library;
  uint64_t sample = 300;
  uint64_t seed = 1;
  uint64_t inputs = 1000;
  int timeout_s = 120;
  std::vector<std::string> only;
  std::string cpu;
  bool deny_syscalls = false;
  std::string json_path;
  bool verbose = false;
};

// One function's result, as the child reports it.
struct Outcome {
  std::string function;
  std::string category;  // equivalent, inconclusive, refused, diverged, crashed, timeout
  std::string reason;    // for all but equivalent
  std::string verdict;
  std::string signature;
  uint64_t inputs_run = 0;
  uint64_t returned_inputs = 0;
  double seconds = 0;
};

uint64_t SplitMix(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// The names of the exported functions (defined FUNC or IFUNC in .dynsym,
// global or weak), sorted, each once.
std::vector<std::string> ExportedFunctions(const ElfFile& elf) {
  std::set<std::string> names;
  for (const ElfSymbol& s : elf.symbols()) {
    if (!s.dynamic || !s.defined || s.name.empty()) continue;
    if (s.type != SymbolType::kFunc && s.type != SymbolType::kIfunc) continue;
    if (s.binding != SymbolBinding::kGlobal && s.binding != SymbolBinding::kWeak) continue;
    names.insert(s.name);
  }
  return {names.begin(), names.end()};
}

// A seeded sample of `n` names (all of them when n is 0 or too large), in
// the order drawn.
std::vector<std::string> Sample(std::vector<std::string> names, uint64_t n, uint64_t seed) {
  uint64_t state = seed;
  for (size_t i = names.size(); i > 1; --i) std::swap(names[i - 1], names[SplitMix(state) % i]);
  if (n != 0 && n < names.size()) names.resize(n);
  return names;
}

// Runs in the child: the check and its result as one JSON line.
std::string CheckOne(const SweepOptions& o, const std::string& function) {
  CheckOptions c;
  c.old_fn = {o.library, function};
  c.new_fn = {o.library, function};
  c.inputs = o.inputs;
  c.seed = o.seed;
  c.cpu = o.cpu;
  c.deny_syscalls = o.deny_syscalls;
  nlohmann::json j;
  auto r = RunCheck(c);
  if (!r) {
    j["category"] = "refused";
    j["reason"] = r.error().ToString();
    return j.dump();
  }
  j["verdict"] = std::string(VerdictName(r->verdict));
  j["signature"] = r->signature;
  j["inputs_run"] = r->inputs_run;
  j["returned_inputs"] = r->returned_inputs;
  switch (r->verdict) {
    case Verdict::kEquivalent:
      j["category"] = "equivalent";
      break;
    case Verdict::kInconclusive:
      j["category"] = "inconclusive";
      j["reason"] = r->inconclusive_reason;
      break;
    default:
      j["category"] = "diverged";
      j["reason"] = r->counterexamples.empty()
                        ? std::string(VerdictName(r->verdict))
                        : r->counterexamples[0].kind + ": " + r->counterexamples[0].input_text +
                              ": " + r->counterexamples[0].detail;
      break;
  }
  return j.dump();
}

// Forks, checks `function` in the child and reads its line, within the timeout.
Outcome RunChild(const SweepOptions& o, const std::string& function) {
  Outcome out;
  out.function = function;
  const auto start = std::chrono::steady_clock::now();
  int fds[2];
  if (pipe(fds) != 0) {
    out.category = "crashed";
    out.reason = "pipe failed";
    return out;
  }
  std::fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    std::string line = CheckOne(o, function) + "\n";
    for (size_t done = 0; done < line.size();) {
      ssize_t n = write(fds[1], line.data() + done, line.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    _exit(0);
  }
  close(fds[1]);
  std::string text;
  const auto deadline = start + std::chrono::seconds(o.timeout_s);
  bool timed_out = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000))) <= 0) continue;
    char buf[4096];
    ssize_t n = read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (timed_out) {
    out.category = "timeout";
    out.reason = fmt::format("no verdict within {} s", o.timeout_s);
    return out;
  }
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.contains("category")) {
    out.category = "crashed";
    out.reason = WIFSIGNALED(status) ? fmt::format("checker died of signal {}", WTERMSIG(status))
                                     : "checker gave no result";
    return out;
  }
  out.category = j["category"];
  out.reason = j.value("reason", "");
  out.verdict = j.value("verdict", "");
  out.signature = j.value("signature", "");
  out.inputs_run = j.value("inputs_run", uint64_t{0});
  out.returned_inputs = j.value("returned_inputs", uint64_t{0});
  return out;
}

// A reason with what is particular to one function taken out, so that the
// same cause groups together: the function's name, addresses, numbers, the
// library's path, quoted names of parameters and types.
std::string Group(const Outcome& r, const std::string& library) {
  std::string s = r.reason;
  auto replace_all = [&](const std::string& what, const std::string& with) {
    if (what.empty()) return;
    for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + with.size()))
      s.replace(at, what.size(), with);
  };
  replace_all(library, "LIB");
  replace_all("'" + r.function + "'", "'F'");
  replace_all(r.function + ":", "F:");
  static const std::regex kSignature("signature of [^ ]+: ");
  s = std::regex_replace(s, kSignature, "");
  static const std::regex kDebugFile("/usr/lib/debug/[^ ]+");
  s = std::regex_replace(s, kDebugFile, "DEBUGFILE");
  // The prototype a refusal suggests is the function's own.
  static const std::regex kSuggested("--sig \"[^\"]*\"");
  s = std::regex_replace(s, kSuggested, "--sig \"PROTOTYPE\"");
  static const std::regex kHex("0x[0-9a-f]+");
  s = std::regex_replace(s, kHex, "ADDR");
  static const std::regex kParam("parameter '[^']*' \\([^)]*\\)");
  s = std::regex_replace(s, kParam, "parameter P");
  static const std::regex kReturns("returns [^:]+:");
  s = std::regex_replace(s, kReturns, "returns T:");
  static const std::regex kNumber("\\b[0-9]+\\b");
  s = std::regex_replace(s, kNumber, "N");
  return s;
}

int Main(int argc, char** argv) {
  SweepOptions o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--sample") {
      o.sample = std::stoull(value());
    } else if (a == "--seed") {
      o.seed = std::stoull(value());
    } else if (a == "--inputs") {
      o.inputs = std::stoull(value());
    } else if (a == "--timeout") {
      o.timeout_s = std::stoi(value());
    } else if (a == "--only") {
      std::string list = value();
      for (size_t b = 0; b <= list.size();) {
        size_t e = list.find(',', b);
        if (e == std::string::npos) e = list.size();
        if (e > b) o.only.push_back(list.substr(b, e - b));
        b = e + 1;
      }
    } else if (a == "--cpu") {
      o.cpu = value();
    } else if (a == "--deny-syscalls") {
      o.deny_syscalls = true;
    } else if (a == "--json") {
      o.json_path = value();
    } else if (a == "--verbose") {
      o.verbose = true;
    } else if (o.library.empty() && !a.starts_with("--")) {
      o.library = a;
    } else {
      std::fprintf(stderr,
                   "usage: emulator_library_sweep LIBRARY [--sample N] [--seed S] [--inputs N] "
                   "[--timeout S] [--only F,G] [--cpu MODEL] [--deny-syscalls] [--json FILE] "
                   "[--verbose]\n");
      return 2;
    }
  }
  if (o.library.empty()) {
    std::fprintf(stderr, "emulator_library_sweep: which library?\n");
    return 2;
  }
  auto elf = ElfFile::Open(o.library);
  if (!elf) {
    std::fprintf(stderr, "%s\n", elf.error().ToString().c_str());
    return 2;
  }
  std::vector<std::string> all = ExportedFunctions(*elf);
  std::vector<std::string> picked = o.only.empty() ? Sample(all, o.sample, o.seed) : o.only;
  std::printf("%s: %zu exported functions, checking %zu (seed %lu, %lu inputs each%s%s%s)\n",
              o.library.c_str(), all.size(), picked.size(), o.seed, o.inputs,
              o.cpu.empty() ? "" : ", --cpu ", o.cpu.c_str(),
              o.deny_syscalls ? ", --deny-syscalls" : "");

  std::vector<Outcome> results;
  const auto start = std::chrono::steady_clock::now();
  for (const std::string& f : picked) {
    results.push_back(RunChild(o, f));
    const Outcome& r = results.back();
    if (o.verbose) {
      std::printf("%-32s %-12s %6.2fs %s\n", f.c_str(), r.category.c_str(), r.seconds,
                  r.category == "equivalent" ? r.signature.c_str() : r.reason.c_str());
      std::fflush(stdout);
    }
  }
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::map<std::string, int> counts;
  std::map<std::string, std::map<std::string, std::vector<std::string>>> groups;
  uint64_t pairs = 0, equivalent_no_return = 0;
  double check_seconds = 0;
  for (const Outcome& r : results) {
    ++counts[r.category];
    if (r.category != "equivalent") groups[r.category][Group(r, o.library)].push_back(r.function);
    if (r.category == "equivalent" && r.returned_inputs == 0) ++equivalent_no_return;
    if (r.inputs_run > 0) {
      pairs += r.inputs_run;
      check_seconds += r.seconds;
    }
  }
  const double n = static_cast<double>(results.size());
  std::printf("\n");
  for (const char* c :
       {"equivalent", "inconclusive", "refused", "diverged", "crashed", "timeout"}) {
    std::printf("%-13s %4d  (%.1f%%)\n", c, counts[c], n == 0 ? 0.0 : 100.0 * counts[c] / n);
  }
  std::printf("equivalent with no input returning on either side: %lu\n", equivalent_no_return);
  std::printf("pairs: %lu in %.1f s of checks that ran: %.0f pairs/s; sweep %.1f s wall\n", pairs,
              check_seconds, check_seconds > 0 ? static_cast<double>(pairs) / check_seconds : 0.0,
              wall);
  for (const auto& [category, by_reason] : groups) {
    std::vector<std::pair<std::string, std::vector<std::string>>> sorted(by_reason.begin(),
                                                                         by_reason.end());
    std::sort(sorted.begin(), sorted.end(),
              [](const auto& a, const auto& b) { return a.second.size() > b.second.size(); });
    std::printf("\n%s, by reason:\n", category.c_str());
    for (const auto& [reason, functions] : sorted) {
      std::string names;
      for (size_t k = 0; k < functions.size() && k < 6; ++k)
        names += (k ? ", " : "") + functions[k];
      if (functions.size() > 6) names += ", ...";
      std::printf("  %4zu  %s\n        (%s)\n", functions.size(), reason.c_str(), names.c_str());
    }
  }
  if (!o.json_path.empty()) {
    nlohmann::json all_json = nlohmann::json::array();
    for (const Outcome& r : results) {
      all_json.push_back({{"function", r.function},
                          {"category", r.category},
                          {"reason", r.reason},
                          {"verdict", r.verdict},
                          {"signature", r.signature},
                          {"inputs_run", r.inputs_run},
                          {"returned_inputs", r.returned_inputs},
                          {"seconds", r.seconds}});
    }
    std::ofstream(o.json_path) << all_json.dump(1) << "\n";
  }
  return counts["diverged"] + counts["crashed"] > 0 ? 1 : 0;
}

}  // namespace
}  // namespace patchlab::emulator

int main(int argc, char** argv) { return patchlab::emulator::Main(argc, argv); }
