/// @file
/// @brief parallel_for sum over 16M doubles: the data, the serial reference answer, the
/// per-thread partial sums the per-index bodies (flowpool::parallel_for, tbb::parallel_for) add
/// into, and the shared harness. The reduce rows (flowpool::parallel_reduce,
/// tbb::parallel_reduce) need no registry.
///
/// The values are small integers (i mod 1024), so every partial sum and the total are exact in
/// a double whatever the split and the order: the check is an equality, not a tolerance.
/// The array is 128 MB, far beyond the caches, so the loop is bound by memory bandwidth; what
/// the scheduler adds on top is its splitting, stealing and load balance.
#pragma once

#include <bench_threads.hpp>

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

namespace flowpool_bench {

/// Elements summed per iteration (2^24).
inline constexpr std::size_t k_sum_elements = std::size_t{1} << 24;

/// @brief The input, built once per process: element i is (i mod 1024) as a double.
/// @return a reference to the shared, immutable array of k_sum_elements values.
[[nodiscard]] inline const std::vector<double>& sum_input() {
  static const std::vector<double> data = [] {
    std::vector<double> values(k_sum_elements);
    for (std::size_t i = 0; i < values.size(); ++i) {
      values[i] = static_cast<double>(i & 1023U);
    }
    return values;
  }();
  return data;
}

/// @brief The serial reference answer: the exact sum of `sum_input()`, computed in integers.
/// @return (k_sum_elements / 1024) x (0 + 1 + ... + 1023).
[[nodiscard]] constexpr double sum_serial() noexcept {
  return static_cast<double>((k_sum_elements / 1024) * (1023U * 1024U / 2));
}

/// @brief One partial sum per thread that ever ran a body ("per-worker partial sums" that need no
/// worker index, so every library runs the very same body).
///
/// A body adds into `local()`, the calling thread's own cache line. Between runs the harness
/// calls `reset()` and, after the parallel loop returned, `total()`; both rely on the library's
/// happens-before guarantees (submission before the body, body before the loop's return).
class thread_partials {
 public:
  /// @brief The calling thread's partial sum, created on its first call (takes a lock then).
  /// @return a reference only the calling thread writes.
  [[nodiscard]] static double& local() {
    thread_local slot* mine = nullptr;
    if (mine == nullptr) [[unlikely]] {
      const std::lock_guard guard(state().lock);
      mine = &state().slots.emplace_back();
    }
    return mine->value;
  }

  /// @brief Sets every thread's partial sum to 0. Only while no body runs.
  static void reset() {
    const std::lock_guard guard(state().lock);
    for (slot& s : state().slots) {
      s.value = 0.0;
    }
  }

  /// @brief The sum of all partial sums. Only after the parallel loop returned.
  /// @return the total.
  [[nodiscard]] static double total() {
    const std::lock_guard guard(state().lock);
    double sum = 0.0;
    for (const slot& s : state().slots) {
      sum += s.value;
    }
    return sum;
  }

 private:
  struct alignas(64) slot {
    double value = 0.0;
  };
  struct registry {
    std::mutex lock;
    std::deque<slot> slots;  // a deque never moves its elements
  };
  static registry& state() {
    static registry instance;
    return instance;
  }
};

/// @brief Google Benchmark body: times `run()`, which must sum `sum_input()` and return the sum.
///
/// One untimed warm-up run first (threads started, pages touched). Results are added inside
/// the loop and compared with `sum_serial() x iterations` after it (SkipWithError on mismatch).
/// Reports `items_per_second` (elements), `bytes_per_second` and `utilisation`.
/// @param state the benchmark state.
/// @param threads N, the task-running threads the implementation was given.
/// @param run the parallel sum with the implementation under test.
template <class Run>
void parallel_sum_benchmark(benchmark::State& state, std::size_t threads, Run&& run) {
  (void)sum_input();
  if (const double warm = run(); warm != sum_serial()) {
    state.SkipWithError(
        ("warm-up sum = " + std::to_string(warm) + ", expected " + std::to_string(sum_serial())).c_str());
    return;
  }
  double total = 0.0;
  const utilisation_meter meter;
  for (auto _ : state) {
    total += run();
  }
  meter.report(state, threads);
  if (total != sum_serial() * static_cast<double>(state.iterations())) {
    state.SkipWithError("a timed parallel sum returned a wrong result");
    return;
  }
  const auto elements = static_cast<std::int64_t>(k_sum_elements) * state.iterations();
  state.SetItemsProcessed(elements);
  state.SetBytesProcessed(elements * static_cast<std::int64_t>(sizeof(double)));
  state.counters["pool_threads"] = static_cast<double>(threads);
}

}  // namespace flowpool_bench
