/// @file
/// @brief Wake-up latency of an idle pool: the time from "the outside thread starts handing a task
/// over" to "the task starts running", sampled many times with the pool idle before each sample;
/// the harness and the statistics shared by bench/wakeup/.
///
/// Before every sample the benchmark thread sleeps one idle gap (outside the measured
/// interval; 0.2, 2 and 10 ms by default). Once a gap is longer than a library's spin phase, its
/// workers are parked when the task arrives, and each sample measures the full "wake a parked
/// worker" path (the library's notify, the kernel's futex wake-up, the
/// scheduler putting the worker on a core) plus the hand-off itself. The answer checked is that
/// every task ran and stamped a start time not before its submission.
#pragma once

#include <bench_threads.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <iterator>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace flowpool_bench {

/// Samples per benchmark iteration (one iteration is one full sampling run).
inline constexpr std::size_t k_wakeup_samples = 250;
/// The default idle gaps before each sample, in microseconds: 0.2 ms (shorter than a pool's spin
/// phase, if it spins long), 2 ms and 10 ms (every library's workers are parked). Measured
/// latencies still grow with the gap up to tens of ms: an idle *machine* wakes slower (idle
/// vCPUs, C-states), which is part of what an idle pool's first task pays.
inline constexpr std::int64_t k_wakeup_gaps_us[] = {200, 2'000, 10'000};

/// @brief The idle gaps before each sample, in microseconds: `FLOWPOOL_BENCH_WAKEUP_GAPS_MS` if
/// set (a comma-separated list of positive decimal milliseconds, e.g. `0.2,2,10`), else
/// `FLOWPOOL_BENCH_WAKEUP_GAP_MS` if set (one positive integer, the older single-gap form), else
/// `k_wakeup_gaps_us`. Lengthen a gap to check that a library's workers really are parked (its
/// median latency must not change).
/// @return the gaps, each in [1 us, 10 s].
/// @throws std::invalid_argument if a variable is set but malformed.
[[nodiscard]] inline std::vector<std::int64_t> wakeup_gaps_us() {
  const auto parse_error = [](const char* name, const char* text) {
    return std::invalid_argument(std::string(name) + " must be a list of milliseconds in (0, 10000], got '" + text +
                                 "'");
  };
  std::vector<std::int64_t> gaps;
  if (const char* text = std::getenv("FLOWPOOL_BENCH_WAKEUP_GAPS_MS"); text != nullptr && *text != '\0') {
    const char* at = text;
    for (;;) {
      char* end = nullptr;
      const double ms = std::strtod(at, &end);
      if (end == at || !(ms > 0.0) || ms > 10'000.0 || (*end != ',' && *end != '\0')) {
        throw parse_error("FLOWPOOL_BENCH_WAKEUP_GAPS_MS", text);
      }
      gaps.push_back(std::max<std::int64_t>(1, static_cast<std::int64_t>(ms * 1000.0 + 0.5)));
      if (*end == '\0') {
        return gaps;
      }
      at = end + 1;
    }
  }
  if (const char* text = std::getenv("FLOWPOOL_BENCH_WAKEUP_GAP_MS"); text != nullptr && *text != '\0') {
    char* end = nullptr;
    const long long value = std::strtoll(text, &end, 10);
    if (*end != '\0' || value <= 0 || value > 10'000) {
      throw parse_error("FLOWPOOL_BENCH_WAKEUP_GAP_MS", text);
    }
    return {static_cast<std::int64_t>(value) * 1000};
  }
  return {std::begin(k_wakeup_gaps_us), std::end(k_wakeup_gaps_us)};
}

/// @brief Registers one run per gap of `wakeup_gaps_us()` (argument `gap_us`). Use as
/// `BENCHMARK(f)->Apply(flowpool_bench::wakeup_gap_args)`.
/// @param bench the benchmark being registered.
inline void wakeup_gap_args(benchmark::internal::Benchmark* bench) {
  bench->ArgName("gap_us");
  for (const std::int64_t gap : wakeup_gaps_us()) {
    bench->Arg(gap);
  }
}

/// The clock both sides stamp with.
using wakeup_clock = std::chrono::steady_clock;

/// @brief Google Benchmark body: `k_wakeup_samples` samples per iteration, each after an idle
/// gap of `state.range(0)` microseconds (see `wakeup_gap_args`).
///
/// `sample(submitted)` must record `submitted = now()` immediately before handing one task to the
/// pool, wait until that task ran, and return the `now()` the task recorded as its first action.
/// Reports `median_us`, `p99_us` and `max_us` of (start - submitted) over all samples of all
/// iterations; `cpu_us` (the process CPU time per sample: the pool's wake-up, spinning and parking
/// plus the sampler's own sleep and wait, which are the same for every library) and `cores` (that
/// CPU time over the wall time, gaps included: how many cores the pool keeps busy while it is
/// used this way); and `utilisation` (`cores` / N).
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
  const std::chrono::microseconds gap(state.range(0));
  {
    // One untimed sample so threads exist and are parked before the first measured one.
    wakeup_clock::time_point submitted;
    (void)sample(submitted);
  }
  const double cpu_start = process_cpu_seconds();
  const auto wall_start = std::chrono::steady_clock::now();
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
  const double cpu = process_cpu_seconds() - cpu_start;
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
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
  state.counters["cpu_us"] = cpu * 1e6 / static_cast<double>(latencies_us.size());
  if (wall > 0.0) {
    state.counters["cores"] = cpu / wall;
  }
  state.counters["gap_ms"] = static_cast<double>(gap.count()) / 1000.0;
  state.counters["pool_threads"] = static_cast<double>(threads);
}

}  // namespace flowpool_bench
