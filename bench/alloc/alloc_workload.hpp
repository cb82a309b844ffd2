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

/// @brief Google Benchmark body: `run()` must execute `k_alloc_tasks` small tasks (each calling
/// `tally_add()`) and return the number of operator new calls it wants charged to them, or
/// `std::uint64_t(-1)` to charge every call made during the iteration (from any thread).
///
/// One untimed warm-up iteration first (queues and deques grown, thread-local state created).
/// Reports `allocs/task` (charged calls / tasks) and `tasks/s`; fails (SkipWithError) if a run
/// did not execute every task.
/// @param state the benchmark state.
/// @param threads N, the task-running threads the implementation was given.
/// @param run runs one batch with the implementation under test.
template <class Run>
void alloc_benchmark(benchmark::State& state, std::size_t threads, Run&& run) {
  constexpr std::uint64_t k_charge_all = ~std::uint64_t{0};
  const std::uint64_t tally_start = tally_total();
  (void)run();
  if (const std::uint64_t ran = tally_total() - tally_start; ran != k_alloc_tasks) {
    state.SkipWithError(("warm-up ran " + std::to_string(ran) + " tasks, expected " + std::to_string(k_alloc_tasks)).c_str());
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
    state.SkipWithError(("timed runs ran " + std::to_string(ran) + " tasks, expected " +
                         std::to_string(k_alloc_tasks * iterations)).c_str());
    return;
  }
  const double tasks = static_cast<double>(k_alloc_tasks) * static_cast<double>(iterations);
  state.counters["allocs/task"] = static_cast<double>(charged) / tasks;
  state.counters["tasks/s"] = benchmark::Counter(tasks, benchmark::Counter::kIsRate);
  state.counters["pool_threads"] = static_cast<double>(threads);
}

}  // namespace flowpool_bench
