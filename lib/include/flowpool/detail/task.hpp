/// @file
/// @brief Internal: the task record the pool queues, and the completion state of a task_group.
/// Installed because the public templates use them; not part of the API.
#pragma once

#include <flowpool/detail/config.hpp>
#include <flowpool/detail/small_task.hpp>

#include <atomic>
#include <cstdint>
#include <exception>
#include <thread>

namespace flowpool::detail {

class group_state;

// What the pool queues: the callable plus the group it counts against (nullptr for submit/post).
// Deriving lets GCC and Clang place `group` in small_task's tail padding: 64 bytes, one cache line.
struct task : small_task {
  group_state* group = nullptr;
};

// A thread blocked outside the pool in task_group::wait(). It lives on the waiting thread's stack,
// never inside the group, so the completing worker never touches the group after the count it
// decremented reached zero (the group may be destroyed the moment wait() returns).
class external_waiter {
 public:
  // Blocks until wake() has finished touching this object. Called by the waiting thread only.
  void wait() noexcept {
    // acquire, pairs with: the release stores in wake(); makes the group's results visible.
    while (m_phase.load(std::memory_order_acquire) == k_waiting) {
      m_phase.wait(k_waiting, std::memory_order_acquire);
    }
    // wake() is between its two stores, inside notify_one(): its last access is a plain store,
    // so this brief wait usually ends within a few hundred cycles; yielding covers a waker that
    // was preempted in between, instead of spinning through its time slice.
    while (m_phase.load(std::memory_order_acquire) != k_released) {  // acquire: as above
      std::this_thread::yield();
    }
  }

  // Wakes the waiter. Called once, by the thread that completed the group's last task.
  void wake() noexcept {
    m_phase.store(k_woken, std::memory_order_release);  // pairs with: wait()'s acquire loads
    m_phase.notify_one();
    m_phase.store(k_released, std::memory_order_release);  // pairs with: wait()'s final loop; last access
  }

 private:
  static constexpr std::uint32_t k_waiting = 0;
  static constexpr std::uint32_t k_woken = 1;
  static constexpr std::uint32_t k_released = 2;
  std::atomic<std::uint32_t> m_phase{k_waiting};
};

// The counting and error state of one task_group: how many of its tasks are pending, whether an
// outside thread is blocked in wait(), and the first exception a task threw.
//
// m_state = pending count (low 63 bits) | k_waiter_bit. Workers poll the count while helping;
// an outside waiter sets the bit and sleeps on its own external_waiter, which the task that takes
// the count to zero wakes.
class group_state {
 public:
  // One more task will be queued. Called by run() before publishing the task.
  void add_one() noexcept {
    // relaxed: the queue's release/acquire publication of the task orders this increment before
    // the task's complete_one(), and coherence keeps the count from reaching zero early.
    m_state.fetch_add(1, std::memory_order_relaxed);
  }

  // A task of the group ended (ran, threw, or was dropped by shutdown_now). Called once per task
  // by the thread that ran or dropped it, after the task's callable was destroyed.
  void complete_one() noexcept {
    // Once the count is zero the group may be destroyed, except while an outside waiter is
    // registered: it cannot return before wake(), so m_waiter is still readable after the RMW.
    // acq_rel: release publishes this task's effects (and, through the RMW release sequence, those
    // of every earlier task) to pending_acquire()/wait_external(); acquire pairs with
    // wait_external()'s fetch_add of k_waiter_bit, making m_waiter readable.
    const std::uint64_t before = m_state.fetch_sub(1, std::memory_order_acq_rel);
    if (before == (k_waiter_bit | 1)) {
      m_waiter->wake();
    }
  }

  // Records `error` if it is the group's first. Called by the thread that ran the failing task,
  // before that task's complete_one() (which publishes m_error).
  void capture(std::exception_ptr error) noexcept {
    // acq_rel: only the winner writes m_error; its complete_one() release publishes the write.
    if (!m_failed.exchange(true, std::memory_order_acq_rel)) {
      m_error = std::move(error);
    }
  }

  // The pending count. acquire, pairs with: complete_one()'s fetch_sub; a zero means every task
  // of the group has finished and its effects are visible.
  [[nodiscard]] std::uint64_t pending_acquire() const noexcept {
    return m_state.load(std::memory_order_acquire) & ~k_waiter_bit;
  }

  // True once a task of the group has thrown (a hint for early exit; relaxed: nothing is read
  // through it, the exception itself is published by complete_one()).
  [[nodiscard]] bool failed_relaxed() const noexcept { return m_failed.load(std::memory_order_relaxed); }

  // Blocks an outside thread until the pending count is zero. Only one thread may wait at a time.
  void wait_external() noexcept {
    if (pending_acquire() == 0) {
      return;
    }
    external_waiter waiter;
    m_waiter = &waiter;
    // acq_rel: release publishes m_waiter to the complete_one() whose RMW reads this value or a
    // later one; acquire pairs with earlier complete_one() releases.
    const std::uint64_t before = m_state.fetch_add(k_waiter_bit, std::memory_order_acq_rel);
    if ((before & ~k_waiter_bit) != 0) {
      waiter.wait();  // the last complete_one() wakes us
    }
    // relaxed: no task of the group is pending, so nothing else touches m_state until the next run().
    m_state.fetch_and(~k_waiter_bit, std::memory_order_relaxed);
    m_waiter = nullptr;
  }

  // After the count reached zero: takes the first exception (if any) and rearms the group.
  // Called by the waiting thread only.
  [[nodiscard]] std::exception_ptr take_error() noexcept {
    // acquire: pairs with capture()'s exchange (already ordered by the count, kept for clarity).
    if (!m_failed.load(std::memory_order_acquire)) {
      return nullptr;
    }
    std::exception_ptr error = std::move(m_error);
    m_error = nullptr;
    m_failed.store(false, std::memory_order_relaxed);  // relaxed: no task of the group is pending
    return error;
  }

 private:
  static constexpr std::uint64_t k_waiter_bit = std::uint64_t{1} << 63;
  std::atomic<std::uint64_t> m_state{0};
  std::atomic<bool> m_failed{false};
  external_waiter* m_waiter = nullptr;  // written by the waiter before it sets k_waiter_bit
  std::exception_ptr m_error;           // written by the first capture(), read by take_error()
};

}  // namespace flowpool::detail
