/// @file
/// @brief flowpool::thread_pool: a work-stealing pool for arbitrary tasks.
#pragma once

#include <flowpool/detail/deadline.hpp>
#include <flowpool/detail/task.hpp>
#include <flowpool/detail/tsan.hpp>
#include <flowpool/pool_stats.hpp>

#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

namespace flowpool {

namespace detail {
class pool_impl;
// Storage reserved for one task by thread_pool::claim(): `slot` is where the task is constructed,
// `handle` the worker node or injection-queue cell that holds it.
struct task_claim {
  task* slot = nullptr;
  void* handle = nullptr;
  bool local = false;  // true: a node of the calling worker's deque; false: an injection-queue cell
};
}  // namespace detail

/// @brief Thrown by thread_pool::submit()/post() and task_group::run() once the pool no longer
/// accepts tasks (after shutdown() or shutdown_now()). The task is not queued.
class shut_down_error : public std::runtime_error {
 public:
  /// @brief Creates the error with a fixed message.
  shut_down_error() : std::runtime_error("flowpool: the thread_pool is shut down") {}
  shut_down_error(const shut_down_error&) = default;  ///< Copyable, as exceptions are.
  /// @brief Copyable, as exceptions are.
  /// @return `*this`.
  shut_down_error& operator=(const shut_down_error&) = default;
  /// @brief Destroys the error. Defined in the library, so its vtable is emitted once.
  ~shut_down_error() override;
};

/// @brief Configuration of a thread_pool, used with designated initializers:
/// `flowpool::thread_pool pool{{.threads = 4, .name = "render"}}`.
struct pool_options {
  /// Number of worker threads; 0 means thread_pool::default_thread_count(), the CPUs this process
  /// may use (its affinity mask and cgroup CPU quota), not std::thread::hardware_concurrency().
  /// At most thread_pool::k_max_threads, otherwise the constructor throws std::invalid_argument.
  std::size_t threads = 0;
  /// Tasks from outside the pool that may wait in the injection queue; when it is full, submit()
  /// and post() from outside block and try_post() returns false. Must be at least 1 and at most
  /// thread_pool::k_max_queue_capacity (0 is rejected with std::invalid_argument: an unbounded
  /// queue would silently remove the backpressure the bound exists for). The slots are allocated
  /// up front by the constructor (80 bytes each on x86-64).
  std::size_t queue_capacity = 4096;
  /// Prefix of the worker threads' OS names: "<name>-0", "<name>-1", ... (Linux shows 15 characters).
  std::string name = "flowpool";
  /// Receives the exception of every post()ed or try_post()ed task that throws, on the worker
  /// that ran it. If empty, such exceptions are counted in pool_stats::failed and dropped; an
  /// exception thrown by on_error itself is dropped too. Never called concurrently with itself
  /// from the same worker, but may run on several workers at once.
  std::function<void(std::exception_ptr)> on_error{};  // {}: no -Wmissing-field-initializers for {.threads = n}
  /// Called once on each worker's own thread, with its index in [0, threads), before that worker
  /// takes any task (this_worker_index() returns the index inside it). The constructor returns
  /// only after every worker's call has returned; the calls of different workers may run at once.
  /// If one throws, no worker runs a task: the constructor stops and joins every worker (running
  /// on_thread_stop on those whose start hook returned) and rethrows that exception (the first,
  /// if several throw). It must not use the pool being constructed (there is none yet); a start
  /// hook that never returns blocks the constructor for ever.
  std::function<void(std::size_t index)> on_thread_start{};
  /// Called once on each worker's own thread, with its index, after the last task that worker
  /// runs and before its thread exits: on the destructor, shutdown() and shutdown_now(), and when
  /// the constructor fails after that worker's on_thread_start returned. The calls of different
  /// workers may run at once. Submitting to the pool from it throws shut_down_error (try_post()
  /// returns false): nothing would run the task. An exception it throws is dropped, as on_error's.
  /// Memory ordering: each call happens-before the return of the destructor, or of the outside
  /// shutdown() / shutdown_now() call, that joins the worker.
  std::function<void(std::size_t index)> on_thread_stop{};
};

/// @brief A pool of worker threads that run arbitrary tasks, with work stealing.
///
/// Each worker owns a Chase-Lev deque: tasks submitted from a worker (nested submit/post and
/// task_group::run) go to the calling worker's deque and never block. Tasks from other threads go
/// to one bounded injection queue (pool_options::queue_capacity), which blocks external producers
/// when full. A worker runs its own newest task first, then takes from the injection queue, then
/// steals the oldest task of a random other worker; when it finds nothing it spins briefly and
/// then sleeps, so an idle pool uses no CPU.
///
/// Tasks are stored without a heap allocation when the callable is at most 48 bytes, not
/// over-aligned and nothrow-move-constructible (see detail::is_small_task_inline_v).
///
/// **Not guaranteed.** Tasks do not start in submission order, not even those of one thread.
/// Which worker runs a task is unspecified. Fairness between external producers blocked on a full
/// queue is not guaranteed (they are woken together and race for room; try_post() callers never
/// overtake them, see try_post()). The injection queue is FIFO and an rvalue callable is moved
/// into its cell after the cell is claimed, so a producer preempted inside that move delays the
/// tasks queued behind it (idle workers sleep meanwhile); an lvalue is copied before the claim.
///
/// **Memory ordering.** Everything the submitting thread did before submit()/post()/try_post()
/// (returning true) or task_group::run() happens-before the task starts. The end of a task
/// happens-before the return of `get()`/`wait()` on its future, of the task_group::wait() that
/// covers it, and of a wait_idle() that covers it.
///
/// **Example.** A result through a future, an exception through a future, fire-and-forget tasks
/// whose exceptions go to `on_error`, and wait_idle() (`docs/examples/thread_pool_tasks.cpp`):
/// @snippet thread_pool_tasks.cpp submit_post
class thread_pool {
 public:
  /// The largest accepted pool_options::threads.
  static constexpr std::size_t k_max_threads = 1024;
  /// The largest accepted pool_options::queue_capacity (4,194,304). The injection queue's slots
  /// (80 bytes each on x86-64) are allocated by the constructor, so this bounds it to ~320 MiB.
  static constexpr std::size_t k_max_queue_capacity = std::size_t{1} << 22;

