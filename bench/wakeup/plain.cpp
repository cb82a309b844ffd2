/// @file
/// @brief Wake-up latency of the plain pool (bench/common/plain_pool.hpp: one mutex, one condition
/// variable, a deque): `post` from outside -> task start.
///
/// Threads: a `plain_pool` with N workers; the benchmark thread stays outside, posts, and blocks
/// on a semaphore the task releases, as oneTBB's side does (tbb.cpp).
#include "wakeup_workload.hpp"

#include <bench_threads.hpp>
#include <plain_pool.hpp>

#include <benchmark/benchmark.h>

#include <semaphore>

namespace {

using flowpool_bench::wakeup_clock;

void wakeup_on_plain(benchmark::State& state) {
  const std::size_t threads = flowpool_bench::bench_threads();
  flowpool_bench::plain_pool pool(threads);
  std::binary_semaphore done(0);
  flowpool_bench::wakeup_benchmark(state, threads, [&pool, &done](wakeup_clock::time_point& submitted) {
    wakeup_clock::time_point started;
    submitted = wakeup_clock::now();
    pool.post([&started, &done] {
      started = wakeup_clock::now();
      done.release();
    });
    done.acquire();  // the release/acquire pair orders the task's write of `started` before the read
    return started;
  });
}

}  // namespace

BENCHMARK(wakeup_on_plain)
    ->Name("wakeup/plain")
    ->Apply(flowpool_bench::wakeup_gap_args)
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
