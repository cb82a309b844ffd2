// flowpool::parallel_invoke: run a few different pieces of work at once and wait for all of
// them. The first runs on the calling thread; the others are tasks, so this nests like any
// fork-join (here: a parallel quicksort).
#include <flowpool/parallel_invoke.hpp>
#include <flowpool/thread_pool.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <utility>
#include <vector>

namespace {

//! [parallel_invoke]
// Sorts [first, last): partitions, then sorts both halves at once.
void parallel_sort(flowpool::thread_pool& pool, int* first, int* last) {
  if (last - first < 4096) {
    std::sort(first, last);  // small: serial is faster
    return;
  }
  const int pivot = first[(last - first) / 2];
  int* middle = std::partition(first, last, [pivot](int v) { return v < pivot; });
  int* upper = std::partition(middle, last, [pivot](int v) { return !(pivot < v); });
  flowpool::parallel_invoke(
      pool, [&] { parallel_sort(pool, first, middle); }, [&] { parallel_sort(pool, upper, last); });
}
//! [parallel_invoke]

}  // namespace

int main() {
  flowpool::thread_pool pool(2);
  std::vector<int> values(1 << 20);
  std::mt19937 random(42);
  for (int& v : values) {
    v = static_cast<int>(random() % 100000);
  }
  parallel_sort(pool, values.data(), values.data() + values.size());

  // The first exception is rethrown once every callable that started has finished.
  bool rethrown = false;
  try {
    flowpool::parallel_invoke(
        pool, [] { throw std::runtime_error("load failed"); }, [] { /* may be skipped */ });
  } catch (const std::runtime_error&) {
    rethrown = true;
  }
  const bool sorted = std::is_sorted(values.begin(), values.end());
  std::printf("%zu values sorted: %s; exception rethrown: %s\n", values.size(), sorted ? "yes" : "no",
              rethrown ? "yes" : "no");
  return sorted && rethrown ? 0 : 1;
}
