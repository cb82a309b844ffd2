/// @file
/// @brief The baseline for thread-pool benchmarks: the textbook pool (one std::mutex, one
/// std::condition_variable and a std::deque of tasks, N threads), as most programs write it.
///
/// It is the simplest design that can run the wakeup and external_post workloads, so it sits in
/// their tables beside flowpool and oneTBB: a scheduler that wakes an idle worker slower, or with
/// more CPU, than this one has a cost to explain. No work stealing, no spinning: an idle worker
/// sleeps on the condition variable at once, and a post wakes one sleeper, if any.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace flowpool_bench {

/// @brief A fixed-size FIFO thread pool written the plain way.
///
/// Any thread may call `post` and `wait_idle`; neither may be called from a task (a task calling
/// `wait_idle` would wait for itself). Memory ordering: a `post` happens-before its task runs, and
/// every task that ran happens-before the `wait_idle` return that counted it.
class plain_pool {
 public:
  /// @brief Starts `threads` worker threads (at least 1).
  /// @param threads N.
  explicit plain_pool(std::size_t threads) {
    m_threads.reserve(threads);
    for (std::size_t i = 0; i < threads; ++i) {
      m_threads.emplace_back([this] { work(); });
    }
  }

  plain_pool(const plain_pool&) = delete;
  plain_pool& operator=(const plain_pool&) = delete;

  /// @brief Runs the queued tasks, then stops and joins the workers.
  ~plain_pool() {
    {
      std::lock_guard lock(m_mutex);
      m_stop = true;
    }
    m_work.notify_all();
    for (std::thread& t : m_threads) {
      t.join();
    }
  }

  /// @brief Queues `task` and wakes one sleeping worker, if any. Never blocks for long (takes the
  /// mutex); allocates (the deque, the std::function).
  /// @param task the callable.
  template <class F>
  void post(F&& task) {
    {
      std::lock_guard lock(m_mutex);
      m_tasks.emplace_back(std::forward<F>(task));
      ++m_pending;
    }
    m_work.notify_one();  // after unlocking, so the woken worker does not block on the mutex
  }

  /// @brief Blocks until every task posted so far has finished.
  void wait_idle() {
    std::unique_lock lock(m_mutex);
    m_idle.wait(lock, [this] { return m_pending == 0; });
  }

 private:
  void work() {
    std::unique_lock lock(m_mutex);
    for (;;) {
      m_work.wait(lock, [this] { return m_stop || !m_tasks.empty(); });
      if (m_tasks.empty()) {
        return;  // m_stop, and nothing left to run
      }
      std::function<void()> task = std::move(m_tasks.front());
      m_tasks.pop_front();
      lock.unlock();
      task();
      lock.lock();
      if (--m_pending == 0) {
        m_idle.notify_all();
      }
    }
  }

  std::mutex m_mutex;
  std::condition_variable m_work;             // idle workers sleep here; post notifies one
  std::condition_variable m_idle;             // wait_idle sleeps here; the last task to finish notifies
  std::deque<std::function<void()>> m_tasks;  // guarded by m_mutex
  std::size_t m_pending = 0;                  // posted and not finished; guarded by m_mutex
  bool m_stop = false;                        // guarded by m_mutex
  std::vector<std::thread> m_threads;
};

}  // namespace flowpool_bench
