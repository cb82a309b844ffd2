/// @file
/// @brief Wake-up latency of an idle pool: the time from "the outside thread starts handing a task
/// over" to "the task starts running", sampled many times with the pool idle before each sample;
/// the harness and the statistics shared by bench/wakeup/.
///
/// Before every sample the benchmark thread sleeps `wakeup_gap()` (outside the measured
/// interval), long enough for the workers to finish spinning and park; so each sample measures
/// the full "wake a parked worker" path (the library's notify, the kernel's futex wake-up, the
/// scheduler putting the worker on a core) plus the hand-off itself. The answer checked is that
/// every task ran and stamped a start time not before its submission.
#pragma once

#include <bench_threads.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace flowpool_bench {

/// Samples per benchmark iteration (one iteration is one full sampling run).
inline constexpr std::size_t k_wakeup_samples = 250;
/// Default idle time before each sample, so the pool's workers are parked when the task arrives.
/// Both libraries spin well under 1 ms before parking (their CPU per sample shows it). Measured
/// latencies still grow with the gap up to tens of ms (4 ms: ~5 us, 50 ms: ~20-30 us, both
/// libraries, on this 2-vCPU VM): an idle *machine* wakes slower (idle vCPUs, C-states), which
/// is part of what an idle pool's first task pays.
inline constexpr std::chrono::milliseconds k_wakeup_gap{10};

/// @brief The idle time before each sample: `FLOWPOOL_BENCH_WAKEUP_GAP_MS` if set (a positive
/// integer), else `k_wakeup_gap`. Lengthen it to check that a library's workers really are
/// parked (its median latency must not change).
/// @return the gap.
/// @throws std::invalid_argument if the variable is set but not a positive integer.
[[nodiscard]] inline std::chrono::milliseconds wakeup_gap() {
  if (const char* text = std::getenv("FLOWPOOL_BENCH_WAKEUP_GAP_MS"); text != nullptr && *text != '\0') {
    char* end = nullptr;
    const long long value = std::strtoll(text, &end, 10);
    if (*end != '\0' || value <= 0 || value > 10'000) {
      throw std::invalid_argument(std::string("FLOWPOOL_BENCH_WAKEUP_GAP_MS must be 1..10000, got '") + text + "'");
    }
    return std::chrono::milliseconds(value);
  }
  return k_wakeup_gap;
}

/// The clock both sides stamp with.
using wakeup_clock = std::chrono::steady_clock;

/// @brief Google Benchmark body: `k_wakeup_samples` samples per iteration, each after an idle gap.
///
/// `sample(submitted)` must record `submitted = now()` immediately before handing one task to the
/// pool, wait until that task ran, and return the `now()` the task recorded as its first action.
/// Reports `median_us`, `p99_us` and `max_us` of (start - submitted) over all samples of all
/// iterations, and `utilisation` (mostly idle time, so it shows whether the pool spins while idle).
/// A sample whose start precedes its submission fails the benchmark (SkipWithError).
/// Run it with `->Iterations(1)`; its real time is the sampling run's length, not a latency.
/// @param state the benchmark state.
/// @param threads N, the worker threads the implementation was given.
/// @param sample takes one sample as described.
template <class Sample>
void wakeup_benchmark(benchmark::State& state, std::size_t threads, Sample&& sample) {
  std::vector<double> latencies_us;
  latencies_us.reserve(k_wakeup_samples * static_cast<std::size_t>(state.max_iterations));
  bool ordered = true;
  const std::chrono::milliseconds gap = wakeup_gap();
  {
    // One untimed sample so threads exist and are parked before the first measured one.
    wakeup_clock::time_point submitted;
    (void)sample(submitted);
  }
  const utilisation_meter meter;
  for (auto _ : state) {
    for (std::size_t i = 0; i < k_wakeup_samples; ++i) {
      std::this_thread::sleep_for(gap);
      wakeup_clock::time_point submitted;
      const wakeup_clock::time_point started = sample(submitted);
      ordered = ordered && started >= submitted;
      latencies_us.push_back(std::chrono::duration<double, std::micro>(started - submitted).count());
    }
  }
  meter.report(state, threads);
  if (!ordered) {
    state.SkipWithError("a task's start stamp preceded its submission");
    return;
  }
  std::sort(latencies_us.begin(), latencies_us.end());
  const auto at = [&latencies_us](double quantile) {
    const auto index = static_cast<std::size_t>(quantile * static_cast<double>(latencies_us.size() - 1) + 0.5);
    return latencies_us[index];
  };
  state.counters["median_us"] = at(0.5);
  state.counters["p99_us"] = at(0.99);
  state.counters["max_us"] = latencies_us.back();
  state.counters["samples"] = static_cast<double>(latencies_us.size());
  state.counters["gap_ms"] = static_cast<double>(gap.count());
  state.counters["pool_threads"] = static_cast<double>(threads);
}

}  // namespace flowpool_bench
