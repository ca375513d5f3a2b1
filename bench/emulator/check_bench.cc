// How fast a full semantic check runs (reset both sandboxes, place the input,
// run old and new, compare every shared writable byte) against a bare Unicorn
// loop over the same function and inputs, measured in the same run.
//
//   BM_Check_ParseLike / BM_Bare_ParseLike   a header parser writing a struct
//   BM_Check_AdlerLike / BM_Bare_AdlerLike   an adler32-like loop (loads only)
//   BM_Ratio_AdlerBigData                    the same in an image with 4 MiB of .bss
//
// The check runs inputs as `patchlab check` does: fast (no block hook) except
// every CheckOptions::count_every-th input, which is counted.
//
// Counters: execs_per_s (function executions: two per compared pair for a
// check, one per run for the bare loop) and pairs_per_s. At the end the
// program prints, per function, check execs/s divided by bare execs/s.
// BM_Ratio_* interleave the two in small chunks (the robust figure on a
// loaded machine): ratio_median, bare_execs_per_s, check_execs_per_s,
// reruns (fast pairs re-run counted because they could not be settled).
// Goals (issue 4): ratio >= 0.90; >= 150,000 pairs/s on the parse-like one.
#include <benchmark/benchmark.h>
#include <unicorn/unicorn.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <string>
#include <vector>

#include "base/elf_file.h"
#include "emulator/checker.h"
#include "emulator/layout.h"
#include "emulator/pair_runner.h"

