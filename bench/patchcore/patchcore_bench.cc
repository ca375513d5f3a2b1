// Patch core figures, each against a baseline measured in the same run:
//   BM_Pause_Apply/N      apply + revert of a one-function patch to a target
//                         with N hammering threads; counters pause_us and
//                         attach_us (medians over the iterations are in the
//                         aggregate rows with --benchmark_repetitions).
//   BM_Call_Direct        calling the new function directly (baseline)
//   BM_Call_Trampoline    calling it through the entry jmp + island slot that
//                         apply writes (the same two instructions, in a page
//                         of this process)
//   BM_Memory_Pss         PSS growth of the patched target against the bytes
//                         the patch maps (counter extra_kib = growth - mapped)
#include <signal.h>
#include <sys/mman.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include <benchmark/benchmark.h>

#include "base/subprocess.h"
#include "patchcore/island.h"
#include "patchcore/patch_package.h"
#include "patchcore/patcher.h"

namespace patchlab::patchcore {
namespace {

std::filesystem::path Scratch() {
  auto dir = std::filesystem::temp_directory_path() / "patchcore_bench";
  std::filesystem::create_directories(dir);
  ::setenv("HOTPATCH_STATE_DIR", (dir / "state").c_str(), 1);
  return dir;
}

std::string PackageFor() {
  auto dir = Scratch();
  std::string out = (dir / "p1.hpk").string();
  SubprocessOptions o;
  o.argv = {HOTPATCH_BIN, "pack", "--target", TARGET_PIE, "--object", PATCH_COMPUTE, "--id", "p1",
            "--seq", "1", "--func", "compute=compute_v1", "--ref", "private_helper", "--ref",
            "private_calls", "-o", out};
  auto r = RunSubprocess(o);
  if (!r || !r->status.Success()) std::abort();
  return out;
}

std::optional<Subprocess> StartTarget(int threads) {
  SubprocessOptions o;
  o.argv = {TARGET_PIE, "--threads", std::to_string(threads)};
  o.stdout_mode = OutputMode::kNull;
  auto p = Subprocess::Start(o);
  if (!p) return std::nullopt;
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  return std::move(*p);
}

void BM_Pause_Apply(benchmark::State& state) {
  auto pkg = ReadPackage(PackageFor());
  auto target = StartTarget(static_cast<int>(state.range(0)));
  if (!pkg || !target) {
    state.SkipWithError("cannot start the target");
    return;
  }
  auto patcher = Patcher::Open(target->pid());
  ApplyOptions options;
  options.allow_unsigned = true;
  std::vector<double> pauses, attaches;
  for (auto _ : state) {
    auto r = patcher->Apply(*pkg, options);
    if (!r) {
      state.SkipWithError(r.error().ToString().c_str());
      return;
    }
    pauses.push_back(static_cast<double>(r->pause.count()));
    attaches.push_back(static_cast<double>(r->attach.count()));
    state.SetIterationTime(static_cast<double>(r->pause.count()) / 1e6);
    state.PauseTiming();
    (void)patcher->Revert("p1");
    state.ResumeTiming();
  }
  std::sort(pauses.begin(), pauses.end());
  std::sort(attaches.begin(), attaches.end());
  state.counters["pause_us_median"] = pauses[pauses.size() / 2];
  state.counters["attach_us_median"] = attaches[attaches.size() / 2];
}
BENCHMARK(BM_Pause_Apply)->Arg(1)->Arg(16)->Arg(64)->Iterations(15)->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

__attribute__((noinline)) long NewFunction(long x) { return x * 2 + 1; }

// entry: jmp rel32 -> slot; slot: jmp [rip+0] -> NewFunction, as apply writes them.
void* Trampoline() {
  static void* entry = [] {
    auto* page = static_cast<uint8_t*>(mmap(nullptr, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    RemotePtr at(reinterpret_cast<uint64_t>(page));
    RemotePtr slot = at + 64;
    auto jump = EncodeEntryJump(at, slot, 5);
    std::memcpy(page, jump->data(), jump->size());
    auto s = EncodeSlot(RemotePtr(reinterpret_cast<uint64_t>(&NewFunction)));
    std::memcpy(page + 64, s.data(), s.size());
    return static_cast<void*>(page);
  }();
  return entry;
}

void BM_Call_Direct(benchmark::State& state) {
  long (*volatile fn)(long) = &NewFunction;
  long x = 0;
  for (auto _ : state) benchmark::DoNotOptimize(x = fn(x));
}
BENCHMARK(BM_Call_Direct);

void BM_Call_Trampoline(benchmark::State& state) {
  long (*volatile fn)(long) = reinterpret_cast<long (*)(long)>(Trampoline());
  long x = 0;
  for (auto _ : state) benchmark::DoNotOptimize(x = fn(x));
}
BENCHMARK(BM_Call_Trampoline);

long PssKib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("Pss:", 0) == 0) return std::stol(line.substr(4));
  }
  return -1;
}

void BM_Memory_Pss(benchmark::State& state) {
  auto pkg = ReadPackage(PackageFor());
  auto target = StartTarget(1);
  if (!pkg || !target) {
    state.SkipWithError("cannot start the target");
    return;
  }
  auto patcher = Patcher::Open(target->pid());
  ApplyOptions options;
  options.allow_unsigned = true;
  long growth = 0, mapped = 0;
  for (auto _ : state) {
    long before = PssKib(target->pid());
    auto r = patcher->Apply(*pkg, options);
    if (!r) {
      state.SkipWithError(r.error().ToString().c_str());
      return;
    }
    growth = PssKib(target->pid()) - before;
    mapped = static_cast<long>(r->mapped_bytes / 1024);
    (void)patcher->Revert("p1");
  }
  state.counters["pss_growth_kib"] = static_cast<double>(growth);
  state.counters["mapped_kib"] = static_cast<double>(mapped);
  state.counters["extra_kib"] = static_cast<double>(growth - mapped);
}
BENCHMARK(BM_Memory_Pss)->Iterations(3)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace patchlab::patchcore

BENCHMARK_MAIN();
