/// @file
/// @brief The queue-throughput workload shared by every implementation in bench/queue/: P
/// producers push 1M ints through a queue of capacity 1024 to C consumers.
#pragma once

#include <checksum.hpp>

#include <benchmark/benchmark.h>

#include <barrier>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace flowpool_bench {

/// Items pushed through the queue per benchmark iteration (all producers together).
inline constexpr std::size_t k_queue_items = 1'000'000;
/// Capacity of every queue under test.
inline constexpr std::size_t k_queue_capacity = 1024;
/// Cache-line size assumed for padding (x86-64 and most AArch64).
inline constexpr std::size_t k_cache_line = 64;

/// @brief What the harness needs from a queue under test: built from a capacity, a blocking
/// `push` and a blocking `pop`, each returning false only if the queue failed to do its job.
template <class Q>
concept benchmark_queue = std::constructible_from<Q, std::size_t> && requires(Q& queue, int item) {
  requires std::same_as<decltype(queue.push(item)), bool>;
  requires std::same_as<decltype(queue.pop(item)), bool>;
};

/// @brief Google Benchmark body: throughput of `Queue` with `state.range(0)` producers and
/// `state.range(1)` consumers.
///
/// The queue and the threads are created before the timed loop and reused by every iteration;
/// an iteration is: release all threads at a barrier, each producer pushes its share of
/// `k_queue_items` distinct values, each consumer pops exactly its share (so every consumer knows
/// when it is done without a sentinel), all threads meet at a second barrier. The timer is
/// paused while the received items are checked against `checksum::of_first` (count, sum and sum
/// of squares); a mismatch fails the benchmark with SkipWithError. Reports `items/s`.
/// @tparam Queue the adapter under test (see `benchmark_queue`).
/// @param state the benchmark state; range(0) = producers, range(1) = consumers (both >= 1).
template <benchmark_queue Queue>
void queue_throughput(benchmark::State& state) {
  const auto producers = static_cast<std::size_t>(state.range(0));
  const auto consumers = static_cast<std::size_t>(state.range(1));
  // Thread t of n handles the items [share_begin(t, n), share_begin(t + 1, n)).
  const auto share_begin = [](std::size_t t, std::size_t n) { return k_queue_items * t / n; };

  // One cache line per consumer so the consumers' bookkeeping does not false-share.
  struct alignas(k_cache_line) consumer_result {
    checksum received;
    bool failed = false;
  };
  std::vector<consumer_result> results(consumers);
  std::vector<char> producer_failed(producers, 0);  // written once per iteration, at the end

  Queue queue(k_queue_capacity);
  // The barriers' completion gives the happens-before edges: main's writes of `stop` and the
  // results' reset before `start`, the threads' writes of their results before `finish`.
  const auto parties = static_cast<std::ptrdiff_t>(producers + consumers + 1);
  std::barrier start(parties);
  std::barrier finish(parties);
  bool stop = false;

  std::vector<std::jthread> threads;
  threads.reserve(producers + consumers);
  for (std::size_t p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      for (;;) {
        start.arrive_and_wait();
        if (stop) {
          return;
        }
        bool failed = false;
        for (std::size_t value = share_begin(p, producers); value < share_begin(p + 1, producers); ++value) {
          failed |= !queue.push(static_cast<int>(value));
        }
        producer_failed[p] = failed ? 1 : 0;
        finish.arrive_and_wait();
      }
    });
  }
  for (std::size_t c = 0; c < consumers; ++c) {
    threads.emplace_back([&, c] {
      for (;;) {
        start.arrive_and_wait();
        if (stop) {
          return;
        }
        checksum received;
        bool failed = false;
        for (std::size_t n = share_begin(c + 1, consumers) - share_begin(c, consumers); n != 0; --n) {
          int value = -1;
          if (!queue.pop(value)) {
            failed = true;
            break;
          }
          received.add(static_cast<std::uint64_t>(value));
        }
        results[c].received = received;
        results[c].failed = failed;
        finish.arrive_and_wait();
      }
    });
  }

  const checksum expected = checksum::of_first(k_queue_items);
  for (auto _ : state) {
    start.arrive_and_wait();
    finish.arrive_and_wait();

    state.PauseTiming();
    checksum received;
    bool failed = false;
    for (const consumer_result& result : results) {
      received += result.received;
      failed |= result.failed;
    }
    for (const char f : producer_failed) {
      failed |= f != 0;
    }
    if (failed || received != expected) {
      const std::string message = (failed ? std::string("a push or pop failed; ") : std::string()) + "received " +
                                  std::to_string(received.count) + " items (sum " + std::to_string(received.sum) +
                                  "), expected " + std::to_string(expected.count) + " (sum " +
                                  std::to_string(expected.sum) + ")";
      state.SkipWithError(message.c_str());
      break;
    }
    state.ResumeTiming();
  }

  stop = true;
  start.arrive_and_wait();
  threads.clear();  // joins

  state.counters["items/s"] = benchmark::Counter(
      static_cast<double>(k_queue_items) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

/// @brief Registers `queue_throughput<Queue>` as
/// `<name>/producers:P/consumers:C/process_time/real_time` for 1 -> 1 and 2 -> 2. Time is wall
/// clock; the CPU column is the whole process's CPU time, so CPU / Time shows how many cores the
/// run kept busy (spinning shows up there, sleeping does not).
/// @param name the implementation's name in the benchmark output.
/// @return the registered benchmark, for further settings.
template <benchmark_queue Queue>
benchmark::internal::Benchmark* register_queue_throughput(const char* name) {
  return benchmark::RegisterBenchmark(name, queue_throughput<Queue>)
      ->ArgNames({"producers", "consumers"})
      ->Args({1, 1})
      ->Args({2, 2})
      ->UseRealTime()
      ->MeasureProcessCPUTime()  // the CPU column sums all threads: CPU / Time = cores kept busy
      ->Unit(benchmark::kMillisecond);
}

}  // namespace flowpool_bench
