// RunConcurrently: calls fn(i) for every i in [0, n), on at most `jobs`
// threads (each taking the next index when it is done with one), and
// returns when every call has returned. Each call runs wholly on one thread,
// which is what ptrace needs: the thread that attached is the only one that
// may talk to that tracee.
//
// Thread-safety: `fn` is called concurrently; it must only touch what its
// index owns (or lock).
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <thread>
#include <vector>

namespace patchlab::patchcore::internal {

inline void RunConcurrently(size_t n, int jobs, const std::function<void(size_t)>& fn) {
  if (n == 0) return;
  const size_t threads = std::min(n, static_cast<size_t>(std::max(jobs, 1)));
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next++; i < n; i = next++) fn(i);
  };
  std::vector<std::thread> pool;
  pool.reserve(threads - 1);
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  work();  // this thread takes its share too
  for (std::thread& t : pool) t.join();
}

// The default bound: one job per CPU this process may run on.
inline int DefaultJobs() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

}  // namespace patchlab::patchcore::internal
