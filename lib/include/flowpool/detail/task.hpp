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

// The group of the task the calling thread is running as a flowpool worker (nullptr between
// tasks, for a task without a group, and on other threads). The pool sets it around each task
// (saving and restoring it around nested runs); a task_group created by that task takes it as its
// parent for cancellation. Only the thread itself reads or writes it.
inline thread_local const group_state* t_running_group = nullptr;

// Groups whose cancellation is in effect, process-wide (task_group::cancel() until the end of the
// next wait()). Zero almost always, so the pool checks a task's group flags only when it is not.
inline std::atomic<std::uint32_t> g_cancellations{0};

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
// an outside waiter sets the bit and sleeps on its own external_waiter.
//
// Who wakes the waiter, with run() called concurrently from other threads: the bit is cleared
// only by a single CAS from `bit | 0` (the waiter taking it back because nothing is pending) or
// from `bit | 1` straight to 0 (the task that ends the last pending task, which then wakes the
// waiter). A state of `bit | 0` is never left for a completer to find, so exactly one thread
// clears each registration, and a waiter returns only after that thread is done with the group:
// either it cleared the bit itself, or the completer's wake() was its last access. A completer
// that decremented without clearing the bit (`bit | k`, k > 1) never touches the group again.
class group_state {
 public:
  group_state() noexcept = default;
  // A group created while the calling thread runs a task of `parent` inherits its cancellation.
  explicit group_state(const group_state* parent) noexcept : m_parent(parent) {}
  group_state(const group_state&) = delete;
  group_state& operator=(const group_state&) = delete;
  ~group_state() = default;

  // Marks the group cancelled. Any thread; idempotent.
  void cancel() noexcept {
    // relaxed: published by the release increment of g_cancellations just below, which every
    // skip decision loads (acquire) before it reads a flag.
    if (!m_canceled.exchange(true, std::memory_order_relaxed)) {
      // release, pairs with: should_skip()'s acquire load.
      g_cancellations.fetch_add(1, std::memory_order_release);
    }
  }

  // Clears the cancellation once no task of the group is pending. The waiting thread only.
  void end_cancel() noexcept {
    // The load first: an exchange is a locked instruction even when it finds `false`, and this
    // runs at the end of every wait() and in the destructor (issue 13). A cancel() that
    // happens-before the call is seen by the load (coherence); one concurrent with it may stay in
    // effect, as if it came just after the return (the exchange alone allowed that too).
    // relaxed (both): no task of the group is pending, so no skip decision of this round reads it.
    if (m_canceled.load(std::memory_order_relaxed) && m_canceled.exchange(false, std::memory_order_relaxed)) {
      // relaxed: a count that stays too high for a moment only costs a needless flag check.
      g_cancellations.fetch_sub(1, std::memory_order_relaxed);
    }
  }

  // True if this group or a group it was created in is cancelled. Any thread; the ancestors
  // outlive the call (a child group lives inside a task of its parent, which keeps the parent's
  // count above zero).
  [[nodiscard]] bool canceled() const noexcept {
    for (const group_state* g = this; g != nullptr; g = g->m_parent) {
      // relaxed: ordered by g_cancellations (see cancel()).
      if (g->m_canceled.load(std::memory_order_relaxed)) {
        return true;
      }
    }
    return false;
  }

  // Whether a task of `group` (nullptr: no group) must be skipped instead of run. The common case
  // costs one load of a line nobody writes. acquire, pairs with: cancel()'s release increment; a
  // cancel() that happens-before the task's run() (through the queue's publication) is seen.
  [[nodiscard]] static bool should_skip(const group_state* group) noexcept {
    return group != nullptr && g_cancellations.load(std::memory_order_acquire) != 0 && group->canceled();
  }

  // One more task will be queued. Called by run() before publishing the task.
  void add_one() noexcept {
    // relaxed: the queue's release/acquire publication of the task orders this increment before
    // the task's complete_one(), and coherence keeps the count from reaching zero early.
    m_state.fetch_add(1, std::memory_order_relaxed);
  }

  // A task of the group ended (ran, threw, or was dropped by shutdown_now). Called once per task
  // by the thread that ran or dropped it, after the task's callable was destroyed. Once the count
  // is zero the group may be destroyed: after the successful CAS this touches nothing of it, and
  // the waiter it wakes lives on the waiting thread's stack.
  void complete_one() noexcept {
    // acquire: pairs with wait_external()'s fetch_add of k_waiter_bit (release), so that when the
    // bit is seen, m_waiter (written before that RMW) is readable.
    std::uint64_t state = m_state.load(std::memory_order_acquire);
    for (;;) {
      const bool last_with_waiter = state == (k_waiter_bit | 1);
      // Read before the CAS: once the CAS clears the bit, the waiter is ours to wake, but the
      // group itself must not be touched again. Meaningful only if last_with_waiter.
      external_waiter* const waiter = last_with_waiter ? m_waiter : nullptr;
      // acq_rel: release publishes this task's effects (and, through the RMW release sequence,
      // those of every earlier task) to pending_acquire() and the waiter; acquire (also on
      // failure) keeps m_waiter readable as above when we retry with a newer state.
      if (m_state.compare_exchange_weak(state, last_with_waiter ? 0 : state - 1, std::memory_order_acq_rel,
                                        std::memory_order_acquire)) {
        if (waiter != nullptr) {
          waiter->wake();
        }
        return;
      }
    }
  }

