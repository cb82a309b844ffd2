/// @file
/// @brief bench_wakeup: submit -> start latency of an idle pool, flowpool (flowpool.cpp) beside
/// oneTBB (tbb.cpp) and the plain mutex + condition variable pool (plain.cpp).
#include <bench_threads.hpp>

int main(int argc, char** argv) {
  return flowpool_bench::run_benchmarks(argc, argv);
}
