/// @file
/// @brief bench_skynet: 10-ary tree of 1M leaf tasks, flowpool (flowpool.cpp) beside oneTBB (tbb.cpp).
#include <bench_threads.hpp>

int main(int argc, char** argv) {
  return flowpool_bench::run_benchmarks(argc, argv);
}
