/// @file
/// @brief CPU used by an idle flowpool pool of N workers over one second after a burst of work.
///
/// Threads: a `thread_pool` with N workers; the benchmark thread posts the burst from outside,
/// waits with `wait_idle()`, then sleeps through the measured second. oneTBB's side (tbb.cpp)
/// has N workers and an outside thread too.
#include "idle_cpu_workload.hpp"

#include <bench_threads.hpp>
#include <task_tally.hpp>

#include <flowpool/thread_pool.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>

namespace {

void idle_cpu_on_flowpool(benchmark::State& state) {
  const std::size_t threads = flowpool_bench::bench_threads();
  flowpool::thread_pool pool(threads);
  flowpool_bench::idle_cpu_benchmark(state, threads, [&pool] {
    for (std::uint64_t i = 0; i < flowpool_bench::k_idle_burst_tasks; ++i) {
      pool.post([] { flowpool_bench::tally_add(); });
    }
    pool.wait_idle();
  });
}

}  // namespace

BENCHMARK(idle_cpu_on_flowpool)->Name("idle_cpu/flowpool")->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);
