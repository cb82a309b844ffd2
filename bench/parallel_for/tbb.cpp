/// @file
/// @brief The 16M-double sum on oneTBB, two ways.
///
/// - `parallel_for/tbb_for` (the reference for the target): `tbb::parallel_for(first,
///   last, body)`, the index form, with *the same body* as flowpool (add element i to the
///   calling thread's partial sum), so only the schedulers differ.
/// - `parallel_for/tbb_reduce`: the idiomatic `tbb::parallel_reduce` over a `blocked_range`,
///   which keeps each chunk's sum in a register: the reference for `flowpool::parallel_reduce`
///   (`parallel_for/flowpool_reduce`), and, against `parallel_for/flowpool`, what an interface
///   with chunked bodies gains over a per-index one.
///
/// Threads: `tbb_joined_arena(N)`; the benchmark thread calls the algorithm inside
/// `arena.execute`, so N threads run bodies (benchmark thread + N - 1 workers), the same N as
/// flowpool's N workers (whose benchmark thread only waits).
#include "parallel_for_workload.hpp"

#include <bench_threads.hpp>
#include <tbb_arenas.hpp>

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/parallel_reduce.h>

#include <benchmark/benchmark.h>

#include <cstddef>
#include <functional>
#include <vector>

namespace {

using flowpool_bench::k_sum_elements;
using flowpool_bench::thread_partials;

void parallel_for_on_tbb(benchmark::State& state) {
  const std::size_t threads = flowpool_bench::bench_threads();
  flowpool_bench::tbb_joined_arena tbb(threads);
  const double* data = flowpool_bench::sum_input().data();
  flowpool_bench::parallel_sum_benchmark(state, threads, [&tbb, data] {
    thread_partials::reset();
    tbb.arena.execute([data] {
      tbb::parallel_for(std::size_t{0}, k_sum_elements, [data](std::size_t i) { thread_partials::local() += data[i]; });
    });
    return thread_partials::total();
  });
}

void parallel_reduce_on_tbb(benchmark::State& state) {
  const std::size_t threads = flowpool_bench::bench_threads();
  flowpool_bench::tbb_joined_arena tbb(threads);
  const double* data = flowpool_bench::sum_input().data();
  flowpool_bench::parallel_sum_benchmark(state, threads, [&tbb, data] {
    return tbb.arena.execute([data] {
      return tbb::parallel_reduce(
          tbb::blocked_range<std::size_t>(0, k_sum_elements), 0.0,
          [data](const tbb::blocked_range<std::size_t>& range, double sum) {
            for (std::size_t i = range.begin(); i != range.end(); ++i) {
              sum += data[i];
            }
            return sum;
          },
          std::plus<>());
    });
  });
}

}  // namespace

BENCHMARK(parallel_for_on_tbb)->Name("parallel_for/tbb_for")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(parallel_reduce_on_tbb)->Name("parallel_for/tbb_reduce")->UseRealTime()->Unit(benchmark::kMillisecond);
