/// @file
/// @brief 1M empty tasks from one outside thread on oneTBB, two ways.
///
/// - `external_post/tbb` (the reference for the target, "task_group::run from outside"):
///   `tbb_joined_arena(N)`; the benchmark thread enters the arena with `arena.execute`, calls
///   `task_group::run` 1M times, then `wait()`. Threads: N run tasks (benchmark thread + N - 1
///   workers), as on the flowpool side (N workers). Unlike flowpool's poster, oneTBB's
///   benchmark thread pushes into its *own* deque (no hand-off, no bound, no contention with
///   the consumers) and then helps run the tasks in `wait()`; that is how oneTBB works, so it is
///   the fairest way to express "post from outside" with its public API.
/// - `external_post/tbb_enqueue` (informational): `tbb_worker_arena(N)`; the benchmark thread
///   stays outside and hands each task over with `arena.enqueue(group.defer(...))`, then waits
///   with `group.wait()`; N oneTBB workers vs N flowpool workers, both fed from outside.
#include "external_post_workload.hpp"

#include <bench_threads.hpp>
#include <tbb_arenas.hpp>

#include <oneapi/tbb/task_group.h>

#include <benchmark/benchmark.h>

#include <cstdint>

namespace {

using flowpool_bench::counted_empty_task;
using flowpool_bench::k_external_posts;

void external_post_on_tbb(benchmark::State& state) {
  const std::size_t threads = flowpool_bench::bench_threads();
  flowpool_bench::tbb_joined_arena tbb(threads);
  flowpool_bench::external_post_benchmark(state, threads, [&tbb] {
    tbb.arena.execute([] {
      tbb::task_group group;
      for (std::uint64_t i = 0; i < k_external_posts; ++i) {
        group.run([] { counted_empty_task(); });
      }
      group.wait();
    });
  });
}

void external_post_on_tbb_enqueue(benchmark::State& state) {
  const std::size_t threads = flowpool_bench::bench_threads();
  flowpool_bench::tbb_worker_arena tbb(threads);
  flowpool_bench::external_post_benchmark(state, threads, [&tbb] {
    tbb::task_group group;
    for (std::uint64_t i = 0; i < k_external_posts; ++i) {
      tbb.arena.enqueue(group.defer([] { counted_empty_task(); }));
    }
    group.wait();
  });
}

}  // namespace

BENCHMARK(external_post_on_tbb)->Name("external_post/tbb")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(external_post_on_tbb_enqueue)
    ->Name("external_post/tbb_enqueue")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
