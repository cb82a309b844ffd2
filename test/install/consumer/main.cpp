// Uses the umbrella header and every component, then checks the results: exit code 0 only when
// the linked library behaves.
#include <flowpool/flowpool.hpp>

#include <cstdio>
#include <cstring>
#include <thread>

int main() {
  if (std::strcmp(flowpool::version(), "0.0.0") == 0) {
    return 1;
  }
  flowpool::bounded_queue<int> queue(4);
  std::thread consumer([&] {
    while (auto item = queue.get()) {
      queue.task_done();
    }
  });
  for (int i = 0; i < 100; ++i) {
    if (!queue.put(i)) {
      return 2;
    }
  }
  queue.join();
  queue.shutdown();
  consumer.join();
  std::printf("flowpool %s consumer ok\n", flowpool::version());
  return 0;
}
