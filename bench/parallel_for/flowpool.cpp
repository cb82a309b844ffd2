/// @file
/// @brief The 16M-double sum on flowpool, two ways.
///
/// - `parallel_for/flowpool`: `flowpool::parallel_for` over the indices, each body adding
///   element i to the calling thread's partial sum (the registry in parallel_for_workload.hpp),
///   the very body oneTBB's `parallel_for/tbb_for` runs.
/// - `parallel_for/flowpool_reduce`: `flowpool::parallel_reduce` (map i to element i, reduce with
///   +), no registry; each piece's sum stays in a register. Compared with `tbb::parallel_reduce`
///   (`parallel_for/tbb_reduce`).
///
/// Threads: a `thread_pool` with N workers run the bodies; the benchmark thread calls
/// parallel_for from outside and blocks until it returns. oneTBB's side (tbb.cpp) also has N
/// body-running threads, one of which is its benchmark thread.
#include "parallel_for_workload.hpp"

#include <bench_threads.hpp>

#include <flowpool/parallel_for.hpp>
#include <flowpool/parallel_reduce.hpp>
#include <flowpool/thread_pool.hpp>

#include <benchmark/benchmark.h>

#include <cstddef>

namespace {

using flowpool_bench::k_sum_elements;
using flowpool_bench::thread_partials;

void parallel_for_on_flowpool(benchmark::State& state) {
  const std::size_t threads = flowpool_bench::bench_threads();
  flowpool::thread_pool pool(threads);
  const double* data = flowpool_bench::sum_input().data();
  flowpool_bench::parallel_sum_benchmark(state, threads, [&pool, data] {
    thread_partials::reset();
    flowpool::parallel_for(pool, std::size_t{0}, k_sum_elements,
                           [data](std::size_t i) { thread_partials::local() += data[i]; });
    return thread_partials::total();
  });
}

void parallel_reduce_on_flowpool(benchmark::State& state) {
  const std::size_t threads = flowpool_bench::bench_threads();
  flowpool::thread_pool pool(threads);
  const double* data = flowpool_bench::sum_input().data();
  flowpool_bench::parallel_sum_benchmark(state, threads, [&pool, data] {
    return flowpool::parallel_reduce(
        pool, std::size_t{0}, k_sum_elements, 0.0, [data](std::size_t i) { return data[i]; },
        [](double a, double b) { return a + b; });
  });
}

}  // namespace

BENCHMARK(parallel_for_on_flowpool)->Name("parallel_for/flowpool")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(parallel_reduce_on_flowpool)
    ->Name("parallel_for/flowpool_reduce")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
