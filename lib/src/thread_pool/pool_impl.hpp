// Internal: the state and worker loop behind flowpool::thread_pool.
//
// Layout (who writes what):
//   worker            one per thread; its deque, its counters (written only by it, read relaxed by
//                     stats() and acquire by the quiescence check), its node free-list (owner-only)
//                     and a remote-free stack other workers push returned nodes onto.
//   injection queue   bounded MPMC ring, tasks from outside the pool (see injection_queue.hpp).
//   m_sleepers        event count the workers park on; m_searching counts workers looking for work.
//   m_space           event count outside producers park on while the injection queue is full.
//   idle waiters      wait_idle() callers: a mutex + condition variable, woken by workers that run
//                     out of work while m_idle_waiters != 0.
//
// Idle detection without a shared counter per task: each worker counts the tasks it spawned and
// the tasks it completed (single-writer counters, no RMW); the injection queue's enqueue position
// counts tasks accepted from outside. The pool is quiescent when the completed counts, read first,
// equal the spawned + accepted counts, read afterwards (see quiescent()).
#pragma once

#include "common/atomics.hpp"
#include "thread_pool/chase_lev_deque.hpp"
#include "thread_pool/event_count.hpp"
#include "thread_pool/injection_queue.hpp"

#include <flowpool/detail/config.hpp>
#include <flowpool/detail/deadline.hpp>
#include <flowpool/detail/task.hpp>
#include <flowpool/thread_pool.hpp>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace flowpool::detail {

class pool_impl;
class worker;

// A task spawned on a worker: the deque holds pointers to these. Nodes are recycled: a node
// belongs to the worker that allocated it and returns to that worker after it ran (through the
// owner's local list, or its remote-free stack when another worker ran it), so steady-state
// spawning allocates nothing.
struct alignas(k_cache_line) task_node {
  task work;
  task_node* next = nullptr;  // free-list link (local or remote)
  task_node* all = nullptr;   // every node of the owner, for deletion; owner-only
  worker* owner = nullptr;
};

// A counter written by one thread (no RMW: a load and a store), read by others.
class owned_counter {
 public:
  // Owner only. `order` is release where a reader relies on what happened before the increment.
  void add(std::uint64_t n, std::memory_order order = std::memory_order_relaxed) noexcept {
    // relaxed load: only this thread writes the counter.
    m_value.store(m_value.load(std::memory_order_relaxed) + n, order);
  }
  [[nodiscard]] std::uint64_t load(std::memory_order order) const noexcept { return m_value.load(order); }

 private:
  atomic<std::uint64_t> m_value{0};
};

class worker {
 public:
  worker(pool_impl& pool, std::size_t index);
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;
  ~worker();

  pool_impl& pool;
  const std::size_t index;
  chase_lev_deque<task_node*> deque;

  // Counters: written only by this worker, on their own cache line.
  struct alignas(k_cache_line) counters {
    owned_counter spawned;    // release: read by quiescent() after completions (see there)
    owned_counter completed;  // release: publishes the task's effects to wait_idle()
    // relaxed: tasks execute() took on (run or skipped; not dropped). started - completed is the
    // number of this worker's tasks running now (more than 1 while a task_group::wait() helps).
    owned_counter started;
    owned_counter stolen;  // relaxed: statistics
    owned_counter steal_attempts;
    owned_counter parks;
    owned_counter failed;
    owned_counter busy_ns;
    owned_counter skipped;  // relaxed: statistics (tasks of cancelled groups, also in `completed`)
  } stats;

  // Owner-only state.
  task_node* free_nodes = nullptr;
  task_node* all_nodes = nullptr;
  std::uint64_t rng;
  std::uint64_t injected_position = 0;  // position of the last task taken from the injection queue
  int spin_limit = 64;                  // rounds the next idle spin phase may take (see idle_loop())
  std::chrono::steady_clock::time_point busy_since{};
  // False while on_thread_stop runs: claim() from this worker then refuses (shut_down_error, or
  // false from try_post), since nothing would run a task pushed onto this deque any more.
  bool accepting = true;

  // Nodes of this worker returned by other workers (Treiber stack: any thread pushes, the owner
  // takes the whole stack with one exchange, so there is no ABA).
  alignas(k_cache_line) atomic<task_node*> remote_free{nullptr};

  std::thread thread;
};

class pool_impl {
 public:
  explicit pool_impl(pool_options options);
  pool_impl(const pool_impl&) = delete;
  pool_impl& operator=(const pool_impl&) = delete;
  ~pool_impl();

