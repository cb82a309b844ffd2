// bench_queue: the textbook mutex + deque + two condition variables queue (bench/common).
#include "queue_harness.hpp"

#include <plain_queue.hpp>

#include <cstddef>

namespace {

class plain_adapter {
 public:
  explicit plain_adapter(std::size_t capacity) : m_queue(capacity) {}
  bool push(int item) {
    m_queue.push(item);
    return true;
  }
  bool pop(int& item) {
    item = m_queue.pop();
    return true;
  }

 private:
  flowpool_bench::plain_queue<int> m_queue;
};

[[maybe_unused]] const auto* const registered =
    flowpool_bench::register_queue_throughput<plain_adapter>("queue/plain_mutex_deque_cv");

}  // namespace