namespace patchlab::emulator {
namespace {

constexpr const char* kParseSig =
    "int parse_header(const char *buf, size_t len, struct header *h /* 32 bytes */)";
constexpr const char* kAdlerSig = "uint32_t adler_like(const unsigned char *buf, size_t len)";
constexpr const char* kNothingSig = "void do_nothing(void)";
constexpr const char* kFirstByteSig = "int first_byte(const unsigned char *buf, size_t len)";

// What a benchmark's inputs look like.
enum class Shape { kParse, kBuffer, kNone };

Signature Sig(const char* text) {
  auto s = ParseSignature(text);
  if (!s) {
    std::fprintf(stderr, "%s\n", s.error().ToString().c_str());
    std::abort();
  }
  return *s;
}

// The checker's mode for the k-th input.
RunMode ModeOf(uint64_t k) {
  static const uint64_t every = CheckOptions{}.count_every;
  return k % every == 0 ? RunMode::kCounted : RunMode::kFast;
}

// Deterministic inputs: header lines of 40-70 bytes, 128 pseudo-random bytes,
// or no argument at all.
std::vector<Input> MakeInputs(Shape shape) {
  const bool parse = shape == Shape::kParse;
  static const char* kKeys[] = {"Content-Length", "Accept", "X-Request-Id", "Cache-Control",
                                "Host"};
  static const char* kValues[] = {"12345; charset=utf-8, gzip", "text/html,application/xml;q=0.9",
                                  "max-age=600, no-store", "example.org:8080", "  17, 23, 42; 99"};
  std::vector<Input> out;
  uint32_t x = 12345;
  for (int i = 0; i < 256; ++i) {
    Input in;
    if (shape == Shape::kNone) {
      out.push_back(std::move(in));
      continue;
    }
    in.args.resize(parse ? 3 : 2);
    std::vector<uint8_t> b;
    if (parse) {
      std::string line =
          std::string(kKeys[i % 5]) + ": " + kValues[(i / 5) % 5] + std::to_string(i * 7919);
      b.assign(line.begin(), line.end());
      in.args[2].bytes.assign(32, 0);
    } else {
      for (int k = 0; k < 128; ++k)
        b.push_back(static_cast<uint8_t>((x = x * 1103515245 + 12345) >> 16));
    }
    in.args[1].value = b.size();
    in.args[0].bytes = std::move(b);
    out.push_back(std::move(in));
  }
  return out;
}

int PointerArgs(Shape shape) {
  return shape == Shape::kParse ? 3 : shape == Shape::kBuffer ? 1 : 0;
}

void BM_Check(benchmark::State& state, const char* sig_text, const char* symbol, Shape shape) {
  Signature sig = Sig(sig_text);
  auto pr = PairRunner::Create(sig, {BENCH_FUNCTIONS, symbol}, {BENCH_FUNCTIONS, symbol}, 1000000);
  if (!pr) {
    state.SkipWithError(pr.error().ToString().c_str());
    return;
  }
  std::vector<Input> inputs = MakeInputs(shape);
  size_t i = 0;
  uint64_t divergences = 0, insns = 0;
  uint64_t counted = 0;
  for (auto _ : state) {
    PairOutcome o = (*pr)->Run(inputs[i & 255], ModeOf(i));
    ++i;
    divergences += o.divergence.has_value();
    if (o.counted) {
      insns += o.old_out->insns;
      ++counted;
    }
  }
  state.counters["insns_per_exec"] =
      counted == 0 ? 0.0 : static_cast<double>(insns) / static_cast<double>(counted);
  state.counters["reruns"] = static_cast<double>((*pr)->fast_reruns());
  if (divergences != 0) state.SkipWithError("a function diverged from itself");
  state.counters["pairs_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["execs_per_s"] = benchmark::Counter(2.0 * static_cast<double>(state.iterations()),
                                                     benchmark::Counter::kIsRate);
}

// The engine's own limit: one engine, the ELF's segments mapped once, and per
// run only what any harness must do: write the input, set the argument
// registers and the return address, start.
class BareLoop {
 public:
  bool Open(const char* file, const char* symbol, int pointer_args) {
    auto elf = ElfFile::Open(file);
    if (!elf || uc_open(UC_ARCH_X86, UC_MODE_64, &uc_) != UC_ERR_OK) return false;
    const uint64_t bias = kTargetBase;
    for (const ElfSegment& s : elf->LoadSegments()) {
      uint64_t start = (s.vaddr + bias) & ~(kPageSize - 1);
      uint64_t end = (s.vaddr + bias + s.memsz + kPageSize - 1) & ~(kPageSize - 1);
      uc_mem_map(uc_, start, end - start, UC_PROT_ALL);  // overlapping pages: already mapped, fine
      uc_mem_write(uc_, s.vaddr + bias, elf->bytes().data() + s.offset, s.filesz);
    }
    const ElfSymbol* sym = elf->FindSymbol(symbol);
    if (sym == nullptr) return false;
    entry_ = sym->value + bias;
    uc_mem_map(uc_, kStackTop - kStackBytes, kStackBytes, UC_PROT_READ | UC_PROT_WRITE);
    uc_mem_map(uc_, kSentinel & ~(kPageSize - 1), kPageSize, UC_PROT_READ | UC_PROT_EXEC);
    uc_mem_map(uc_, kTlsBase, kPageSize, UC_PROT_READ | UC_PROT_WRITE);
    uint64_t fs = kTlsBase;
    uc_reg_write(uc_, UC_X86_REG_FS_BASE, &fs);
    for (int i = 0; i < pointer_args; ++i) {
      uc_mem_map(uc_, ArgPage(i), kArgBytes, UC_PROT_READ | UC_PROT_WRITE);
    }
    return true;
  }
  ~BareLoop() {
    if (uc_ != nullptr) uc_close(uc_);
  }
  uint64_t Run(const Input& in) {
    uint64_t args[3] = {0, 0, 0};
    for (size_t i = 0; i < in.args.size(); ++i) {
      if (in.args[i].bytes.empty()) {
        args[i] = in.args[i].value;
        continue;
      }
      uint64_t addr = ArgPage(i) + kArgBytes - in.args[i].bytes.size();
      uc_mem_write(uc_, addr, in.args[i].bytes.data(), in.args[i].bytes.size());
      args[i] = addr;
    }
    uint64_t rsp = kInitialRsp;
    uc_mem_write(uc_, rsp, &kSentinel, 8);
    int regs[4] = {UC_X86_REG_RDI, UC_X86_REG_RSI, UC_X86_REG_RDX, UC_X86_REG_RSP};
    void* vals[4] = {&args[0], &args[1], &args[2], &rsp};
    uc_reg_write_batch(uc_, regs, vals, 4);
    uc_emu_start(uc_, entry_, kSentinel, 0, 0);
    uint64_t rax = 0;
    uc_reg_read(uc_, UC_X86_REG_RAX, &rax);
    return rax;
  }

