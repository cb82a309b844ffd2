/// @file
/// @brief Shared by the thread_pool benchmark families (fib, skynet, external_post, parallel_for,
/// wakeup, idle_cpu, alloc): how many threads both libraries get, and the process CPU clock
/// used for the utilisation counters.
///
/// **Thread-count fairness.** Every family gives flowpool and oneTBB the same number N of
/// threads that can run tasks: N = `FLOWPOOL_BENCH_THREADS` if set, else
/// `flowpool::thread_pool::default_thread_count()` (the CPUs this process may use: its affinity
/// mask and cgroup CPU quota, which `std::thread::hardware_concurrency()` ignores, so under
/// `taskset` or a container limit both libraries get the CPUs they can actually run on, and a
/// `thread_pool{{.threads = 0}}` gets the same N). flowpool gets a `thread_pool` with N workers; the
/// benchmark thread stays outside it (it submits and then blocks, it never runs tasks).
/// oneTBB is limited with a `tbb::global_control(max_allowed_parallelism, ...)` plus a
/// `tbb::task_arena`; the two arena shapes and what they mean are in tbb_arenas.hpp, and each
/// benchmark file says which one it uses and why.
#pragma once

#include <benchmark/benchmark.h>

#include <flowpool/thread_pool.hpp>

#include <sys/resource.h>

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace flowpool_bench {

/// @brief The number of task-running threads each library gets in these benchmarks.
///
/// `FLOWPOOL_BENCH_THREADS` (a positive integer) if set, else
/// `flowpool::thread_pool::default_thread_count()` (at least 1).
/// Any thread; reads the environment on every call.
/// @return N >= 1.
/// @throws std::invalid_argument if `FLOWPOOL_BENCH_THREADS` is set but not a positive integer.
[[nodiscard]] inline std::size_t bench_threads() {
  if (const char* text = std::getenv("FLOWPOOL_BENCH_THREADS"); text != nullptr && *text != '\0') {
    char* end = nullptr;
    const unsigned long long value = std::strtoull(text, &end, 10);
    if (*end != '\0' || value == 0 || value > 1024) {
      throw std::invalid_argument(std::string("FLOWPOOL_BENCH_THREADS must be 1..1024, got '") + text + "'");
    }
    return static_cast<std::size_t>(value);
  }
  return flowpool::thread_pool::default_thread_count();
}

/// @brief User plus system CPU time consumed so far by every thread of this process, in seconds.
/// Any thread; never blocks.
/// @return the CPU seconds from `getrusage(RUSAGE_SELF)`.
[[nodiscard]] inline double process_cpu_seconds() noexcept {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const auto seconds = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) * 1e-6;
  };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

/// @brief Measures the process CPU time and the wall time of a benchmark's timed loop, to report
/// `utilisation`: the CPU the whole process burnt divided by (wall time x N threads).
///
/// 1.0 means all N task threads were busy (working or spinning) the whole time; the benchmark
/// thread's own CPU is included, so a library that spins its caller can exceed 1.0 slightly.
/// Also reports `cpu_ms`, the process CPU time per iteration.
/// Construct right before the `for (auto _ : state)` loop, call `report` right after it.
class utilisation_meter {
 public:
  /// @brief Starts both clocks.
  utilisation_meter() noexcept : m_cpu_start(process_cpu_seconds()), m_wall_start(std::chrono::steady_clock::now()) {}

  /// @brief Sets `state.counters["utilisation"]` and `state.counters["cpu_ms"]` (process CPU
  /// milliseconds per iteration) for the time since construction.
  ///
  /// On a machine shared with other jobs, `cpu_ms` is the steadier figure: wall time also
  /// counts the time the task threads waited for a core, CPU time does not (but it does count
  /// a library's spinning).
  /// @param state the benchmark state.
  /// @param threads N, the task-running threads the library was given.
  void report(benchmark::State& state, std::size_t threads) const {
    const double cpu = process_cpu_seconds() - m_cpu_start;
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - m_wall_start).count();
    if (wall > 0.0) {
      state.counters["utilisation"] = cpu / (wall * static_cast<double>(threads));
    }
    state.counters["cpu_ms"] = benchmark::Counter(cpu * 1e3, benchmark::Counter::kAvgIterations);
  }

 private:
  double m_cpu_start;
  std::chrono::steady_clock::time_point m_wall_start;
};

/// @brief Records N in the benchmark context (shown in the header and in the JSON `context`).
/// Call once from main after `benchmark::Initialize`.
inline void add_thread_context() {
  benchmark::AddCustomContext("flowpool_bench_threads", std::to_string(bench_threads()));
}

/// @brief The `main` of every thread_pool benchmark binary: initialises Google Benchmark, records N
/// in the context and runs the benchmarks selected on the command line.
/// @param argc as given to main.
/// @param argv as given to main.
/// @return the process exit code (2 if `FLOWPOOL_BENCH_THREADS` is invalid).
inline int run_benchmarks(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
    return 1;
  }
  try {
    add_thread_context();  // validates FLOWPOOL_BENCH_THREADS once, before any benchmark runs
  } catch (const std::invalid_argument& error) {
    std::fprintf(stderr, "%s\n", error.what());
    return 2;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace flowpool_bench
