// The first program of the getting-started guide: a work-stealing pool, a task with a result, and
// a parallel loop. The guide quotes all of it; it returns non-zero on a wrong answer.
//! [first]
#include <flowpool/flowpool.hpp>

#include <atomic>
#include <cstdio>
#include <future>

int main() {
  flowpool::thread_pool pool;  // one worker per hardware thread

  std::future<int> answer = pool.submit([] { return 6 * 7; });  // runs on a worker

  std::atomic<long> sum{0};
  flowpool::parallel_for(pool, 1, 1001, [&](int i) { sum.fetch_add(i, std::memory_order_relaxed); });

  const int value = answer.get();  // waits for the task (and would rethrow its exception)
  std::printf("answer = %d, sum = %ld\n", value, sum.load());
  return value == 42 && sum.load() == 500500 ? 0 : 1;
}
//! [first]
