/// @file
/// @brief bench_external_post: 1M empty tasks from one outside thread, flowpool (flowpool.cpp)
/// beside oneTBB (tbb.cpp) and the plain mutex + condition variable pool (plain.cpp).
#include <bench_threads.hpp>

int main(int argc, char** argv) {
  return flowpool_bench::run_benchmarks(argc, argv);
}
