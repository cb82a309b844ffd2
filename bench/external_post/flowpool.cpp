/// @file
/// @brief 1M empty tasks from one outside thread on flowpool: `post` each, then `wait_idle()`.
///
/// Threads: a `thread_pool` with N workers run the tasks; the benchmark thread is the outside
/// producer (it never runs tasks) and blocks in `post` whenever the bounded injection queue
/// (default capacity 4096) is full, then in `wait_idle()`. oneTBB's side (tbb.cpp) also has N
/// task-running threads, one of which is its benchmark thread.
#include "external_post_workload.hpp"

#include <bench_threads.hpp>

#include <flowpool/thread_pool.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>

namespace {

using flowpool_bench::counted_empty_task;
using flowpool_bench::k_external_posts;

void external_post_on_flowpool(benchmark::State& state) {
  const std::size_t threads = flowpool_bench::bench_threads();
  flowpool::thread_pool pool(threads);
  flowpool_bench::external_post_benchmark(state, threads, [&pool] {
    for (std::uint64_t i = 0; i < k_external_posts; ++i) {
      pool.post([] { counted_empty_task(); });
    }
    pool.wait_idle();
  });
}

}  // namespace

BENCHMARK(external_post_on_flowpool)->Name("external_post/flowpool")->UseRealTime()->Unit(benchmark::kMillisecond);
