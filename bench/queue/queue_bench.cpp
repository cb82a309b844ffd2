// bench_queue: throughput of flowpool::bounded_queue<int> beside tbb::concurrent_bounded_queue<int>
// and a plain mutex + deque + two condition variables queue, 1 -> 1 and 2 -> 2 threads, capacity
// 1024, 1M ints per iteration (queue_harness.hpp). Each implementation registers itself from its
// own file. Compare medians within one run:
//   bench_queue --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

BENCHMARK_MAIN();
