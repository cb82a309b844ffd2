/// @file
/// @brief Wake-up latency of an idle oneTBB arena: `task_arena::enqueue` from outside -> task start.
///
/// Threads: `tbb_worker_arena(N)`: N oneTBB workers, no slot reserved for outside threads; the
/// benchmark thread stays outside and hands the task over with `arena.enqueue`, which is what
/// flowpool's `submit` from outside does (flowpool.cpp: N workers). A thread joining the arena
/// with `execute` would run the task itself and measure no wake-up at all. The benchmark thread
/// then blocks on a semaphore the task releases (flowpool's side blocks in `future::get`).
#include "wakeup_workload.hpp"

#include <bench_threads.hpp>
#include <tbb_arenas.hpp>

#include <benchmark/benchmark.h>

#include <semaphore>

namespace {

using flowpool_bench::wakeup_clock;

void wakeup_on_tbb(benchmark::State& state) {
  const std::size_t threads = flowpool_bench::bench_threads();
  flowpool_bench::tbb_worker_arena tbb(threads);
  std::binary_semaphore done(0);
  flowpool_bench::wakeup_benchmark(state, threads, [&tbb, &done](wakeup_clock::time_point& submitted) {
    wakeup_clock::time_point started;
    submitted = wakeup_clock::now();
    tbb.arena.enqueue([&started, &done] {
      started = wakeup_clock::now();
      done.release();
    });
    done.acquire();  // the release/acquire pair orders the task's write of `started` before the read
    return started;
  });
}

}  // namespace

BENCHMARK(wakeup_on_tbb)
    ->Name("wakeup/tbb")
    ->Apply(flowpool_bench::wakeup_gap_args)
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
