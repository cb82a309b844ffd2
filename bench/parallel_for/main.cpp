/// @file
/// @brief bench_parallel_for: sum of 16M doubles, flowpool (flowpool.cpp) beside oneTBB (tbb.cpp).
#include <bench_threads.hpp>

int main(int argc, char** argv) {
  return flowpool_bench::run_benchmarks(argc, argv);
}
