/// @file
/// @brief skynet on oneTBB: a `tbb::task_group` per inner node, its 10 children run as tasks.
///
/// Threads: `tbb_joined_arena(N)`; the benchmark thread runs the root inside `arena.execute`,
/// so N threads run tasks (the benchmark thread + N - 1 oneTBB workers), the same N as the
/// flowpool side's N workers (whose benchmark thread only waits).
#include "skynet_workload.hpp"

#include <bench_threads.hpp>
#include <tbb_arenas.hpp>

#include <oneapi/tbb/task_group.h>

#include <benchmark/benchmark.h>

#include <array>
#include <cstdint>

namespace {

using flowpool_bench::k_skynet_fanout;

std::uint64_t skynet_tbb(std::uint64_t id, std::uint64_t size) {
  if (size == 1) {
    return id;
  }
  const std::uint64_t child_size = size / k_skynet_fanout;
  std::array<std::uint64_t, k_skynet_fanout> results{};
  tbb::task_group group;
  for (std::uint64_t i = 0; i < k_skynet_fanout; ++i) {
    group.run([slot = &results[i], child = id + i * child_size, child_size] { *slot = skynet_tbb(child, child_size); });
  }
  group.wait();
  std::uint64_t sum = 0;
  for (const std::uint64_t value : results) {
    sum += value;
  }
  return sum;
}

void skynet_on_tbb(benchmark::State& state) {
  const std::size_t threads = flowpool_bench::bench_threads();
  flowpool_bench::tbb_joined_arena tbb(threads);
  flowpool_bench::skynet_benchmark(state, threads, [&tbb] {
    return tbb.arena.execute([] { return skynet_tbb(0, flowpool_bench::k_skynet_leaves); });
  });
}

}  // namespace

BENCHMARK(skynet_on_tbb)->Name("skynet/tbb")->UseRealTime()->Unit(benchmark::kMillisecond);
