// A producer/consumer pipeline on flowpool::bounded_queue: backpressure, task_done()/join(),
// and a graceful shutdown that lets the consumers drain what is left.
#include <flowpool/bounded_queue.hpp>

#include <atomic>
#include <cstdio>
#include <thread>
#include <vector>

int main() {
  //! [pipeline]
  flowpool::bounded_queue<int> queue(8);  // at most 8 items wait; put() blocks beyond that
  std::atomic<long> sum{0};

  std::vector<std::jthread> consumers;
  consumers.reserve(3);
  for (int c = 0; c < 3; ++c) {
    consumers.emplace_back([&] {
      while (std::optional<int> item = queue.get()) {  // nullopt once shut down and drained
        sum.fetch_add(*item, std::memory_order_relaxed);
        queue.task_done();
      }
    });
  }

  for (int i = 1; i <= 1000; ++i) {
    if (!queue.put(i)) {
      return 1;  // only after a shutdown
    }
  }
  queue.join();      // every item put so far has been task_done()'d
  queue.shutdown();  // consumers' get() now returns nullopt, and the jthreads join
  //! [pipeline]
  consumers.clear();

  std::printf("sum = %ld\n", sum.load());
  return sum.load() == 500500 ? 0 : 1;
}