  // Records `error` if it is the group's first since the last take_error(). Called by the thread
  // that ran the failing task, before that task's complete_one() (which publishes the record).
  // A task that fails while take_error() is handing over the previous error waits for it (a few
  // instructions) instead of being dropped.
  void capture(std::exception_ptr error) noexcept {
    std::uint8_t expected = k_no_error;
    // acquire, pairs with: take_error()'s release store of k_no_error (its read of m_error is
    // finished before we overwrite it).
    while (!m_error_state.compare_exchange_weak(expected, k_writing, std::memory_order_acquire,
                                                std::memory_order_relaxed)) {
      if (expected == k_writing || expected == k_recorded) {
        return;  // not the first: dropped, as documented
      }
      // relaxed failure: k_taking, or a spurious failure; retried after the yield.
      if (expected == k_taking) {
        std::this_thread::yield();
      }
      expected = k_no_error;
    }
    m_error = std::move(error);
    // release, pairs with: take_error()'s acquire CAS; publishes m_error.
    m_error_state.store(k_recorded, std::memory_order_release);
  }

  // The pending count. acquire, pairs with: complete_one()'s CAS; a zero means every task of the
  // group has finished and its effects are visible.
  [[nodiscard]] std::uint64_t pending_acquire() const noexcept {
    return m_state.load(std::memory_order_acquire) & ~k_waiter_bit;
  }

  // Blocks an outside thread until the pending count is zero. Only one thread may wait at a time.
  void wait_external() noexcept {
    if (pending_acquire() == 0) {
      return;
    }
    external_waiter waiter;
    m_waiter = &waiter;
    // acq_rel: release publishes m_waiter to the complete_one() whose CAS reads this value or a
    // later one; acquire pairs with earlier complete_one() releases.
    const std::uint64_t before = m_state.fetch_add(k_waiter_bit, std::memory_order_acq_rel);
    if (before == 0) {
      // The last task ended between our check and the RMW: take the bit back. If a run() slipped
      // in (`bit | k`), the CAS fails and the completer of the last of those tasks wakes us.
      std::uint64_t expected = k_waiter_bit;
      // acquire: pairs with the completers' releases (their effects are visible on return).
      if (m_state.compare_exchange_strong(expected, 0, std::memory_order_acquire, std::memory_order_relaxed)) {
        return;  // relaxed failure: we wait for the completer's wake-up, which orders the rest
      }
    }
    waiter.wait();  // the completer that cleared the bit wakes us
  }

  // After the count reached zero: takes the first exception (if any) and rearms the group.
  // Called by the waiting thread only. If a task is still recording its error (it threw and its
  // capture() is between its two steps), waits for the record: that task may be one the wait
  // covers whose own error capture() dropped because this one was first.
  [[nodiscard]] std::exception_ptr take_error() noexcept {
    // The common case without a CAS (a failed CAS is still a locked instruction, and this runs at
    // the end of every wait(); issue 13). relaxed: k_no_error has nothing to read. A covered task's
    // capture() finished before its end, which happens-before this call, so its k_recorded (only
    // this thread moves it on), or the k_writing of the capture it lost to, is what the load sees
    // then (coherence); k_no_error means no covered error.
    if (m_error_state.load(std::memory_order_relaxed) == k_no_error) {
      return nullptr;
    }
    std::uint8_t expected = k_recorded;
    // acquire, pairs with: capture()'s release store of k_recorded; makes m_error readable.
    // relaxed failure: k_no_error means nothing to read; k_writing is retried.
    while (!m_error_state.compare_exchange_weak(expected, k_taking, std::memory_order_acquire,
                                                std::memory_order_relaxed)) {
      if (expected == k_no_error) {
        return nullptr;
      }
      if (expected == k_writing) {
        std::this_thread::yield();
      }
      expected = k_recorded;
    }
    std::exception_ptr error = std::move(m_error);
    m_error = nullptr;
    // release, pairs with: capture()'s acquire CAS; our accesses to m_error are finished.
    m_error_state.store(k_no_error, std::memory_order_release);
    return error;
  }

 private:
  static constexpr std::uint64_t k_waiter_bit = std::uint64_t{1} << 63;
  // m_error_state: who owns m_error. capture() takes it from k_no_error to k_writing and then
  // k_recorded; take_error() from k_recorded to k_taking and then back to k_no_error.
  static constexpr std::uint8_t k_no_error = 0;
  static constexpr std::uint8_t k_writing = 1;
  static constexpr std::uint8_t k_recorded = 2;
  static constexpr std::uint8_t k_taking = 3;

  std::atomic<std::uint64_t> m_state{0};
  std::atomic<std::uint8_t> m_error_state{k_no_error};
  std::atomic<bool> m_canceled{false};  // cancel() sets it, the end of a wait() clears it
  const group_state* const m_parent = nullptr;
  // Written by the waiter before it sets k_waiter_bit; read only by the completer that sees
  // `bit | 1` for its own task, which no other thread can end first, so the registration is live.
  external_waiter* m_waiter = nullptr;
  std::exception_ptr m_error;  // owned as m_error_state says
};

}  // namespace flowpool::detail
