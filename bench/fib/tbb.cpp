/// @file
/// @brief fib(n) on oneTBB: a `tbb::task_group` at every call.
///
/// Threads: `tbb_joined_arena(N)`; the benchmark thread runs the root inside `arena.execute`,
/// so N threads run tasks (the benchmark thread + N - 1 oneTBB workers), the same N as the
/// flowpool side's N workers (whose benchmark thread only waits).
#include "fib_workload.hpp"

#include <bench_threads.hpp>
#include <tbb_arenas.hpp>

#include <oneapi/tbb/task_group.h>

#include <benchmark/benchmark.h>

#include <cstdint>

namespace {

std::uint64_t fib_tbb(int n) {
  if (n < 2) {
    return static_cast<std::uint64_t>(n);
  }
  std::uint64_t first = 0;
  tbb::task_group group;
  group.run([&first, n] { first = fib_tbb(n - 1); });
  const std::uint64_t second = fib_tbb(n - 2);
  group.wait();
  return first + second;
}

void fib_on_tbb(benchmark::State& state) {
  const std::size_t threads = flowpool_bench::bench_threads();
  flowpool_bench::tbb_joined_arena tbb(threads);
  flowpool_bench::fib_benchmark(state, threads,
                                [&tbb](int n) { return tbb.arena.execute([n] { return fib_tbb(n); }); });
}

}  // namespace

BENCHMARK(fib_on_tbb)->Name("fib/tbb")->Arg(flowpool_bench::k_fib_n)->UseRealTime()->Unit(benchmark::kMillisecond);
