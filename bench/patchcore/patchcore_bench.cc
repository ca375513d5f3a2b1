// Patch core figures, each against a baseline measured in the same run:
//   BM_Pause_Apply/N      apply + revert of a one-function patch to a target
//                         with N hammering threads; counters pause_us,
//                         attach_us and staging_us (one thread held to map
//                         the object before the stop), medians over the
//                         iterations, pause_us_p90, and `retried` (iterations
//                         whose stack check found a thread inside the function
//                         and parked or retried: the pause's tail);
//                         aggregate rows with --benchmark_repetitions.
//   BM_Call_Direct        calling the new function directly (baseline)
//   BM_Call_Trampoline    calling it through the entry jump apply writes when
//                         the replacement is within rel32 reach (the usual
//                         case: the patch object is mapped near its target):
//                         one direct jmp
//   BM_Call_ViaSlot       the fallback when it is not: entry jmp + island slot
//                         `jmp [rip+0]`
//   BM_Memory_Pss         PSS growth of the patched target against the bytes
//                         the patch maps (counter extra_kib = growth - mapped)
#include <benchmark/benchmark.h>
#include <signal.h>
#include <sys/mman.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

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
  o.argv = {HOTPATCH_BIN, "pack",
            "--target",   TARGET_PIE,
            "--object",   PATCH_COMPUTE,
            "--id",       "p1",
            "--seq",      "1",
            "--func",     "compute=compute_v1",
            "--ref",      "private_helper",
            "--ref",      "private_calls",
            "-o",         out};
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
  if (!patcher) {
    state.SkipWithError(patcher.error().ToString().c_str());
    return;
  }
  ApplyOptions options;
  options.allow_unsigned = true;
  std::vector<double> pauses, attaches, stagings;
  int retried = 0;  // iterations whose stack check found a thread inside and retried
  for (auto _ : state) {
    auto r = patcher->Apply(*pkg, options);
    if (!r) {
      state.SkipWithError(r.error().ToString().c_str());
      return;
    }
    pauses.push_back(static_cast<double>(r->pause.count()));
    attaches.push_back(static_cast<double>(r->attach.count()));
    stagings.push_back(static_cast<double>(r->staging.count()));
    retried += r->retries > 0;
    state.SetIterationTime(static_cast<double>(r->pause.count()) / 1e6);
    state.PauseTiming();
    (void)patcher->Revert("p1");
    state.ResumeTiming();
  }
  std::sort(pauses.begin(), pauses.end());
  std::sort(attaches.begin(), attaches.end());
  std::sort(stagings.begin(), stagings.end());
  state.counters["pause_us_median"] = pauses[pauses.size() / 2];
  state.counters["pause_us_p90"] = pauses[pauses.size() * 9 / 10];
  state.counters["retried"] = retried;
  state.counters["attach_us_median"] = attaches[attaches.size() / 2];
  state.counters["staging_us_median"] = stagings[stagings.size() / 2];
}
BENCHMARK(BM_Pause_Apply)
    ->Arg(1)
    ->Arg(16)
    ->Arg(64)
    ->Iterations(15)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

__attribute__((noinline)) long NewFunction(long x) { return x * 2 + 1; }

// A page of this process laid out as apply lays out a site: at +0 an entry
// that jumps straight to NewFunction; at +32 an entry that jumps to the slot
// at +64, which jumps on through its 8-byte address.
uint8_t* SitePage() {
  static uint8_t* page = [] {
    // Near NewFunction, as apply maps a patch object near its target.
    const uint64_t near = reinterpret_cast<uint64_t>(&NewFunction) & ~0xfffffull;
    uint8_t* p = nullptr;
    for (uint64_t off = 16ull << 20; off < (1ull << 30) && !p; off *= 2) {
      void* got =
          mmap(reinterpret_cast<void*>(near + off), 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
      if (got != MAP_FAILED) p = static_cast<uint8_t*>(got);
    }
    if (!p) std::abort();
    RemotePtr base(reinterpret_cast<uint64_t>(p));
    RemotePtr fn(reinterpret_cast<uint64_t>(&NewFunction));
    auto direct = EncodeEntryJump(base, fn, 5);
    auto to_slot = EncodeEntryJump(base + 32, base + 64, 5);
    auto slot = EncodeSlot(fn);
    if (!direct || !to_slot) std::abort();
    std::memcpy(p, direct->data(), direct->size());
    std::memcpy(p + 32, to_slot->data(), to_slot->size());
    std::memcpy(p + 64, slot.data(), slot.size());
    return p;
  }();
  return page;
}

void BM_Call_Direct(benchmark::State& state) {
  long (*volatile fn)(long) = &NewFunction;
  long x = 0;
  for (auto _ : state) benchmark::DoNotOptimize(x = fn(x));
}
BENCHMARK(BM_Call_Direct);

void BM_Call_Trampoline(benchmark::State& state) {
  long (*volatile fn)(long) = reinterpret_cast<long (*)(long)>(SitePage());
  long x = 0;
  for (auto _ : state) benchmark::DoNotOptimize(x = fn(x));
}
BENCHMARK(BM_Call_Trampoline);

void BM_Call_ViaSlot(benchmark::State& state) {
  long (*volatile fn)(long) = reinterpret_cast<long (*)(long)>(SitePage() + 32);
  long x = 0;
  for (auto _ : state) benchmark::DoNotOptimize(x = fn(x));
}
BENCHMARK(BM_Call_ViaSlot);

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
  if (!patcher) {
    state.SkipWithError(patcher.error().ToString().c_str());
    return;
  }
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
