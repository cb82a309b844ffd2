// Fork-join with flowpool::task_group: a recursive sum that splits its range in two, runs one half
// as a task and the other itself, then waits. wait() on a worker runs other tasks meanwhile, so the
// recursion never deadlocks, however deep it goes and however few threads the pool has.
#include <flowpool/task_group.hpp>
#include <flowpool/thread_pool.hpp>

#include <cstddef>
#include <cstdio>
#include <numeric>
#include <span>
#include <vector>

//! [fork_join]
long long parallel_sum(flowpool::thread_pool& pool, std::span<const int> values) {
  if (values.size() <= 4096) {  // small enough: a task would cost more than it saves
    return std::accumulate(values.begin(), values.end(), 0LL);
  }
  const std::size_t half = values.size() / 2;
  long long left = 0;
  flowpool::task_group group(pool);
  group.run([&] { left = parallel_sum(pool, values.first(half)); });  // may be stolen by another worker
  const long long right = parallel_sum(pool, values.subspan(half));   // this thread does the other half
  group.wait();  // left is written and visible after this; rethrows the task's exception if it threw
  return left + right;
}
//! [fork_join]

int main() {
  std::vector<int> values(1'000'000);
  std::iota(values.begin(), values.end(), 1);  // 1, 2, ..., 1'000'000

  for (const std::size_t threads : {1, 2, 4}) {
    flowpool::thread_pool pool(threads);
    const long long sum = parallel_sum(pool, values);
    std::printf("%zu thread(s): sum = %lld\n", threads, sum);
    if (sum != 1'000'000LL * 1'000'001LL / 2) {
      return 1;
    }
  }
  return 0;
}
