/// @file
/// @brief Wake-up latency of an idle flowpool pool: `submit` from outside -> task start.
///
/// Threads: a `thread_pool` with N workers; the benchmark thread stays outside, submits, and
/// blocks in `future::get`. oneTBB's side (tbb.cpp) has N workers and an outside thread too.
/// The measured interval includes everything `submit` does (creating the future's shared
/// state, the push, the wake-up), because that is what a user waits for.
/// `wakeup/flowpool_post` (informational) is the same with `post` and a semaphore, without
/// the future.
#include "wakeup_workload.hpp"

#include <bench_threads.hpp>

#include <flowpool/thread_pool.hpp>

#include <benchmark/benchmark.h>

#include <semaphore>

namespace {

using flowpool_bench::wakeup_clock;

void wakeup_on_flowpool(benchmark::State& state) {
  const std::size_t threads = flowpool_bench::bench_threads();
  flowpool::thread_pool pool(threads);
  flowpool_bench::wakeup_benchmark(state, threads, [&pool](wakeup_clock::time_point& submitted) {
    submitted = wakeup_clock::now();
    return pool.submit([] { return wakeup_clock::now(); }).get();
  });
}

void wakeup_on_flowpool_post(benchmark::State& state) {
  const std::size_t threads = flowpool_bench::bench_threads();
  flowpool::thread_pool pool(threads);
  std::binary_semaphore done(0);
  flowpool_bench::wakeup_benchmark(state, threads, [&pool, &done](wakeup_clock::time_point& submitted) {
    wakeup_clock::time_point started;
    submitted = wakeup_clock::now();
    pool.post([&started, &done] {
      started = wakeup_clock::now();
      done.release();
    });
    done.acquire();  // the release/acquire pair orders the task's write of `started` before the read
    return started;
  });
}

}  // namespace

BENCHMARK(wakeup_on_flowpool)
    ->Name("wakeup/flowpool")
    ->Apply(flowpool_bench::wakeup_gap_args)
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(wakeup_on_flowpool_post)
    ->Name("wakeup/flowpool_post")
    ->Apply(flowpool_bench::wakeup_gap_args)
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