 private:
  uc_engine* uc_ = nullptr;
  uint64_t entry_ = 0;
};

void BM_Bare(benchmark::State& state, const char* symbol, Shape shape) {
  BareLoop bare;
  if (!bare.Open(BENCH_FUNCTIONS, symbol, PointerArgs(shape))) {
    state.SkipWithError("cannot set up the bare Unicorn loop");
    return;
  }
  std::vector<Input> inputs = MakeInputs(shape);
  size_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(bare.Run(inputs[i++ & 255]));
  state.counters["execs_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Bare loop and full check interleaved in chunks of 256 function executions,
// each chunk timed in thread CPU time, so that both see the same machine
// (this one is shared and its load changes by the second). The ratio is the
// median over chunk pairs of check execs/s divided by bare execs/s.
void BM_Ratio(benchmark::State& state, const char* sig_text, const char* symbol, Shape shape,
              const char* file = BENCH_FUNCTIONS) {
  Signature sig = Sig(sig_text);
  auto pr = PairRunner::Create(sig, {file, symbol}, {file, symbol}, 1000000);
  BareLoop bare;
  if (!pr || !bare.Open(file, symbol, PointerArgs(shape))) {
    state.SkipWithError("setup failed");
    return;
  }
  std::vector<Input> inputs = MakeInputs(shape);
  std::vector<double> ratios;
  double bare_s = 0, check_s = 0;
  uint64_t chunks = 0, k = 0;
  for (auto _ : state) {
    double t0 = ThreadCpuSeconds();
    for (int i = 0; i < 256; ++i) benchmark::DoNotOptimize(bare.Run(inputs[i]));
    double t1 = ThreadCpuSeconds();
    for (int i = 0; i < 128; ++i, ++k) {
      benchmark::DoNotOptimize(
          (*pr)
              ->Run(inputs[(2 * static_cast<uint64_t>(i) + (chunks & 1)) & 255], ModeOf(k))
              .divergence);
    }
    double t2 = ThreadCpuSeconds();
    bare_s += t1 - t0;
    check_s += t2 - t1;
    ++chunks;
    if (t1 > t0 && t2 > t1)
      ratios.push_back((t1 - t0) / (t2 - t1));  // equal exec counts: ratio of rates
  }
  std::sort(ratios.begin(), ratios.end());
  state.counters["ratio_median"] = ratios.empty() ? 0.0 : ratios[ratios.size() / 2];
  const auto n = static_cast<double>(chunks);
  state.counters["bare_execs_per_s"] = bare_s > 0 ? 256.0 * n / bare_s : 0.0;
  state.counters["check_execs_per_s"] = check_s > 0 ? 256.0 * n / check_s : 0.0;
  state.counters["check_pairs_per_s"] = check_s > 0 ? 128.0 * n / check_s : 0.0;
  state.counters["reruns"] = static_cast<double>((*pr)->fast_reruns());
  // What a compared pair costs beyond the two bare executions it stands for.
  if (chunks > 0)
    state.counters["added_ns_per_pair"] = (check_s / (128.0 * n) - bare_s / (128.0 * n)) * 1e9;
}

void BM_Check_ParseLike(benchmark::State& s) {
  BM_Check(s, kParseSig, "parse_header", Shape::kParse);
}
void BM_Bare_ParseLike(benchmark::State& s) { BM_Bare(s, "parse_header", Shape::kParse); }
void BM_Check_AdlerLike(benchmark::State& s) {
  BM_Check(s, kAdlerSig, "adler_like", Shape::kBuffer);
}
void BM_Bare_AdlerLike(benchmark::State& s) { BM_Bare(s, "adler_like", Shape::kBuffer); }
void BM_Ratio_ParseLike(benchmark::State& s) {
  BM_Ratio(s, kParseSig, "parse_header", Shape::kParse);
}
void BM_Ratio_AdlerLike(benchmark::State& s) {
  BM_Ratio(s, kAdlerSig, "adler_like", Shape::kBuffer);
}
// The adler32-like function in an image with 4 MiB of .bss it never writes:
// the check restores and compares only the image data a run wrote, so this
// should cost what BM_Ratio_AdlerLike does.
void BM_Ratio_AdlerBigData(benchmark::State& s) {
  BM_Ratio(s, kAdlerSig, "adler_like", Shape::kBuffer, BENCH_FUNCTIONS_BIG_DATA);
}
// The check's own cost per pair, with functions that do next to nothing: the
// floor under added_ns_per_pair of the two above.
void BM_Ratio_Nothing(benchmark::State& s) { BM_Ratio(s, kNothingSig, "do_nothing", Shape::kNone); }
void BM_Ratio_FirstByte(benchmark::State& s) {
  BM_Ratio(s, kFirstByteSig, "first_byte", Shape::kBuffer);
}
void BM_Check_Nothing(benchmark::State& s) { BM_Check(s, kNothingSig, "do_nothing", Shape::kNone); }
BENCHMARK(BM_Ratio_ParseLike)->MinTime(2.0);
BENCHMARK(BM_Ratio_AdlerLike)->MinTime(2.0);
BENCHMARK(BM_Ratio_AdlerBigData)->MinTime(1.0);
BENCHMARK(BM_Ratio_Nothing)->MinTime(1.0);
BENCHMARK(BM_Ratio_FirstByte)->MinTime(1.0);
BENCHMARK(BM_Bare_ParseLike)->MinTime(1.0);
BENCHMARK(BM_Check_ParseLike)->MinTime(1.0);
BENCHMARK(BM_Bare_AdlerLike)->MinTime(1.0);
BENCHMARK(BM_Check_AdlerLike)->MinTime(1.0);
BENCHMARK(BM_Check_Nothing)->MinTime(1.0);

// Prints as usual and keeps each benchmark's execs_per_s for the ratios.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      auto it = r.counters.find("execs_per_s");
      if (it != r.counters.end() && r.run_type == Run::RT_Iteration)
        rates[r.benchmark_name()] = it->second.value;
      auto p = r.counters.find("pairs_per_s");
      if (p != r.counters.end()) pairs[r.benchmark_name()] = p->second.value;
    }
  }
  std::map<std::string, double> rates, pairs;
};

}  // namespace
}  // namespace patchlab::emulator

int main(int argc, char** argv) {
  using patchlab::emulator::RatioReporter;
  benchmark::Initialize(&argc, argv);
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  for (const char* fn : {"ParseLike", "AdlerLike"}) {
    auto check = reporter.rates.find(std::string("BM_Check_") + fn + "/min_time:1.000");
    auto bare = reporter.rates.find(std::string("BM_Bare_") + fn + "/min_time:1.000");
    if (check == reporter.rates.end() || bare == reporter.rates.end() || bare->second == 0)
      continue;
    std::printf("%s: check %.0f execs/s (%.0f pairs/s), bare %.0f execs/s, ratio %.3f\n", fn,
                check->second, reporter.pairs[check->first], bare->second,
                check->second / bare->second);
  }
  return 0;
}