  [[nodiscard]] std::size_t thread_count() const noexcept { return m_workers.size(); }

  task_claim claim(worker* self, bool blocking);
  void publish(worker* self, task_claim claim) noexcept;
  void abandon(worker* self, task_claim claim) noexcept;

  void help_while_pending(worker& self, group_state& group) noexcept;
  bool wait_quiescent(deadline until);
  void shutdown(bool on_own_worker) noexcept;
  std::size_t shutdown_now(worker* self) noexcept;
  [[nodiscard]] pool_stats stats() const;

  // A snapshot of the tasks accepted and not yet ended: those a worker has started (running)
  // and the rest (queued). See thread_pool::tasks_queued().
  struct task_counts {
    std::uint64_t queued = 0;
    std::uint64_t running = 0;
  };
  [[nodiscard]] task_counts counts() const noexcept;

  static worker* current_worker() noexcept;

 private:
  friend class worker;

  enum class found : std::uint8_t { nothing, node, injected };

  enum class start_verdict : std::uint8_t { pending, run, abort };

  void start_workers();
  void stop_and_join() noexcept;
  void worker_main(worker& self) noexcept;
  // Runs on_thread_start on `self`, reports to the constructor and waits for its verdict. Sets
  // `hook_ran` when the hook returned normally (or there is none). Returns true if the worker
  // may take tasks, false if the pool is not starting (a start hook threw, or a thread failed).
  bool start_worker(worker& self, bool& hook_ran) noexcept;
  // Runs on_thread_stop (if `run_hook`) with claims refused, then forgets the worker thread.
  void finish_worker(worker& self, bool run_hook) noexcept;
  bool idle_loop(worker& self) noexcept;
  found find_work(worker& self, task_node*& node, task& injected, bool& contended) noexcept;
  void run_found(worker& self, found kind, task_node* node, task& injected) noexcept;
  void execute(worker& self, task& work) noexcept;
  void drop(task& work) noexcept;
  void report_failure(worker& self, std::exception_ptr error) noexcept;
  // `outside`: the task went into the injection queue (full fence), not a worker's deque.
  void notify_work(bool outside) noexcept;
  void notify_idle_waiters() noexcept;
  void leave_searching_found_work() noexcept;
  [[nodiscard]] bool work_visible() const noexcept;
  [[nodiscard]] bool quiescent() const noexcept;
  [[nodiscard]] bool stopping_now() const noexcept;

  task_node* acquire_node(worker& self);
  // `self`: the calling worker, or nullptr on an outside thread.
  static void release_node(worker* self, task_node* node) noexcept;

  std::string m_name;
  std::function<void(std::exception_ptr)> m_on_error;
  std::function<void(std::size_t)> m_on_thread_start;
  std::function<void(std::size_t)> m_on_thread_stop;

  // Start handshake between the constructor and the workers (all under m_start_mutex, no atomics):
  // each worker runs its start hook, counts itself in m_start_arrived (recording the first hook
  // exception), then waits until the constructor sets m_start_verdict.
  std::mutex m_start_mutex;
  std::condition_variable m_start_cv;
  std::size_t m_start_arrived = 0;
  std::exception_ptr m_start_error;
  start_verdict m_start_verdict = start_verdict::pending;

  std::vector<std::unique_ptr<worker>> m_workers;
  injection_queue m_injection;
  const std::uint64_t m_space_check_mask;  // see run_found()
  const bool m_oversubscribed;             // more workers than CPUs: idle spinning yields (idle_loop())

  event_count m_sleepers;
  alignas(k_cache_line) atomic<std::uint32_t> m_searching{0};
  event_count m_space;
  // Outside producers that found the queue full and have not yet claimed a cell; try_post()
  // refuses while it is non-zero. Written only on the blocking path; read by try_post().
  alignas(k_cache_line) atomic<std::uint32_t> m_blocked_producers{0};

  alignas(k_cache_line) atomic<std::uint32_t> m_idle_waiters{0};
  std::mutex m_idle_mutex;
  std::condition_variable m_idle_cv;

  alignas(k_cache_line) atomic<bool> m_stop_now{false};  // shutdown_now(): drop instead of run
  atomic<bool> m_exit{false};                            // workers leave their loop
  atomic<std::uint64_t> m_dropped{0};                    // tasks discarded by shutdown_now()
  atomic<std::uint64_t> m_dropped_reported{0};           // of those, returned by shutdown_now() calls
  std::mutex m_join_mutex;                               // serialises joining
};

}  // namespace flowpool::detail
