/// @file
/// @brief bench_idle_cpu: CPU burnt by an idle pool, flowpool (flowpool.cpp) beside oneTBB (tbb.cpp).
#include <bench_threads.hpp>

int main(int argc, char** argv) {
  return flowpool_bench::run_benchmarks(argc, argv);
}
