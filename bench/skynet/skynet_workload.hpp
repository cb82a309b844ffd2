/// @file
/// @brief skynet: a 10-ary tree of tasks with 1M leaves, each returning its id, summed on the way
/// up; the serial reference answer and the timing harness shared by bench/skynet/.
///
/// Every inner node opens a task group, runs its 10 children as tasks, waits and adds their
/// results; one iteration spawns `k_skynet_spawns` tasks. Compared with fib the fan-out is wide
/// (10 pushes, then a wait that mostly finds its own children), so it stresses push/pop of the
/// owner's deque more than stealing.
#pragma once

#include <bench_threads.hpp>

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace flowpool_bench {

/// Leaves of the tree (10^6); leaf ids are 0 .. k_skynet_leaves - 1.
inline constexpr std::uint64_t k_skynet_leaves = 1'000'000;
/// Children per inner node.
inline constexpr std::uint64_t k_skynet_fanout = 10;
/// Tasks spawned per run: every node except the root (10 + 100 + ... + 10^6).
inline constexpr std::uint64_t k_skynet_spawns = 1'111'110;

/// @brief The serial reference answer: the sum of the leaf ids 0 .. leaves - 1.
/// @param leaves the number of leaves.
/// @return leaves x (leaves - 1) / 2.
[[nodiscard]] constexpr std::uint64_t skynet_serial(std::uint64_t leaves) noexcept {
  return leaves * (leaves - 1) / 2;
}

static_assert(skynet_serial(k_skynet_leaves) == 499'999'500'000);

/// @brief Google Benchmark body: times `run()`, one complete skynet of 1M leaves per iteration.
///
/// One untimed warm-up run first; results are summed inside the loop and compared with the
/// reference x iterations after it (SkipWithError on mismatch). Reports `tasks/s`,
/// `core_ns/task` (wall time x N / spawns) and `utilisation`.
/// @param state the benchmark state.
/// @param threads N, the task-running threads the implementation was given.
/// @param run computes the skynet sum with the implementation under test and returns it.
template <class Run>
void skynet_benchmark(benchmark::State& state, std::size_t threads, Run&& run) {
  constexpr std::uint64_t expected = skynet_serial(k_skynet_leaves);
  if (const std::uint64_t warm = run(); warm != expected) {
    state.SkipWithError(
        ("warm-up skynet = " + std::to_string(warm) + ", expected " + std::to_string(expected)).c_str());
    return;
  }
  std::uint64_t total = 0;
  const utilisation_meter meter;
  for (auto _ : state) {
    total += run();
  }
  meter.report(state, threads);
  if (total != expected * static_cast<std::uint64_t>(state.iterations())) {
    state.SkipWithError("a timed skynet run returned a wrong sum");
    return;
  }
  state.counters["tasks/s"] = benchmark::Counter(
      static_cast<double>(k_skynet_spawns) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  // Core-ns per spawned task: (wall time x N) / spawns, the fork-join cost target of issue 13.
  // As a rate counter, inverted: Google Benchmark divides the value by the (real) time, and
  // kInvert turns that into time / value.
  state.counters["core_ns/task"] =
      benchmark::Counter(static_cast<double>(k_skynet_spawns) * static_cast<double>(state.iterations()) /
                             static_cast<double>(threads) * 1e-9,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["pool_threads"] = static_cast<double>(threads);
}

}  // namespace flowpool_bench