  /// @brief Starts default_thread_count() workers with default options.
  ///
  /// Any thread; blocks while threads start; allocates.
  /// @throws std::system_error if a thread cannot be started (started ones are stopped first).
  thread_pool();

  /// @brief Starts `threads` workers (0 means default_thread_count()) with default options.
  ///
  /// Any thread; blocks while threads start; allocates.
  /// @param threads the number of worker threads.
  /// @throws std::invalid_argument if `threads` exceeds k_max_threads.
  /// @throws std::system_error if a thread cannot be started (started ones are stopped first).
  explicit thread_pool(std::size_t threads);

  /// @brief Starts a pool configured by `options`.
  ///
  /// Any thread; blocks while threads start; allocates.
  /// @param options the configuration; see pool_options.
  /// Memory ordering: every pool_options::on_thread_start call happens-before the return.
  /// @throws std::invalid_argument naming the field if `threads` or `queue_capacity` is out of range.
  /// @throws std::system_error if a worker thread cannot be started: the workers already started
  ///         are stopped and joined before the exception propagates.
  /// @throws whatever pool_options::on_thread_start throws (the first exception, if several
  ///         workers' hooks throw): every worker is stopped and joined first, none ran a task.
  explicit thread_pool(pool_options options);

  /// @brief Graceful stop: stops accepting tasks, runs every accepted task (and every task those
  /// spawn), then joins the workers.
  ///
  /// Must not run on one of the pool's own workers (a task that deletes the pool that runs it):
  /// the destructor would wait for itself, so it prints a message naming the cause to stderr and
  /// calls std::terminate() instead.
  /// Blocks until the work is done. Allocates nothing. Does not throw.
  /// Memory ordering: the end of every task happens-before the destructor returns.
  ~thread_pool();

  thread_pool(const thread_pool&) = delete;             ///< Not copyable.
  thread_pool& operator=(const thread_pool&) = delete;  ///< Not copyable.
  thread_pool(thread_pool&&) = delete;                  ///< Not movable: workers hold references to it.
  thread_pool& operator=(thread_pool&&) = delete;       ///< Not movable.

