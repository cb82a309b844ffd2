/// @file
/// @brief operator new calls per small task on flowpool, for its three ways to start a task.
///
/// - `alloc/flowpool_post`: `post` from the outside benchmark thread, then `wait_idle()`.
/// - `alloc/flowpool_submit`: `submit` from outside, then `get()` on every future (the futures'
///   vector is reserved before the count starts). A `std::future` needs a shared state, so one
///   allocation per submit is the floor for this API.
/// - `alloc/flowpool_run`: `task_group::run` from a task running on a worker, charged from
///   inside that task (from the first run to the end of the group's wait).
/// Every task is small: a lambda capturing one pointer, well under the 48-byte inline buffer.
/// Threads: a `thread_pool` with N workers, the benchmark thread outside.
#include "alloc_workload.hpp"

#include <bench_threads.hpp>
#include <task_tally.hpp>

#include <flowpool/task_group.hpp>
#include <flowpool/thread_pool.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <future>
#include <vector>

namespace {

using flowpool_bench::k_alloc_tasks;
using flowpool_bench::tally_add;

constexpr std::uint64_t k_charge_all = ~std::uint64_t{0};

void alloc_on_flowpool_post(benchmark::State& state) {
  const std::size_t threads = flowpool_bench::bench_threads();
  flowpool::thread_pool pool(threads);
  int payload = 0;
  flowpool_bench::alloc_benchmark(state, threads, [&pool, &payload] {
    for (std::uint64_t i = 0; i < k_alloc_tasks; ++i) {
      pool.post([p = &payload] {
        benchmark::DoNotOptimize(p);
        tally_add();
      });
    }
    pool.wait_idle();
    return k_charge_all;
  });
}

void alloc_on_flowpool_submit(benchmark::State& state) {
  const std::size_t threads = flowpool_bench::bench_threads();
  flowpool::thread_pool pool(threads);
  int payload = 0;
  std::vector<std::future<void>> futures;
  futures.reserve(k_alloc_tasks);
  flowpool_bench::alloc_benchmark(state, threads, [&pool, &payload, &futures] {
    futures.clear();
    for (std::uint64_t i = 0; i < k_alloc_tasks; ++i) {
      futures.push_back(pool.submit([p = &payload] {
        benchmark::DoNotOptimize(p);
        tally_add();
      }));
    }
    for (std::future<void>& future : futures) {
      future.get();
    }
    return k_charge_all;
  });
}

void alloc_on_flowpool_run(benchmark::State& state) {
  const std::size_t threads = flowpool_bench::bench_threads();
  flowpool::thread_pool pool(threads);
  int payload = 0;
  flowpool_bench::alloc_benchmark(state, threads, [&pool, &payload] {
    std::uint64_t charged = 0;
    flowpool::task_group outer(pool);
    outer.run([&pool, &payload, &charged] {
      const std::uint64_t before = flowpool_bench::operator_new_calls();
      flowpool::task_group group(pool);
      for (std::uint64_t i = 0; i < k_alloc_tasks; ++i) {
        group.run([p = &payload] {
          benchmark::DoNotOptimize(p);
          tally_add();
        });
      }
      group.wait();
      charged = flowpool_bench::operator_new_calls() - before;
    });
    outer.wait();
    return charged;
  });
}

}  // namespace

BENCHMARK(alloc_on_flowpool_post)->Name("alloc/flowpool_post")->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(alloc_on_flowpool_submit)->Name("alloc/flowpool_submit")->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(alloc_on_flowpool_run)->Name("alloc/flowpool_run")->UseRealTime()->Unit(benchmark::kMicrosecond);
