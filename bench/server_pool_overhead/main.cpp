// bench_server_pool_overhead (issue 10): 1M empty requests, submitted by the benchmark thread,
// through
//   - flowpool::server_pool<std::uint64_t>: 5 servers x 2 slots, queue capacity 1024,
//     max_attempts = 3 and eject_after = 5 (enabled, never triggered: no handler throws); the
//     iteration ends when join() returns;
//   - 10 consumer threads on plain_queue (one mutex, a deque, two condition variables), capacity
//     1024; the producer then pushes one end marker per consumer, and the iteration ends when every
//     consumer has seen its marker.
// Each handler / consumer adds the value to its own checksum (one cache line each); the checksums
// are checked outside the timed region. Reports requests/s (items/s), then the ratio
// server_pool / plain_queue of the medians (or of the single runs) and PASS/FAIL against >= 0.9x.
#include <benchmark/benchmark.h>

#include <checksum.hpp>
#include <flowpool/server_pool.hpp>
#include <plain_queue.hpp>

#include <barrier>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace {

using flowpool_bench::checksum;

constexpr std::size_t k_requests = 1'000'000;
constexpr std::size_t k_servers = 5;
constexpr std::size_t k_slots_per_server = 2;
constexpr std::size_t k_threads = k_servers * k_slots_per_server;
constexpr std::size_t k_capacity = 1024;
constexpr std::uint64_t k_end_marker = std::numeric_limits<std::uint64_t>::max();

struct alignas(128) slot_sum {
  checksum sum;
};

bool check(benchmark::State& state, const std::vector<slot_sum>& sums) {
  checksum received;
  for (const slot_sum& s : sums) {
    received += s.sum;
  }
  if (received != checksum::of_first(k_requests)) {
    const std::string message =
        "received " + std::to_string(received.count) + " requests, expected " + std::to_string(k_requests);
    state.SkipWithError(message.c_str());
    return false;
  }
  return true;
}

void server_pool_empty(benchmark::State& state) {
  std::vector<slot_sum> sums(k_threads);
  flowpool::server_pool<std::uint64_t> pool{flowpool::server_pool_options{.servers = k_servers,
                                                                          .slots_per_server = k_slots_per_server,
                                                                          .queue_capacity = k_capacity,
                                                                          .name = "overhead",
                                                                          .max_attempts = 3,
                                                                          .eject_after = 5},
                                            [&](flowpool::slot_id id, std::uint64_t& value) {
                                              sums[id.server * k_slots_per_server + id.slot].sum.add(value);
                                            }};
  for (auto _ : state) {
    for (std::uint64_t i = 0; i < k_requests; ++i) {
      (void)pool.submit(std::uint64_t{i});
    }
    pool.join();  // orders every handler call before the check below
    state.PauseTiming();
    const bool ok = check(state, sums);
    sums.assign(k_threads, slot_sum{});
    state.ResumeTiming();
    if (!ok) {
      break;
    }
  }
  const flowpool::server_pool_stats stats = pool.stats();
  if (stats.total_failed() != 0 || stats.total_retried() != 0) {
    state.SkipWithError("a retry or failure happened in the overhead benchmark");
  }
  state.counters["items/s"] = benchmark::Counter(
      static_cast<double>(k_requests) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void plain_queue_empty(benchmark::State& state) {
  std::vector<slot_sum> sums(k_threads);
  flowpool_bench::plain_queue<std::uint64_t> queue(k_capacity);
  // The barriers order main's reset of the sums before `start` and the consumers' sums before `finish`.
  std::barrier start(static_cast<std::ptrdiff_t>(k_threads + 1));
  std::barrier finish(static_cast<std::ptrdiff_t>(k_threads + 1));
  bool stop = false;
  std::vector<std::jthread> consumers;
  consumers.reserve(k_threads);
  for (std::size_t c = 0; c < k_threads; ++c) {
    consumers.emplace_back([&, c] {
      for (;;) {
        start.arrive_and_wait();
        if (stop) {
          return;
        }
        for (;;) {
          const std::uint64_t value = queue.pop();
          if (value == k_end_marker) {
            break;
          }
          sums[c].sum.add(value);
        }
        finish.arrive_and_wait();
      }
    });
  }
  for (auto _ : state) {
    start.arrive_and_wait();
    for (std::uint64_t i = 0; i < k_requests; ++i) {
      queue.push(i);
    }
    for (std::size_t c = 0; c < k_threads; ++c) {
      queue.push(k_end_marker);
    }
    finish.arrive_and_wait();
    state.PauseTiming();
    const bool ok = check(state, sums);
    sums.assign(k_threads, slot_sum{});
    state.ResumeTiming();
    if (!ok) {
      break;
    }
  }
  stop = true;
  start.arrive_and_wait();
  consumers.clear();  // joins
  state.counters["items/s"] = benchmark::Counter(
      static_cast<double>(k_requests) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

// Prints as the console reporter does, and keeps each benchmark's items/s: the median aggregate
// if there are repetitions, else the run itself.
class ratio_reporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& reports) override {
    ConsoleReporter::ReportRuns(reports);
    for (const Run& run : reports) {
      const auto counter = run.counters.find("items/s");
      if (run.error_occurred || counter == run.counters.end()) {
        continue;
      }
      const std::string name = run.run_name.function_name;
      if (run.run_type == Run::RT_Aggregate) {
        if (run.aggregate_name == "median") {
          m_median[name] = counter->second.value;
        }
      } else {
        m_single[name] = counter->second.value;
      }
    }
  }

  [[nodiscard]] double items_per_second(const std::string& name) const {
    if (const auto it = m_median.find(name); it != m_median.end()) {
      return it->second;
    }
    const auto it = m_single.find(name);
    return it == m_single.end() ? 0.0 : it->second;
  }

 private:
  std::map<std::string, double> m_median;
  std::map<std::string, double> m_single;
};

}  // namespace

int main(int argc, char** argv) {
  benchmark::RegisterBenchmark("server_pool/5x2/retries_and_ejection_on/1M_empty", server_pool_empty)
      ->UseRealTime()
      ->MeasureProcessCPUTime()
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("plain_queue/10_threads/1M_empty", plain_queue_empty)
      ->UseRealTime()
      ->MeasureProcessCPUTime()
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
    return 1;
  }
  ratio_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  const double pool = reporter.items_per_second("server_pool/5x2/retries_and_ejection_on/1M_empty");
  const double plain = reporter.items_per_second("plain_queue/10_threads/1M_empty");
  if (pool <= 0 || plain <= 0) {
    std::printf("server_pool overhead: a benchmark did not run or failed; no ratio\n");
    return 1;
  }
  const double ratio = pool / plain;
  std::printf("\nserver_pool %.0f requests/s, plain_queue (10 threads) %.0f requests/s: ratio %.3fx\n", pool, plain,
              ratio);
  std::printf("  %s  server_pool >= 0.9x plain mutex + 2 CV queue, 1M empty requests [overhead]: %.3fx\n",
              ratio >= 0.9 ? "PASS" : "FAIL", ratio);
  return 0;
}