  /// @brief Runs `f(args...)` on the pool and returns a future for its result.
  ///
  /// Any thread. From outside the pool, blocks while the injection queue is full; from one of the
  /// pool's workers, pushes onto that worker's deque and never blocks. Allocates the future's
  /// shared state (and the task, if the callable with its promise exceeds 48 bytes).
  /// An exception thrown by the task is stored in the future.
  /// Memory ordering: the call happens-before the task starts; the task's end happens-before
  /// `get()`/`wait()` on the future return.
  /// @param f the callable; decay-copied (or moved) into the task.
  /// @param args its arguments; decay-copied (or moved) into the task, passed as rvalues.
  /// @return the future of `std::invoke(f, args...)`.
  /// @throws shut_down_error if the pool no longer accepts tasks (from a worker: only after
  ///         shutdown_now(); a graceful shutdown() still lets running tasks spawn).
  /// @throws whatever copying/moving `f`/`args` or an allocation throws; nothing is queued then.
  template <class F, class... Args>
  [[nodiscard]] auto submit(F&& f, Args&&... args)
      -> std::future<std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...>> {
    using result = std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...>;
    std::promise<result> promise;
    std::future<result> future = promise.get_future();
    enqueue(
        [promise = std::move(promise), fn = std::forward<F>(f),
         ... params = std::forward<Args>(args)]() mutable noexcept {
          try {
            if constexpr (std::is_void_v<result>) {
              std::invoke(std::move(fn), std::move(params)...);
              promise.set_value();
            } else {
              promise.set_value(std::invoke(std::move(fn), std::move(params)...));
            }
          } catch (...) {
            promise.set_exception(std::current_exception());
          }
        },
        nullptr, true);
    return future;
  }

  /// @brief Runs `f()` on the pool, fire and forget.
  ///
  /// Any thread. From outside the pool, blocks while the injection queue is full; from one of the
  /// pool's workers, pushes onto its deque and never blocks. Allocates nothing when `f` is stored
  /// inline (see the class description). If the task throws, the exception goes to
  /// pool_options::on_error and is counted in pool_stats::failed; it never ends a worker.
  /// Memory ordering: the call happens-before the task starts; the task's end happens-before a
  /// wait_idle() that covers it returns.
  /// @param f the callable; decay-copied (or moved) into the task.
  /// @throws shut_down_error if the pool no longer accepts tasks (see submit()).
  /// @throws whatever copying/moving `f` or an allocation throws; nothing is queued then.
  template <class F>
  void post(F&& f) {
    enqueue(std::forward<F>(f), nullptr, true);
  }

  /// @brief Like post(), but never blocks: returns false when the injection queue is full, when an
  /// outside producer is blocked in submit()/post() waiting for room, or when the pool no longer
  /// accepts tasks. `f` is moved from only when the call returns true.
  ///
  /// try_post() never overtakes a blocked producer: while one waits, try_post() from outside the
  /// pool refuses, so the queue drains to the level at which the blocked are woken (half its
  /// capacity) and their wait is bounded however many try_post() callers keep trying. From one of
  /// the pool's workers it pushes onto the worker's deque as post() does.
  /// Any thread; never blocks; allocates as post().
  /// Memory ordering: as post(), when it returns true.
  /// @param f the callable.
  /// @return true if the task was queued.
  /// @throws whatever copying/moving `f` or an allocation throws; nothing is queued then.
  template <class F>
  [[nodiscard]] bool try_post(F&& f) {
    return enqueue(std::forward<F>(f), nullptr, false);
  }

  /// @brief Blocks until every task accepted before the call, and every task those spawned
  /// (recursively), has finished. Reusable; tasks accepted during the call may or may not be
  /// covered.
  ///
  /// Any thread except the pool's own workers. Blocks (sleeps; no busy wait). Does not allocate.
  /// Memory ordering: the end of every covered task happens-before the return.
  /// @throws std::logic_error if called on one of the pool's workers (it would wait for itself).
  void wait_idle() {
    (void)wait_idle_until(detail::deadline::never());
    // TSan only. pairs with: the release at the end of every task (detail::tsan_task).
    FLOWPOOL_TSAN_ACQUIRE(this);
  }

  /// @brief wait_idle() with a time limit.
  ///
  /// Any thread except the pool's own workers; blocks for at most `timeout`.
  /// Memory ordering: as wait_idle() when it returns true.
  /// @param timeout the longest time to wait; zero or negative checks once.
  /// @return true if the pool became idle, false on timeout.
  /// @throws std::logic_error if called on one of the pool's workers.
  template <class Rep, class Period>
  [[nodiscard]] bool wait_idle_for(const std::chrono::duration<Rep, Period>& timeout) {
    const bool idle = wait_idle_until(detail::deadline::after(timeout));
    if (idle) {
      // TSan only. pairs with: the release at the end of every task (detail::tsan_task).
      FLOWPOOL_TSAN_ACQUIRE(this);
    }
    return idle;
  }

