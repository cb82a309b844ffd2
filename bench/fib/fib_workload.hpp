/// @file
/// @brief fib(n) with a fork-join spawn at every call: the serial reference answer and the timing
/// harness shared by every implementation in bench/fib/.
///
/// Each call with n >= 2 opens a task group, runs fib(n - 1) as a task, computes fib(n - 2)
/// itself, waits, and adds; so one iteration spawns `fib_spawns(n)` tasks of almost no work,
/// which measures the cost of spawn, steal and the helping wait of a fork-join scheduler.
#pragma once

#include <bench_threads.hpp>

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace flowpool_bench {

/// Default problem size: fib(30) spawns 1,346,268 tasks (about 0.1 s on 2 cores).
inline constexpr int k_fib_n = 30;

/// @brief The serial reference answer, computed iteratively. Never throws.
/// @param n the index, 0..93.
/// @return the n-th Fibonacci number (fib(0) = 0, fib(1) = 1).
[[nodiscard]] constexpr std::uint64_t fib_serial(int n) noexcept {
  std::uint64_t previous = 0;
  std::uint64_t current = 1;
  if (n == 0) {
    return 0;
  }
  for (int i = 1; i < n; ++i) {
    const std::uint64_t next = previous + current;
    previous = current;
    current = next;
  }
  return current;
}

/// @brief Tasks one fib(n) run spawns: one per call with n >= 2, that is fib(n + 1) - 1.
/// @param n the index.
/// @return the number of task-group runs.
[[nodiscard]] constexpr std::uint64_t fib_spawns(int n) noexcept {
  return fib_serial(n + 1) - 1;
}

static_assert(fib_serial(30) == 832'040 && fib_spawns(30) == 1'346'268);

/// @brief Google Benchmark body: times `run(n)` for n = `state.range(0)`.
///
/// One untimed warm-up run first (threads started, deques grown); each timed iteration is one
/// complete fib(n). Results are summed inside the loop (one add) and compared with
/// `fib_serial(n) x iterations` after it; a mismatch fails the benchmark with SkipWithError.
/// Reports `tasks/s` (spawns per second), `core_ns/task` (wall time x N / spawns) and
/// `utilisation` (see utilisation_meter).
/// @param state the benchmark state; range(0) = n.
/// @param threads N, the task-running threads the implementation was given.
/// @param run computes fib(n) with the implementation under test and returns it.
template <class Run>
void fib_benchmark(benchmark::State& state, std::size_t threads, Run&& run) {
  const int n = static_cast<int>(state.range(0));
  const std::uint64_t expected = fib_serial(n);
  if (const std::uint64_t warm = run(n); warm != expected) {
    state.SkipWithError(
        ("warm-up fib(" + std::to_string(n) + ") = " + std::to_string(warm) + ", expected " + std::to_string(expected))
            .c_str());
    return;
  }
  std::uint64_t total = 0;
  const utilisation_meter meter;
  for (auto _ : state) {
    total += run(n);
  }
  meter.report(state, threads);
  if (total != expected * static_cast<std::uint64_t>(state.iterations())) {
    state.SkipWithError("a timed fib run returned a wrong result");
    return;
  }
  state.counters["tasks/s"] = benchmark::Counter(
      static_cast<double>(fib_spawns(n)) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  // Core-ns per spawned task: (wall time x N) / spawns, the fork-join cost target of issue 13.
  // As a rate counter, inverted: Google Benchmark divides the value by the (real) time, and
  // kInvert turns that into time / value.
  state.counters["core_ns/task"] =
      benchmark::Counter(static_cast<double>(fib_spawns(n)) * static_cast<double>(state.iterations()) /
                             static_cast<double>(threads) * 1e-9,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["pool_threads"] = static_cast<double>(threads);
}

}  // namespace flowpool_bench
