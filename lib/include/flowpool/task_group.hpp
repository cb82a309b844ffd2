/// @file
/// @brief flowpool::task_group: fork-join over a thread_pool.
#pragma once

#include <flowpool/detail/task.hpp>
#include <flowpool/detail/tsan.hpp>
#include <flowpool/thread_pool.hpp>

#include <exception>
#include <utility>

namespace flowpool {

/// @brief A set of tasks run on a thread_pool that can be waited for together (fork-join).
///
/// Constructing one is cheap: no allocation, no system call (a few words of state), so a group per
/// recursive call (fib) is the intended use. It is reusable: after wait() returns, run() may add
/// new tasks. One thread at a time may call wait(); run() may be called concurrently from any
/// thread, including from the group's own tasks, and also while another thread is in wait():
/// such a task may or may not be covered by that wait() (a later wait() covers it).
///
/// **Cancellation.** cancel() skips the tasks that have not started, also those of nested groups;
/// the running ones finish, and wait() returns normally once they have.
///
/// **Errors.** If tasks of the group throw, wait() rethrows the first exception captured; the
/// others are dropped. A task discarded by thread_pool::shutdown_now() counts as having thrown
/// shut_down_error.
///
/// **Memory ordering.** Everything done before run() happens-before the task starts; the end of
/// every task of the group happens-before wait() (or the destructor) returns.
///
/// **Example.** A recursive sum: run one half as a task, compute the other half, wait()
/// (`docs/examples/task_group_sum.cpp`):
/// @snippet task_group_sum.cpp fork_join
class task_group {
 public:
  /// @brief Creates an empty group whose tasks will run on `pool`.
  ///
  /// Created inside a task of another group (of any pool), the new group is that group's
  /// child for cancellation (see cancel()): it must then be destroyed before that task ends,
  /// which a group on the task's stack always is.
  /// Any thread; never blocks; allocates nothing; does not throw.
  /// @param pool the pool; it must outlive the group.
  explicit task_group(thread_pool& pool) noexcept : m_pool(&pool), m_state(detail::t_running_group) {}

  /// @brief Waits for the group's tasks (as wait()), then destroys the group.
  ///
  /// An exception captured and not yet rethrown by wait() is discarded: destructors must not
  /// throw, and letting it reach std::terminate would punish code that was already unwinding.
  /// Call wait() first to observe it. Blocks as wait(); allocates nothing.
  /// Memory ordering: as wait(): the end of every task of the group happens-before the return.
  ~task_group() { wait_pending(); }

  task_group(const task_group&) = delete;             ///< Not copyable.
  task_group& operator=(const task_group&) = delete;  ///< Not copyable.
  task_group(task_group&&) = delete;                  ///< Not movable: tasks refer to it.
  task_group& operator=(task_group&&) = delete;       ///< Not movable.

  /// @brief Cancels the group: its tasks that have not started are skipped (destroyed without
  /// running); running ones finish. So are the tasks of groups created inside its tasks, at any
  /// depth (as in oneTBB, a nested group sees its parent's cancellation).
  ///
  /// Any thread, including the group's own tasks (a task that cancels its group stops its
  /// siblings that have not started). Never blocks; allocates nothing; does not throw.
  /// wait() still waits for the running tasks and then returns normally (it rethrows only an
  /// exception a task threw); at that return the cancellation ends and the group is reusable.
  /// Tasks run() into a cancelled group are accepted and skipped. A skipped task counts in
  /// pool_stats::completed and pool_stats::skipped. The parallel algorithms (parallel_for,
  /// parallel_reduce, ...) run in groups of their own, so inside a task of a cancelled group
  /// they may skip pieces that have not started too, and return normally with the work
  /// incomplete.
  /// Memory ordering: a task whose run() (or whose group's creation, for a nested group) happens
  /// after the cancel() is skipped; a task queued before it may still start if a worker takes it
  /// before the cancellation reaches that worker.
  void cancel() noexcept { m_state.cancel(); }

  /// @brief True from cancel() (of this group or of a group it was created in) until the end of
  /// the wait() that follows. Any thread; never blocks; does not throw.
  /// @return whether the group is being cancelled.
  [[nodiscard]] bool is_canceling() const noexcept { return m_state.canceled(); }

  /// @brief Runs `f()` on the pool as a task of this group.
  ///
  /// Any thread. On one of the pool's workers it pushes onto that worker's deque and never
  /// blocks; from outside the pool it goes to the injection queue and blocks while that is full.
  /// Allocates nothing when `f` is at most 48 bytes (see thread_pool).
  /// Memory ordering: the call happens-before the task starts.
  /// @param f the callable; decay-copied (or moved) into the task.
  /// @throws shut_down_error if the pool no longer accepts tasks from the caller (see
  ///         thread_pool::submit()); nothing is queued then.
  /// @throws whatever copying/moving `f` or an allocation throws; nothing is queued then.
  template <class F>
  void run(F&& f) {
    m_pool->enqueue(std::forward<F>(f), &m_state, true);
  }

  /// @brief Returns when every task run() in this group so far (and every task they ran in it)
  /// has finished; then rethrows the first exception one of them threw, if any.
  ///
  /// Tasks that other threads run() while this call waits may or may not be covered; one that
  /// ends before the return may have its error reported here.
  /// One thread at a time. On one of the pool's workers it runs other tasks meanwhile (its own
  /// newest first, then the injection queue, then stolen ones), so nested fork-join never
  /// deadlocks, at any depth and with any thread count including 1. While the group's last tasks
  /// run on other workers and nothing else is queued, a waiting worker spins with pauses, then
  /// yields (it does not sleep: it must notice new work at once). Outside the pool it sleeps (no
  /// busy wait). Allocates nothing.
  /// Memory ordering: the end of every task of the group happens-before the return.
  /// @throws the first exception thrown by a task of the group; the group is reusable afterwards.
  void wait() {
    wait_pending();
    if (std::exception_ptr error = m_state.take_error()) {
      std::rethrow_exception(error);
    }
  }

 private:
  void wait_pending() noexcept {
    if (m_state.pending_acquire() != 0) {
      if (m_pool->on_own_worker()) {
        m_pool->help_while_pending(m_state);
      } else {
        m_state.wait_external();
      }
    }
    m_state.end_cancel();
    // TSan only. pairs with: the release at the end of each of the group's tasks
    // (detail::tsan_task), which the library's own ordering is invisible to TSan without.
    FLOWPOOL_TSAN_ACQUIRE(&m_state);
  }

  thread_pool* m_pool;
  detail::group_state m_state;
};

}  // namespace flowpool
