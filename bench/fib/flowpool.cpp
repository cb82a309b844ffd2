/// @file
/// @brief fib(n) on flowpool: a `flowpool::task_group` at every call.
///
/// Threads: a `thread_pool` with N workers. The benchmark thread hands the root to the pool
/// through a task_group and blocks in `wait()` (an outside thread does not run tasks), so N
/// threads run tasks, the same N as oneTBB's benchmark thread + N - 1 workers (tbb.cpp).
#include "fib_workload.hpp"

#include <bench_threads.hpp>

#include <flowpool/task_group.hpp>
#include <flowpool/thread_pool.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>

namespace {

std::uint64_t fib_flowpool(flowpool::thread_pool& pool, int n) {
  if (n < 2) {
    return static_cast<std::uint64_t>(n);
  }
  std::uint64_t first = 0;
  flowpool::task_group group(pool);
  group.run([&pool, &first, n] { first = fib_flowpool(pool, n - 1); });
  const std::uint64_t second = fib_flowpool(pool, n - 2);
  group.wait();
  return first + second;
}

void fib_on_flowpool(benchmark::State& state) {
  const std::size_t threads = flowpool_bench::bench_threads();
  flowpool::thread_pool pool(threads);
  flowpool_bench::fib_benchmark(state, threads, [&pool](int n) {
    std::uint64_t result = 0;
    flowpool::task_group root(pool);
    root.run([&pool, &result, n] { result = fib_flowpool(pool, n); });
    root.wait();
    return result;
  });
}

}  // namespace

BENCHMARK(fib_on_flowpool)
    ->Name("fib/flowpool")
    ->Arg(flowpool_bench::k_fib_n)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
