/// @file
/// @brief The baseline for queue benchmarks: the textbook bounded queue (one std::mutex, a
/// std::deque and two std::condition_variable), as most programs write it.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <utility>

namespace flowpool_bench {

/// @brief A bounded blocking FIFO queue written the plain way: every push notifies "not empty",
/// every pop notifies "not full", each after unlocking. No shutdown, no timed waits, no task
/// counting: only what a throughput comparison needs.
///
/// Any thread may call any member. `push` blocks while full, `pop` while empty (sleeping on a
/// condition variable). Memory ordering: a push happens-before the pop that receives its item.
/// @tparam T the element type; default-constructible and movable.
template <class T>
class plain_queue {
 public:
  /// @brief Creates an empty queue holding at most `capacity` items (at least 1).
  /// @param capacity the bound.
  explicit plain_queue(std::size_t capacity) noexcept : m_capacity(capacity) {}

  /// @brief Appends `item`, blocking while the queue is full. May allocate (deque growth).
  /// @param item the item to move in.
  void push(T item) {
    {
      std::unique_lock lock(m_mutex);
      m_not_full.wait(lock, [&] { return m_items.size() < m_capacity; });
      m_items.push_back(std::move(item));
    }
    m_not_empty.notify_one();
  }

  /// @brief Removes and returns the oldest item, blocking while the queue is empty.
  /// @return the item.
  T pop() {
    T item;
    {
      std::unique_lock lock(m_mutex);
      m_not_empty.wait(lock, [&] { return !m_items.empty(); });
      item = std::move(m_items.front());
      m_items.pop_front();
    }
    m_not_full.notify_one();
    return item;
  }

 private:
  std::mutex m_mutex;
  std::condition_variable m_not_empty;  // pop waits here; push notifies
  std::condition_variable m_not_full;   // push waits here; pop notifies
  std::deque<T> m_items;                // guarded by m_mutex
  const std::size_t m_capacity;
};

}  // namespace flowpool_bench
