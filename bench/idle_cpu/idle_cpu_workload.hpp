/// @file
/// @brief CPU burnt by an idle pool: run a burst of work, then let the pool sit idle for one
/// second and measure the process's CPU time (user + sys, all threads) over that second; the
/// harness shared by bench/idle_cpu/.
///
/// The measured second starts right after the burst's wait returned, so it includes whatever
/// the workers spin before they park: that spinning is part of what an idle pool costs. The
/// benchmark thread sleeps during the second, so (other pools in the process being parked or
/// gone) the CPU time is the pool's. Reported as % of one core: 100 % = one core busy.
#pragma once

#include <bench_threads.hpp>
#include <task_tally.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <thread>

namespace flowpool_bench {

/// Tasks in the burst that precedes each idle second.
inline constexpr std::uint64_t k_idle_burst_tasks = 10'000;
/// The idle interval measured.
inline constexpr std::chrono::seconds k_idle_interval{1};

/// @brief Google Benchmark body: per iteration, `burst()` (untimed work that must run
/// `k_idle_burst_tasks` tasks calling `tally_add()` and return when they finished), then one idle
/// second whose process CPU time is recorded.
///
/// Reports `idle_cpu_pct` (CPU seconds / wall seconds x 100 over the idle intervals, i.e. % of one
/// core) and `burst_tasks_ok`. A burst that did not run every task fails the benchmark.
/// Run it with `->Iterations(1)`; its real time is about one second and means nothing.
/// @param state the benchmark state.
/// @param threads N, the worker threads the implementation was given.
/// @param burst runs the work burst with the implementation under test.
template <class Burst>
void idle_cpu_benchmark(benchmark::State& state, std::size_t threads, Burst&& burst) {
  double idle_cpu = 0.0;
  double idle_wall = 0.0;
  for (auto _ : state) {
    const std::uint64_t before = tally_total();
    burst();
    if (const std::uint64_t ran = tally_total() - before; ran != k_idle_burst_tasks) {
      state.SkipWithError(
          ("burst ran " + std::to_string(ran) + " tasks, expected " + std::to_string(k_idle_burst_tasks)).c_str());
      return;
    }
    const double cpu_start = process_cpu_seconds();
    const auto wall_start = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(k_idle_interval);
    idle_cpu += process_cpu_seconds() - cpu_start;
    idle_wall += std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  }
  state.counters["idle_cpu_pct"] = idle_wall > 0.0 ? 100.0 * idle_cpu / idle_wall : 0.0;
  state.counters["pool_threads"] = static_cast<double>(threads);
}

}  // namespace flowpool_bench
