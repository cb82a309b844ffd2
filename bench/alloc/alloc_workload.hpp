/// @file
/// @brief Heap allocations per small task: the allocation counter (defined in main.cpp, which
/// replaces the global operator new/delete of the bench_alloc binary only), the expected answer
/// and the harness shared by bench/alloc/.
///
/// What is counted: every call of any replaceable global `operator new` (plain, array, aligned,
/// nothrow), from any thread, during the timed iterations. That is where a `std::function`, a
/// heap-allocated task node or a `std::future` shared state would come from. Allocators that
/// bypass operator new are not counted: oneTBB takes its task objects from its own per-thread
/// small-object pool (`r1::allocate`, backed by tbbmalloc or malloc), so its figures here are
/// "operator new calls", not "allocations of any kind".
#pragma once

#include <bench_threads.hpp>
#include <task_tally.hpp>

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace flowpool_bench {

/// @brief Calls of a global operator new so far in this process, from all threads.
/// Any thread; never blocks; relaxed (a statistic: the harness reads it after waits that order
/// the counted calls before the read).
/// @return the count.
[[nodiscard]] std::uint64_t operator_new_calls() noexcept;

/// Small tasks per timed iteration.
inline constexpr std::uint64_t k_alloc_tasks = 10'000;
/// Untimed, uncharged runs before the timed ones: pools, deques and free lists grow to their
/// steady-state size here (a batch may land on a different worker each time, so one run is not
/// enough), and `warm_up_allocs/task` reports what that cost.
inline constexpr std::uint64_t k_alloc_warm_up_runs = 20;

/// @brief Google Benchmark body: `run()` must execute `k_alloc_tasks` small tasks (each calling
/// `tally_add()`) and return the number of operator new calls it wants charged to them, or
/// `std::uint64_t(-1)` to charge every call made during the iteration (from any thread).
///
/// `k_alloc_warm_up_runs` untimed warm-up runs first (all their operator new calls, from any
/// thread, are reported as `warm_up_allocs/task`). Reports `allocs/task` (charged calls / tasks
/// over the timed runs: the steady state) and `tasks/s`; fails (SkipWithError) if a run did not
/// execute every task.
/// @param state the benchmark state.
/// @param threads N, the task-running threads the implementation was given.
/// @param run runs one batch with the implementation under test.
template <class Run>
void alloc_benchmark(benchmark::State& state, std::size_t threads, Run&& run) {
  constexpr std::uint64_t k_charge_all = ~std::uint64_t{0};
  const std::uint64_t tally_start = tally_total();
  const std::uint64_t warm_up_calls_before = operator_new_calls();
  for (std::uint64_t i = 0; i < k_alloc_warm_up_runs; ++i) {
    (void)run();
  }
  const std::uint64_t warm_up_calls = operator_new_calls() - warm_up_calls_before;
  if (const std::uint64_t ran = tally_total() - tally_start; ran != k_alloc_tasks * k_alloc_warm_up_runs) {
    state.SkipWithError(("warm-up ran " + std::to_string(ran) + " tasks, expected " +
                         std::to_string(k_alloc_tasks * k_alloc_warm_up_runs))
                            .c_str());
    return;
  }
  const std::uint64_t tally_timed = tally_total();
  std::uint64_t charged = 0;
  for (auto _ : state) {
    const std::uint64_t calls_before = operator_new_calls();
    const std::uint64_t own = run();
    charged += own == k_charge_all ? operator_new_calls() - calls_before : own;
  }
  const auto iterations = static_cast<std::uint64_t>(state.iterations());
  if (const std::uint64_t ran = tally_total() - tally_timed; ran != k_alloc_tasks * iterations) {
    state.SkipWithError(
        ("timed runs ran " + std::to_string(ran) + " tasks, expected " + std::to_string(k_alloc_tasks * iterations))
            .c_str());
    return;
  }
  const double tasks = static_cast<double>(k_alloc_tasks) * static_cast<double>(iterations);
  state.counters["allocs/task"] = static_cast<double>(charged) / tasks;
  state.counters["warm_up_allocs/task"] =
      static_cast<double>(warm_up_calls) / static_cast<double>(k_alloc_tasks * k_alloc_warm_up_runs);
  state.counters["tasks/s"] = benchmark::Counter(tasks, benchmark::Counter::kIsRate);
  state.counters["pool_threads"] = static_cast<double>(threads);
}

}  // namespace flowpool_bench
