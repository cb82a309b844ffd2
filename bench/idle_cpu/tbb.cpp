/// @file
/// @brief CPU used by an idle oneTBB arena of N workers over one second after a burst of work.
///
/// Threads: `tbb_worker_arena(N)`: N oneTBB workers, the benchmark thread outside; the burst is
/// handed over with `arena.enqueue(group.defer(...))` and awaited with `group.wait()` from
/// outside, like flowpool's `post` + `wait_idle()` (flowpool.cpp: N workers).
#include "idle_cpu_workload.hpp"

#include <bench_threads.hpp>
#include <task_tally.hpp>
#include <tbb_arenas.hpp>

#include <oneapi/tbb/task_group.h>

#include <benchmark/benchmark.h>

#include <cstdint>

namespace {

void idle_cpu_on_tbb(benchmark::State& state) {
  const std::size_t threads = flowpool_bench::bench_threads();
  flowpool_bench::tbb_worker_arena tbb(threads);
  flowpool_bench::idle_cpu_benchmark(state, threads, [&tbb] {
    tbb::task_group group;
    for (std::uint64_t i = 0; i < flowpool_bench::k_idle_burst_tasks; ++i) {
      tbb.arena.enqueue(group.defer([] { flowpool_bench::tally_add(); }));
    }
    group.wait();
  });
}

}  // namespace

BENCHMARK(idle_cpu_on_tbb)->Name("idle_cpu/tbb")->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);
