// bench_queue: oneTBB's tbb::concurrent_bounded_queue<int>, bounded to the same capacity.
#include "queue_harness.hpp"

#include <oneapi/tbb/concurrent_queue.h>

#include <cstddef>

namespace {

class tbb_queue {
 public:
  explicit tbb_queue(std::size_t capacity) { m_queue.set_capacity(static_cast<std::ptrdiff_t>(capacity)); }
  bool push(int item) {
    m_queue.push(item);  // blocks while full
    return true;
  }
  bool pop(int& item) {
    m_queue.pop(item);  // blocks while empty
    return true;
  }

 private:
  tbb::concurrent_bounded_queue<int> m_queue;
};

[[maybe_unused]] const auto* const registered =
    flowpool_bench::register_queue_throughput<tbb_queue>("queue/tbb::concurrent_bounded_queue");

}  // namespace