  /// @brief Graceful shutdown: stops accepting tasks from outside the pool, lets every accepted
  /// task (and what it spawns) finish, then joins the workers.
  ///
  /// Any thread. From outside the pool, blocks until the work is done and the workers have
  /// exited; on one of the pool's workers it only stops acceptance and returns (the destructor
  /// joins). Idempotent; does not throw. Tasks running on workers may still spawn (nested
  /// submit, post and task_group::run()) so that fork-join computations in flight complete.
  /// Memory ordering: from outside, the end of every task happens-before the return.
  void shutdown() noexcept;

  /// @brief Immediate shutdown: stops accepting tasks from anywhere, discards every task that
  /// has not started, waits for the running ones, and joins the workers (when called from outside).
  ///
  /// A discarded submit() task's future reports std::future_errc::broken_promise; a discarded
  /// task of a task_group makes that group's wait() throw shut_down_error.
  /// Any thread (on a worker: does not join, and does not wait for tasks running elsewhere).
  /// Blocks until running tasks finish; allocates nothing; does not throw.
  /// Memory ordering: from outside the pool, the end of every task that ran happens-before the
  /// return (the workers have been joined).
  /// @return how many tasks were discarded by this call. Each discarded task is counted by exactly
  ///         one call: concurrent or repeated calls split the count, and once an outside call has
  ///         returned, the counts returned so far add up to pool_stats::dropped. A call on a worker
  ///         does not count tasks dropped after it returns (a later call does).
  std::size_t shutdown_now() noexcept;

  /// @brief The number of workers `threads = 0` starts: the CPUs this process may use.
  ///
  /// The smaller of the calling thread's affinity mask (`sched_getaffinity`, which new threads
  /// inherit: taskset, cpusets) and the cgroup v2 CPU quota (`cpu.max` of the process's cgroup and
  /// its ancestors, quota / period rounded up: "150000 100000" is 2 CPUs, "max 100000" is no
  /// quota), at least 1 and at most k_max_threads. Falls back to
  /// std::thread::hardware_concurrency() (at least 1) when neither can be read, e.g. off Linux.
  /// Computed anew on every call (the mask and the quota can change while the process runs).
  /// Any thread; does not block (reads a few small files under /proc and /sys/fs/cgroup);
  /// allocates a few short strings (an allocation failure counts as "no quota"); never throws.
  /// @return the default thread count, >= 1.
  [[nodiscard]] static std::size_t default_thread_count() noexcept;

  /// @brief The number of worker threads. Any thread; never blocks.
  /// @return the thread count fixed at construction.
  [[nodiscard]] std::size_t thread_count() const noexcept;

  /// @brief A snapshot of the pool's counters. Any thread; never blocks; allocates the vector.
  /// Memory ordering: none beyond the values themselves (see pool_stats).
  /// @return the counters; see pool_stats for their consistency.
  /// @throws std::bad_alloc if the vector cannot be allocated.
  [[nodiscard]] pool_stats stats() const;

  /// @brief How many accepted tasks have not started yet: waiting in the injection queue or in a
  /// worker's deque (BS::thread_pool's `get_tasks_queued()`).
  ///
  /// Derived from the per-worker counters (tasks accepted, started, ended, dropped). A snapshot:
  /// exact while nothing is submitted or started (e.g. every worker held in a blocking task, or
  /// after wait_idle() returned and nothing new was submitted: then 0); approximate while the
  /// pool runs, since the counters are read one after another. A task that a submitting thread
  /// is still constructing counts as queued. Tasks discarded by shutdown_now() no longer count.
  /// Any thread, including the pool's workers; never blocks; never allocates; never throws.
  /// Memory ordering: none; it orders nothing (use wait_idle() or a future to wait for tasks).
  /// @return the number of queued tasks.
  [[nodiscard]] std::size_t tasks_queued() const noexcept;

  /// @brief How many tasks are running now: started by a worker and not yet ended
  /// (BS::thread_pool's `get_tasks_running()`).
  ///
  /// At most thread_count(), except that a task blocked in task_group::wait() on a worker counts
  /// as running together with the tasks that worker runs while it helps. A snapshot: exact while
  /// no task starts or ends (every worker held in a blocking task: thread_count(); after
  /// wait_idle() returned: 0); approximate while the pool runs.
  /// Any thread, including the pool's workers (the caller's own task counts); never blocks; never
  /// allocates; never throws.
  /// Memory ordering: none; it orders nothing.
  /// @return the number of running tasks.
  [[nodiscard]] std::size_t tasks_running() const noexcept;

