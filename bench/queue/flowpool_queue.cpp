// bench_queue: flowpool::bounded_queue<int>.
#include "queue_harness.hpp"

#include <flowpool/bounded_queue.hpp>

#include <cstddef>
#include <optional>

namespace {

class flowpool_queue {
 public:
  explicit flowpool_queue(std::size_t capacity) : m_queue(capacity) {}
  bool push(int item) { return m_queue.put(item); }
  bool pop(int& item) {
    std::optional<int> got = m_queue.get();
    if (!got) {
      return false;
    }
    item = *got;
    return true;
  }

 private:
  flowpool::bounded_queue<int> m_queue;
};

[[maybe_unused]] const auto* const registered =
    flowpool_bench::register_queue_throughput<flowpool_queue>("queue/flowpool::bounded_queue");

}  // namespace
