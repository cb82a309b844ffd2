/// @file
/// @brief 1M (almost) empty tasks handed to the pool by one outside thread, then a wait for all
/// of them: the serial reference answer (every task ran once) and the harness shared by
/// bench/external_post/.
///
/// Measures the injection path: an outside producer, a bounded hand-off, the consumers' pop and
/// the completion tracking a final wait needs. Each task only bumps its thread's own counter
/// (task_tally.hpp) so the harness can check that exactly `k_external_posts` tasks ran.
#pragma once

#include <bench_threads.hpp>
#include <task_tally.hpp>

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace flowpool_bench {

/// Tasks posted per iteration.
inline constexpr std::uint64_t k_external_posts = 1'000'000;

/// @brief The task every implementation posts: counts itself and does nothing else.
/// Any thread; never blocks after its thread's first call.
inline void counted_empty_task() {
  tally_add();
}

/// @brief Google Benchmark body: times `run()`, which must post `k_external_posts` tasks that call
/// `counted_empty_task()` and return once all of them finished.
///
/// One untimed warm-up run first. The tally is read after the loop and must have grown by
/// exactly k_external_posts x (iterations + 1) (SkipWithError otherwise). Reports `tasks/s` and
/// `utilisation`.
/// @param state the benchmark state.
/// @param threads N, the task-running threads the implementation was given.
/// @param run posts and waits with the implementation under test.
template <class Run>
void external_post_benchmark(benchmark::State& state, std::size_t threads, Run&& run) {
  const std::uint64_t before = tally_total();
  run();
  std::uint64_t after_warm_up = tally_total();
  if (after_warm_up - before != k_external_posts) {
    state.SkipWithError(("warm-up ran " + std::to_string(after_warm_up - before) + " tasks, expected " +
                         std::to_string(k_external_posts))
                            .c_str());
    return;
  }
  const utilisation_meter meter;
  for (auto _ : state) {
    run();
  }
  meter.report(state, threads);
  const std::uint64_t ran = tally_total() - after_warm_up;
  const auto iterations = static_cast<std::uint64_t>(state.iterations());
  if (ran != k_external_posts * iterations) {
    state.SkipWithError(
        ("timed runs ran " + std::to_string(ran) + " tasks, expected " + std::to_string(k_external_posts * iterations))
            .c_str());
    return;
  }
  const double tasks = static_cast<double>(k_external_posts) * static_cast<double>(iterations);
  state.counters["tasks/s"] = benchmark::Counter(tasks, benchmark::Counter::kIsRate);
  state.counters["pool_threads"] = static_cast<double>(threads);
}

}  // namespace flowpool_bench