  /// @brief The index of the calling thread among the workers of the pool that owns it.
  ///
  /// Any thread; never blocks.
  /// @return the worker index in [0, thread_count()) if the caller is a worker of some
  ///         thread_pool, otherwise std::nullopt.
  [[nodiscard]] static std::optional<std::size_t> this_worker_index() noexcept;

 private:
  /// @cond INTERNAL
  // task_group claims and publishes tasks directly; an implementation detail, not API.
  friend class task_group;
  /// @endcond

  // Reserves storage for one task: a node for the calling worker's deque, or a cell of the
  // injection queue (blocking while it is full if `blocking`). Returns an empty claim when
  // !blocking and the queue is full or closed. Throws shut_down_error when blocking and closed.
  detail::task_claim claim(bool blocking);
  // Makes a claimed, constructed task runnable and wakes a worker if one is needed. noexcept.
  void publish(detail::task_claim claim) noexcept;
  // Gives back a claim whose construction threw.
  void abandon(detail::task_claim claim) noexcept;
  // True if the calling thread is one of this pool's workers.
  [[nodiscard]] bool on_own_worker() const noexcept;
  // Runs queued tasks on the calling worker until `group` has nothing pending (task_group::wait()).
  void help_while_pending(detail::group_state& group) noexcept;
  bool wait_idle_until(detail::deadline deadline);

  // Queues `f`. Between claim() and publish() the claimed slot holds up every later task of the
  // injection queue (it is FIFO), so only a move runs there: a copy (an lvalue `f`), which may be
  // slow or may even submit to this pool itself, is made before the claim. An rvalue is moved
  // into the slot directly, so that a refused submission leaves it with the caller.
  //
  // Under TSan annotations (detail/tsan.hpp) the callable is queued inside a detail::tsan_task,
  // whose end releases the group's and the pool's tokens; with annotations off, `f` itself is.
  template <class F>
  bool enqueue(F&& f, detail::group_state* group, bool blocking) {
    if constexpr (std::is_lvalue_reference_v<F>) {
      // may throw: nothing is claimed yet; `f` is untouched anyway
      detail::small_task copy = make_task(f, group);
      return enqueue_in_place(std::move(copy), group, blocking);
    } else {
      return enqueue_in_place(std::forward<F>(f), group, blocking);
    }
  }

  template <class F>
  detail::small_task make_task(F&& f, [[maybe_unused]] const detail::group_state* group) {
    if constexpr (detail::k_tsan_annotations) {
      return detail::small_task(detail::tsan_task<std::decay_t<F>>(std::forward<F>(f), group, this));
    } else {
      return detail::small_task(std::forward<F>(f));
    }
  }

  template <class F>
  bool enqueue_in_place(F&& f, detail::group_state* group, bool blocking) {
    const detail::task_claim reserved = claim(blocking);
    if (reserved.slot == nullptr) {
      return false;
    }
    // TSan only. pairs with: the release of the slot's previous user (the small_task ops that
    // ran or moved its last task; see detail/small_task.hpp), so our writes below follow its reads.
    FLOWPOOL_TSAN_ACQUIRE(reserved.slot->tsan_token());
    if constexpr (std::is_same_v<std::remove_cvref_t<F>, detail::small_task>) {
      static_cast<detail::small_task&>(*reserved.slot) = std::move(f);  // noexcept relocation
    } else {
      try {
        if constexpr (detail::k_tsan_annotations) {
          reserved.slot->emplace(detail::tsan_task<std::decay_t<F>>(std::forward<F>(f), group, this));
        } else {
          reserved.slot->emplace(std::forward<F>(f));
        }
      } catch (...) {
        abandon(reserved);
        throw;
      }
    }
    reserved.slot->group = group;  // always: the slot may hold a stale pointer from its last use
    if (group != nullptr) {
      group->add_one();
    }
    // TSan only. pairs with: the acquire of the small_task op that moves or runs the task, on the
    // worker; everything this thread did before the call happens-before the task starts.
    FLOWPOOL_TSAN_RELEASE(reserved.slot->tsan_token());
    publish(reserved);
    return true;
  }

  std::unique_ptr<detail::pool_impl> m_impl;
};

}  // namespace flowpool
