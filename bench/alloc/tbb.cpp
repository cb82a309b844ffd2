/// @file
/// @brief operator new calls per small task on oneTBB, for its three ways to start a task.
///
/// - `alloc/tbb_enqueue`: `arena.enqueue(group.defer(f))` from an outside thread (the analogue of
///   flowpool's `post`); `tbb_worker_arena(N)`, N workers.
/// - `alloc/tbb_run_outside`: `task_group::run` from the benchmark thread inside
///   `arena.execute` (how external_post/tbb hands tasks over); `tbb_joined_arena(N)`.
/// - `alloc/tbb_run`: `task_group::run` from a task already running in the arena (the analogue
///   of flowpool's `task_group::run` on a worker), charged from inside that task;
///   `tbb_joined_arena(N)`.
/// oneTBB's task objects come from its small-object pool, not operator new (alloc_workload.hpp).
#include "alloc_workload.hpp"

#include <bench_threads.hpp>
#include <task_tally.hpp>
#include <tbb_arenas.hpp>

#include <oneapi/tbb/task_group.h>

#include <benchmark/benchmark.h>

#include <cstdint>

namespace {

using flowpool_bench::k_alloc_tasks;
using flowpool_bench::tally_add;

constexpr std::uint64_t k_charge_all = ~std::uint64_t{0};

void alloc_on_tbb_enqueue(benchmark::State& state) {
  const std::size_t threads = flowpool_bench::bench_threads();
  flowpool_bench::tbb_worker_arena tbb(threads);
  int payload = 0;
  flowpool_bench::alloc_benchmark(state, threads, [&tbb, &payload] {
    tbb::task_group group;
    for (std::uint64_t i = 0; i < k_alloc_tasks; ++i) {
      tbb.arena.enqueue(group.defer([p = &payload] {
        benchmark::DoNotOptimize(p);
        tally_add();
      }));
    }
    group.wait();
    return k_charge_all;
  });
}

void alloc_on_tbb_run_outside(benchmark::State& state) {
  const std::size_t threads = flowpool_bench::bench_threads();
  flowpool_bench::tbb_joined_arena tbb(threads);
  int payload = 0;
  flowpool_bench::alloc_benchmark(state, threads, [&tbb, &payload] {
    tbb.arena.execute([&payload] {
      tbb::task_group group;
      for (std::uint64_t i = 0; i < k_alloc_tasks; ++i) {
        group.run([p = &payload] {
          benchmark::DoNotOptimize(p);
          tally_add();
        });
      }
      group.wait();
    });
    return k_charge_all;
  });
}

void alloc_on_tbb_run(benchmark::State& state) {
  const std::size_t threads = flowpool_bench::bench_threads();
  flowpool_bench::tbb_joined_arena tbb(threads);
  int payload = 0;
  flowpool_bench::alloc_benchmark(state, threads, [&tbb, &payload] {
    std::uint64_t charged = 0;
    tbb.arena.execute([&payload, &charged] {
      tbb::task_group outer;
      outer.run([&payload, &charged] {
        const std::uint64_t before = flowpool_bench::operator_new_calls();
        tbb::task_group group;
        for (std::uint64_t i = 0; i < k_alloc_tasks; ++i) {
          group.run([p = &payload] {
            benchmark::DoNotOptimize(p);
            tally_add();
          });
        }
        group.wait();
        charged = flowpool_bench::operator_new_calls() - before;
      });
      outer.wait();
    });
    return charged;
  });
}

}  // namespace

BENCHMARK(alloc_on_tbb_enqueue)->Name("alloc/tbb_enqueue")->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(alloc_on_tbb_run_outside)->Name("alloc/tbb_run_outside")->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(alloc_on_tbb_run)->Name("alloc/tbb_run")->UseRealTime()->Unit(benchmark::kMicrosecond);
