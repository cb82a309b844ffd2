/// @file
/// @brief 1M posts from outside + wait on the plain pool (bench/common/plain_pool.hpp: one mutex,
/// one condition variable, a deque): the simplest design's cost per external post.
///
/// Threads: a `plain_pool` with N workers; the benchmark thread stays outside, posts, then blocks
/// in `wait_idle`, as flowpool's side does (flowpool.cpp).
#include "external_post_workload.hpp"

#include <bench_threads.hpp>
#include <plain_pool.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>

namespace {

using flowpool_bench::counted_empty_task;
using flowpool_bench::k_external_posts;

void external_post_on_plain(benchmark::State& state) {
  const std::size_t threads = flowpool_bench::bench_threads();
  flowpool_bench::plain_pool pool(threads);
  flowpool_bench::external_post_benchmark(state, threads, [&pool] {
    for (std::uint64_t i = 0; i < k_external_posts; ++i) {
      pool.post([] { counted_empty_task(); });
    }
    pool.wait_idle();
  });
}

}  // namespace

BENCHMARK(external_post_on_plain)->Name("external_post/plain")->UseRealTime()->Unit(benchmark::kMillisecond);
