/// @file
/// @brief bench_fib: fib(n) fork-join, flowpool (flowpool.cpp) beside oneTBB (tbb.cpp).
#include <bench_threads.hpp>

int main(int argc, char** argv) {
  return flowpool_bench::run_benchmarks(argc, argv);
}
