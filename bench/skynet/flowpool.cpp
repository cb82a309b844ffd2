/// @file
/// @brief skynet on flowpool: a `flowpool::task_group` per inner node, its 10 children run as tasks.
///
/// Threads: a `thread_pool` with N workers. The benchmark thread hands the root to the pool
/// through a task_group and blocks in `wait()` (an outside thread does not run tasks), so N
/// threads run tasks, the same N as oneTBB's benchmark thread + N - 1 workers (tbb.cpp).
#include "skynet_workload.hpp"

#include <bench_threads.hpp>

#include <flowpool/task_group.hpp>
#include <flowpool/thread_pool.hpp>

#include <benchmark/benchmark.h>

#include <array>
#include <cstdint>

namespace {

using flowpool_bench::k_skynet_fanout;

std::uint64_t skynet_flowpool(flowpool::thread_pool& pool, std::uint64_t id, std::uint64_t size) {
  if (size == 1) {
    return id;
  }
  const std::uint64_t child_size = size / k_skynet_fanout;
  std::array<std::uint64_t, k_skynet_fanout> results{};
  flowpool::task_group group(pool);
  for (std::uint64_t i = 0; i < k_skynet_fanout; ++i) {
    group.run([&pool, slot = &results[i], child = id + i * child_size, child_size] {
      *slot = skynet_flowpool(pool, child, child_size);
    });
  }
  group.wait();
  std::uint64_t sum = 0;
  for (const std::uint64_t value : results) {
    sum += value;
  }
  return sum;
}

void skynet_on_flowpool(benchmark::State& state) {
  const std::size_t threads = flowpool_bench::bench_threads();
  flowpool::thread_pool pool(threads);
  flowpool_bench::skynet_benchmark(state, threads, [&pool] {
    std::uint64_t result = 0;
    flowpool::task_group root(pool);
    root.run([&pool, &result] { result = skynet_flowpool(pool, 0, flowpool_bench::k_skynet_leaves); });
    root.wait();
    return result;
  });
}

}  // namespace

BENCHMARK(skynet_on_flowpool)->Name("skynet/flowpool")->UseRealTime()->Unit(benchmark::kMillisecond);
