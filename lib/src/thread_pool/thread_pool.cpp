#include "thread_pool/pool_impl.hpp"

#include "common/cpu_limit.hpp"

#include <flowpool/detail/thread_start.hpp>
#include <flowpool/thread_pool.hpp>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

namespace flowpool {
namespace detail {
namespace {

// The worker the calling thread is, if any (of any pool).
thread_local worker* t_worker = nullptr;

// Idle loop tuning. A worker that runs out of work spins (rounds of: injection queue + one pass
// over the victims, then a back-off) before parking. How many rounds adapts per worker: a spin
// phase that found work after at least one empty round (so spinning saved a park and a wake-up)
// doubles the worker's limit, up to k_spin_rounds; one that ended in parking halves it, down to
// k_min_spin_rounds. So workers that keep finding work soon after running dry (fork-join) spin as
// before, and a pool that receives one task at a time, with idle gaps longer than any spin, parks
// almost at once instead of burning ~50 us of CPU per task (issue 13). The last quarter of a phase
// yields instead of pausing; so does all of it when the pool has more workers than CPUs, where a
// paused spinner would hold a core that a preempted busy worker needs.
constexpr int k_spin_rounds = 64;
constexpr int k_min_spin_rounds = 2;
constexpr int k_pauses_per_round = 32;
// A spin phase counts as having paid off only if it found work this soon: a spinner that was
// preempted (a loaded machine) and found work when it ran again says nothing about spinning, and
// growing its limit then would keep it searching, which defers other workers' wake-ups, longer.
constexpr std::chrono::microseconds k_spin_payoff{100};
// help_while_pending(): the rounds after which a helper waiting for its group yields.
constexpr int k_yield_after = 48;

// shutdown_now() waiting for a producer to publish a claimed injection cell: yields first, then
// sleeps this long per check.
constexpr int k_drain_yields = 64;
constexpr std::chrono::microseconds k_drain_backoff{100};

std::uint64_t next_random(std::uint64_t& state) noexcept {  // xorshift64*
  state ^= state >> 12;
  state ^= state << 25;
  state ^= state >> 27;
  return state * 0x2545F4914F6CDD1DULL;
}

std::size_t resolve_threads(std::size_t threads) {
  if (threads == 0) {
    return thread_pool::default_thread_count();
  }
  if (threads > thread_pool::k_max_threads) {
    throw std::invalid_argument("flowpool::pool_options::threads must be at most " +
                                std::to_string(thread_pool::k_max_threads) + ", got " + std::to_string(threads));
  }
  return threads;
}

std::size_t checked_capacity(std::size_t capacity) {
  if (capacity == 0 || capacity > thread_pool::k_max_queue_capacity) {
    throw std::invalid_argument("flowpool::pool_options::queue_capacity must be in [1, " +
                                std::to_string(thread_pool::k_max_queue_capacity) + "], got " +
                                std::to_string(capacity));
  }
  return capacity;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// worker

worker::worker(pool_impl& owner_pool, std::size_t worker_index)
    : pool(owner_pool), index(worker_index), rng(0x9E3779B97F4A7C15ULL * (worker_index + 1)) {}

worker::~worker() {
  // Every node is back on a free list by now (the pool is quiescent and joined); delete them all.
  task_node* n = all_nodes;
  while (n != nullptr) {
    task_node* next = n->all;
    delete n;
    n = next;
  }
}

// ---------------------------------------------------------------------------------------------
// construction and destruction

pool_impl::pool_impl(pool_options options)
    : m_name(std::move(options.name)),
      m_on_error(std::move(options.on_error)),
      m_on_thread_start(std::move(options.on_thread_start)),
      m_on_thread_stop(std::move(options.on_thread_stop)),
      m_injection(checked_capacity(options.queue_capacity)),
      m_space_check_mask(options.queue_capacity >= 64 ? 31 : 0),
      m_oversubscribed(resolve_threads(options.threads) > available_cpus()) {
  const std::size_t threads = resolve_threads(options.threads);
  init_asymmetric_fences();  // before any worker starts (see atomics.hpp)
  m_workers.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i) {
    m_workers.push_back(std::make_unique<worker>(*this, i));
  }
  start_workers();
}

void pool_impl::start_workers() {
  std::size_t started = 0;
  try {
    for (; started < m_workers.size(); ++started) {
      worker& w = *m_workers[started];
      w.thread = start_thread(m_name + "-" + std::to_string(started), [this, &w] { worker_main(w); });
    }
  } catch (...) {
    // No task can have been accepted yet (the constructor has not returned): stop and join the
    // workers that did start (they wait for the verdict, run their stop hooks and exit), then
    // let the exception propagate.
    {
      std::lock_guard lock(m_start_mutex);
      m_start_verdict = start_verdict::abort;
    }
    m_start_cv.notify_all();
    m_injection.close();
    stop_and_join();
    throw;
  }
  // Every worker has started: wait until each has run its start hook, then tell them whether
  // the pool starts. No worker takes a task before the verdict, so a failed start runs none.
  std::exception_ptr error;
  {
    std::unique_lock lock(m_start_mutex);
    m_start_cv.wait(lock, [this] { return m_start_arrived == m_workers.size(); });
    error = m_start_error;
    m_start_verdict = error ? start_verdict::abort : start_verdict::run;
  }
  m_start_cv.notify_all();
  if (error) {
    m_injection.close();
    stop_and_join();
    std::rethrow_exception(error);  // the start hook's own exception (documented)
  }
}

bool pool_impl::start_worker(worker& self, bool& hook_ran) noexcept {
  std::exception_ptr error;
  if (m_on_thread_start) {
    try {
      m_on_thread_start(self.index);
    } catch (...) {
      error = std::current_exception();
    }
  }
  hook_ran = !error;
  std::unique_lock lock(m_start_mutex);
  if (error && !m_start_error) {
    m_start_error = error;  // the first failure is the one the constructor rethrows
  }
  ++m_start_arrived;
  m_start_cv.notify_all();  // the constructor waits for the last arrival
  m_start_cv.wait(lock, [this] { return m_start_verdict != start_verdict::pending; });
  return m_start_verdict == start_verdict::run;
}

void pool_impl::finish_worker(worker& self, bool run_hook) noexcept {
  self.accepting = false;
  if (run_hook && m_on_thread_stop) {
    try {
      m_on_thread_stop(self.index);
    } catch (...) {  // an exception from on_thread_stop is dropped (documented)
    }
  }
  t_worker = nullptr;
}

pool_impl::~pool_impl() {
  shutdown(false);
}

void pool_impl::stop_and_join() noexcept {
  // seq_cst: read by parking workers in their re-check, after their prepare_wait() (Dekker);
  // wake_all() then wakes those already asleep.
  m_exit.store(true, std::memory_order_seq_cst);
  m_sleepers.wake_all();
  std::lock_guard lock(m_join_mutex);
  for (auto& w : m_workers) {
    if (w->thread.joinable()) {
      w->thread.join();
    }
  }
}

void pool_impl::shutdown(bool on_own_worker) noexcept {
  m_injection.close();
  m_space.wake_all();  // outside producers blocked on a full queue now fail with shut_down_error
  if (on_own_worker) {
    return;  // cannot wait for, or join, ourselves; the destructor joins
  }
  (void)wait_quiescent(deadline::never());
  stop_and_join();
}

std::size_t pool_impl::shutdown_now(worker* self) noexcept {
  // seq_cst: read by workers before running each task; a task that passed the check before this
  // store may still run (it had "started").
  m_stop_now.store(true, std::memory_order_seq_cst);
  m_injection.close();
  m_space.wake_all();
  task t;
  std::uint64_t position = 0;
  // Drain the injection queue: every accepted task is popped, by us or by a worker (which drops
  // it too). A cell claimed before close() but not yet published is waited for: its producer is
  // inside the task's constructor (try_post() builds in the cell), which may take any time, so
  // after a few yields this backs off to short sleeps instead of spinning.
  int misses = 0;
  while (m_injection.consumed() < m_injection.accepted()) {
    if (m_injection.try_pop(t, position)) {
      drop(t);
      misses = 0;
    } else if (++misses < k_drain_yields) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(k_drain_backoff);
    }
  }
  // Drain every deque from the top, as a thief.
  for (auto& w : m_workers) {
    for (;;) {
      const steal_result<task_node*> r = w->deque.steal();
      if (r.outcome == steal_outcome::empty) {
        break;
      }
      if (r.outcome == steal_outcome::success) {
        drop(r.value->work);
        release_node(self, r.value);
      }
    }
  }
  notify_idle_waiters();
  if (self == nullptr) {
    stop_and_join();  // workers drop what running tasks pushed meanwhile, then exit
  }
  // Each dropped task is counted by exactly one call: the first call to get here after the drop
  // takes it. Every drop precedes this read: our own drops in program order, the workers' through
  // the join (an outside call), so concurrent outside calls' returns add up to pool_stats::dropped.
  // relaxed (both): counts only; the RMW chain on m_dropped_reported hands each drop out once.
  const std::uint64_t total = m_dropped.load(std::memory_order_relaxed);
  std::uint64_t reported = m_dropped_reported.load(std::memory_order_relaxed);
  while (reported < total && !m_dropped_reported.compare_exchange_weak(reported, total, std::memory_order_relaxed)) {
  }
  return reported < total ? static_cast<std::size_t>(total - reported) : 0;
}

// ---------------------------------------------------------------------------------------------
// submission

worker* pool_impl::current_worker() noexcept {
  return t_worker;
}

task_node* pool_impl::acquire_node(worker& self) {
  task_node* n = self.free_nodes;
  if (n == nullptr) {
    // acquire, pairs with: the release CAS of the workers that returned these nodes.
    n = self.remote_free.exchange(nullptr, std::memory_order_acquire);
    if (n == nullptr) {
      n = new task_node;
      n->owner = &self;
      n->all = self.all_nodes;
      self.all_nodes = n;
      return n;
    }
  }
  self.free_nodes = n->next;
  return n;
}

void pool_impl::release_node(worker* self, task_node* node) noexcept {
  worker& owner = *node->owner;
  if (&owner == self) {
    node->next = owner.free_nodes;
    owner.free_nodes = node;
    return;
  }
  // Another worker (or shutdown_now() on an outside thread): push onto the owner's remote stack.
  node->next = owner.remote_free.load(std::memory_order_relaxed);  // relaxed: the CAS validates it
  // release, pairs with: acquire_node()'s exchange; publishes node->next (and the emptied task).
  while (!owner.remote_free.compare_exchange_weak(node->next, node, std::memory_order_release,
                                                  std::memory_order_relaxed)) {
  }
}

task_claim pool_impl::claim(worker* self, bool blocking) {
  if (self != nullptr) {
    if (!self->accepting) {  // on_thread_stop is running: nothing would run the task
      if (blocking) {
        throw shut_down_error();
      }
      return {};
    }
    // relaxed: a hint; a task pushed after shutdown_now() started is dropped when the worker exits.
    if (m_stop_now.load(std::memory_order_relaxed)) {
      if (blocking) {
        throw shut_down_error();
      }
      return {};
    }
    task_node* n = acquire_node(*self);
    try {
      self->deque.make_room();
    } catch (...) {
      release_node(self, n);
      throw;
    }
    return {&n->work, n, true};
  }
  // try_post() does not overtake an outside producer blocked on a full queue: otherwise
  // try_post() callers that keep the queue above half capacity (where the blocked are woken)
  // could keep it asleep for ever. relaxed: a hint; a stale zero lets one try_post() in ahead of
  // the blocked producer, never more than once per try_post() call, and the producer's wake-up
  // depends only on the queue draining, which the refusals let happen.
  if (!blocking && m_blocked_producers.load(std::memory_order_relaxed) != 0) {
    return {};
  }
  // A producer counts itself as blocked from its first `full` until it has claimed a cell (or
  // the queue closed), including the retries after each wake-up, so that try_post() callers
  // cannot take the room it was woken for.
  class blocked_count {
   public:
    explicit blocked_count(atomic<std::uint32_t>& counter) noexcept : count(counter) {}
    void enter() noexcept {
      if (!counted) {
        count.fetch_add(1, std::memory_order_relaxed);  // relaxed: a hint for try_post(), see above
        counted = true;
      }
    }
    blocked_count(const blocked_count&) = delete;
    blocked_count& operator=(const blocked_count&) = delete;
    ~blocked_count() {
      if (counted) {
        count.fetch_sub(1, std::memory_order_relaxed);  // relaxed: as enter()
      }
    }

   private:
    atomic<std::uint32_t>& count;
    bool counted = false;
  } blocked{m_blocked_producers};
  for (;;) {
    injection_queue::cell* c = nullptr;
    injection_queue::claim_status s = m_injection.try_claim(c);
    if (s == injection_queue::claim_status::full && blocking) {
      blocked.enter();
      // Park until a consumer frees a cell (or the queue closes). pairs with: the consumer's
      // seq store + fence_seq_cst() + has_waiters() in run_found(); and close() + wake_all().
      const event_count::key k = m_space.prepare_wait();
      s = m_injection.try_claim(c);
      if (s == injection_queue::claim_status::full) {
        if (m_injection.confirmed_full()) {
          m_space.commit_wait(k);
        } else {
          m_space.cancel_wait();  // a consumer is emptying our cell right now
          std::this_thread::yield();
        }
        continue;
      }
      m_space.cancel_wait();
    }
    switch (s) {
      case injection_queue::claim_status::claimed:
        return {&c->item, c, false};
      case injection_queue::claim_status::closed:
        if (blocking) {
          throw shut_down_error();
        }
        return {};
      case injection_queue::claim_status::full:
        return {};
    }
  }
}

void pool_impl::publish(worker* self, task_claim claim) noexcept {
  if (claim.local) {
    auto* node = static_cast<task_node*>(claim.handle);
    // release: must precede the push. quiescent() reads completions first and spawn counts
    // second; a thief that completes this task before we counted it would make a running pool
    // look idle. pairs with: quiescent()'s acquire loads.
    self->stats.spawned.add(1, std::memory_order_release);
    self->deque.push(node);
    notify_work(false);
  } else {
    m_injection.publish(*static_cast<injection_queue::cell*>(claim.handle));
    notify_work(true);
  }
}

void pool_impl::abandon(worker* self, task_claim claim) noexcept {
  if (claim.local) {
    self->deque.cancel_room();
    release_node(self, static_cast<task_node*>(claim.handle));
  } else {
    // The cell was claimed (and counted as accepted): publish it empty; a worker skips it.
    claim.slot->reset();
    claim.slot->group = nullptr;
    m_injection.publish(*static_cast<injection_queue::cell*>(claim.handle));
    notify_work(true);
  }
}

// Called after a task became visible (deque push or injection publish). Wakes a parked worker
// only if no worker is searching (a searcher will find the task, or wake another worker when it
// stops searching and still sees work) and some worker is parked or about to park.
void pool_impl::notify_work(bool outside) noexcept {
  // The notifier's half of two Dekker pairs (event_count.hpp): the task is published, now read
  // the sleeper state.
  //  1. With a parker: pairs with prepare_wait() + the searching decrement + the heavy fence in
  //     idle_loop(). Every path to sleep passes the heavy fence before its last re-check, so a
  //     push a searcher missed is seen there, or this load sees the sleeper. The light half of
  //     the asymmetric pair (atomics.hpp) suffices for that: a compiler barrier where membarrier
  //     is available.
  //  2. With the last searcher leaving to run a task: pairs with leave_searching_found_work()'s
  //     seq_cst decrement + fence + work_visible(). That side has no heavy fence (it runs on
  //     every wake-up), so only a full fence here makes it a Dekker pair: either this load sees
  //     m_searching == 0 and we wake a sleeper ourselves, or the leaver's scan sees our task and
  //     wakes one. Outside producers pay it (one locked instruction beside the CAS that claimed
  //     the cell): their task would otherwise wait, with workers asleep, until a running task
  //     ends. A worker's push keeps the light fence (fork-join's hot path): if the leaver's scan
  //     misses it, the task waits in the pusher's own deque until a worker next looks there: the
  //     pusher itself when its current task ends or waits in a group, any worker that finishes a
  //     task and searches, or a parker, whose heavy-fenced re-check sees it. Delayed, not lost.
  if (outside) {
    fence_seq_cst();
  } else {
    asymmetric_fence_light();
  }
  if (m_searching.load(k_fenced) == 0 && m_sleepers.has_waiters()) {
    m_sleepers.notify_one();
  }
}

// ---------------------------------------------------------------------------------------------
// running tasks

void pool_impl::report_failure(worker& self, std::exception_ptr error) noexcept {
  self.stats.failed.add(1);  // relaxed: statistics
  if (m_on_error) {
    try {
      m_on_error(std::move(error));
    } catch (...) {  // an exception from on_error itself is dropped (documented)
    }
  }
}

void pool_impl::execute(worker& self, task& work) noexcept {
  group_state* const group = work.group;
  if (stopping_now()) {
    drop(work);
    return;
  }
  // relaxed: a statistic; counts() reads it after an acquire load of `completed`, whose release
  // store below comes after this one, so it never reads fewer starts than completions.
  self.stats.started.add(1);
  // Skip a task of a cancelled group (or of a group created inside one); see should_skip().
  if (group_state::should_skip(group)) {
    work.reset();
    self.stats.skipped.add(1);  // relaxed: statistics
  } else if (work) {
    const group_state* const outer = t_running_group;
    t_running_group = group;
    try {
      work.run_once();
    } catch (...) {
      if (group != nullptr) {
        group->capture(std::current_exception());
      } else {
        report_failure(self, std::current_exception());
      }
    }
    t_running_group = outer;
  }
  if (group != nullptr) {
    group->complete_one();
  }
  // release, pairs with: quiescent()'s acquire loads; publishes the task's effects to wait_idle().
  self.stats.completed.add(1, std::memory_order_release);
}

void pool_impl::drop(task& work) noexcept {
  group_state* const group = work.group;
  work.reset();  // a submit() task's promise dies here: its future reports broken_promise
  if (group != nullptr) {
    group->capture(std::make_exception_ptr(shut_down_error()));
    group->complete_one();
  }
  // release, pairs with: quiescent()'s acquire load.
  m_dropped.fetch_add(1, std::memory_order_release);
}

bool pool_impl::stopping_now() const noexcept {
  // relaxed: a hint checked per task; shutdown_now() drains whatever slips past it.
  return m_stop_now.load(std::memory_order_relaxed);
}

pool_impl::found pool_impl::find_work(worker& self, task_node*& node, task& injected, bool& contended) noexcept {
  if (m_injection.try_pop(injected, self.injected_position)) {
    return found::injected;
  }
  const std::size_t n = m_workers.size();
  if (n == 1) {
    return found::nothing;
  }
  const std::size_t start = static_cast<std::size_t>(next_random(self.rng) % n);
  for (std::size_t k = 0; k < n; ++k) {
    worker& victim = *m_workers[(start + k) % n];
    if (&victim == &self) {
      continue;
    }
    self.stats.steal_attempts.add(1);  // relaxed: statistics
    const steal_result<task_node*> r = victim.deque.steal();
    if (r.outcome == steal_outcome::success) {
      self.stats.stolen.add(1);  // relaxed: statistics
      node = r.value;
      return found::node;
    }
    if (r.outcome == steal_outcome::lost_race) {
      contended = true;  // work was there a moment ago: the caller retries before parking
    }
  }
  return found::nothing;
}

void pool_impl::run_found(worker& self, found kind, task_node* node, task& injected) noexcept {
  if (kind == found::node) {
    execute(self, node->work);
    release_node(&self, node);
  } else {
    // A cell was freed: wake the outside producers blocked on a full queue, if any, once the
    // queue has drained to half its capacity (hysteresis: each wake-up then admits a batch
    // instead of one task per futex round trip). The queue keeps draining while workers are
    // free, so the threshold is always crossed; a producer that prepares below it finds room
    // in its re-check. pairs with: prepare_wait() in claim() (Dekker; the seq store is the
    // condition).
    //
    // With a capacity of at least 64 only every 32nd position checks (the fence is the costly
    // part). A producer sleeps only when confirmed_full() saw capacity tasks between the dequeue
    // position D it read and its own; every pop of a later position has its CAS after that read
    // in m_dequeue's modification order, hence its fence after the producer's in the seq_cst
    // order, so it sees the waiter. The positions in [D + capacity/2, D + capacity) pop with at
    // most capacity/2 left, and among those capacity/2 >= 32 consecutive positions one checks.
    if ((self.injected_position & m_space_check_mask) == 0) {
      fence_seq_cst();
      if (m_space.has_waiters() && m_injection.size_estimate() <= m_injection.capacity() / 2) {
        m_space.notify_all();
      }
    }
    execute(self, injected);
  }
}

void pool_impl::worker_main(worker& self) noexcept {
  t_worker = &self;  // before the start hook: this_worker_index() works inside it
  self.deque.bind_owner(std::this_thread::get_id());
  bool hook_ran = false;
  if (!start_worker(self, hook_ran)) {
    finish_worker(self, hook_ran);
    return;
  }
  self.busy_since = std::chrono::steady_clock::now();
  task injected;
  for (;;) {
    if (std::optional<task_node*> n = self.deque.pop()) {
      execute(self, (*n)->work);
      release_node(&self, *n);
      continue;
    }
    // The injection queue before searching: draining it is normal work, not an idle transition.
    if (m_injection.try_pop(injected, self.injected_position)) {
      run_found(self, found::injected, nullptr, injected);
      continue;
    }
    if (!idle_loop(self)) {
      break;
    }
  }
  // Exit (after shutdown / shutdown_now): anything still in our deque was pushed by a task that
  // ran as shutdown_now() drained; drop it so its futures and groups are released.
  while (std::optional<task_node*> n = self.deque.pop()) {
    drop((*n)->work);
    release_node(&self, *n);
  }
  finish_worker(self, true);  // after the last task (run or dropped) of this worker
}

void pool_impl::leave_searching_found_work() noexcept {
  // seq_cst: part of the sleeper protocol. If we were the last searcher, a task pushed while we
  // searched may have skipped its wake-up because we were searching: wake a sleeper to take it,
  // but only if there is such a task to take. Waking one unconditionally (as before issue 13)
  // made every single post wake two workers: the first took the task and woke the second, which
  // found nothing, spun and parked again (2 extra futex calls and a membarrier per post).
  // pairs with: notify_work()'s fence + m_searching load (Dekker, see the case 2 there).
  if (m_searching.fetch_sub(1, std::memory_order_seq_cst) == 1) {
    fence_seq_cst();
    if (m_sleepers.has_waiters() && work_visible()) {
      m_sleepers.notify_one();
    }
  }
}

void pool_impl::notify_idle_waiters() noexcept {
  // pairs with: the fetch_add + fence in wait_quiescent() (Dekker: our completion counter store
  // came before this fence; the waiter re-checks quiescent() after its fence).
  fence_seq_cst();
  if (m_idle_waiters.load(k_fenced) != 0) {
    { std::lock_guard lock(m_idle_mutex); }  // a waiter between its check and its wait has the lock
    m_idle_cv.notify_all();
  }
}

bool pool_impl::work_visible() const noexcept {
  if (m_injection.looks_non_empty()) {
    return true;
  }
  for (const auto& w : m_workers) {
    if (w->deque.looks_non_empty()) {
      return true;
    }
  }
  return false;
}

// Entered when the worker's own deque is empty. Returns false when the worker must exit.
bool pool_impl::idle_loop(worker& self) noexcept {
  const auto now = std::chrono::steady_clock::now();
  self.stats.busy_ns.add(
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(now - self.busy_since).count()));
  m_searching.fetch_add(1, std::memory_order_seq_cst);  // seq_cst: see notify_work()
  notify_idle_waiters();
  task injected;
  for (;;) {
    const int limit = self.spin_limit;
    const int yield_from = m_oversubscribed ? 0 : limit - limit / 4;
    const auto spin_start = std::chrono::steady_clock::now();
    for (int round = 0; round < limit; ++round) {
      // relaxed: re-checked with ordering before parking; here it only ends spinning early.
      if (m_exit.load(std::memory_order_relaxed)) {
        m_searching.fetch_sub(1, std::memory_order_relaxed);  // relaxed: the pool is exiting
        return false;
      }
      task_node* node = nullptr;
      bool contended = false;
      const found kind = find_work(self, node, injected, contended);
      if (kind != found::nothing) {
        const auto found_at = std::chrono::steady_clock::now();
        if (round > 0 && found_at - spin_start < k_spin_payoff) {
          self.spin_limit = std::min(k_spin_rounds, 2 * limit);  // spinning paid off
        }
        leave_searching_found_work();
        self.busy_since = found_at;
        run_found(self, kind, node, injected);
        return true;
      }
      if (contended) {
        continue;  // lost a race: work exists, retry at once
      }
      if (round < yield_from) {
        for (int i = 0; i < k_pauses_per_round; ++i) {
          cpu_relax();
        }
      } else {
        std::this_thread::yield();
      }
    }
    // Park. We stop searching; prepare_wait() announces us (seq_cst RMW + fence); the heavy fence;
    // then every source is re-checked. pairs with: notify_work() (fence, then m_searching and
    // has_waiters()): either the re-check sees the task or the pusher sees the decremented
    // m_searching and our announcement.
    //
    // The heavy fence (a membarrier: a few microseconds, plus an IPI to every CPU running one of
    // our threads) is only for pushes by other workers, whose fence is the light one. If our
    // announcement made every worker a waiter, no other worker is running a task: each must
    // first leave the event count with an acquire RMW that reads from our increment's release
    // sequence (event_count::prepare_wait(waiting)), so our decrement of m_searching, sequenced
    // before the increment, happens-before all its later pushes and their m_searching loads see
    // it. Outside producers' fence is full, and prepare_wait()'s fence_seq_cst() pairs with it.
    // So the last worker to park, the common case of an idle pool, skips the membarrier. (The
    // decrement comes before the announcement for this reason; in the other order the pusher's
    // light fence would not be ordered after it. Either order is a Dekker pair with a full or
    // heavy fence on our side: the pusher that reads m_searching == 0 then reads has_waiters()
    // after its fence, and one that reads our stale count is matched by our re-check.)
    m_searching.fetch_sub(1, std::memory_order_seq_cst);
    std::uint32_t waiting = 0;
    const event_count::key key = m_sleepers.prepare_wait(waiting);
    if (waiting < m_workers.size()) {
      asymmetric_fence_heavy();  // pairs with: asymmetric_fence_light() in notify_work()
    }
    if (m_exit.load(k_fenced) || work_visible()) {
      m_sleepers.cancel_wait();
      m_searching.fetch_add(1, std::memory_order_seq_cst);  // seq_cst: see notify_work()
      continue;
    }
    self.spin_limit = std::max(k_min_spin_rounds, limit / 2);  // spun for nothing: spin less
    notify_idle_waiters();
    self.stats.parks.add(1);  // relaxed: statistics
    m_sleepers.commit_wait(key);
    m_searching.fetch_add(1, std::memory_order_seq_cst);  // woken: search again
  }
}

void pool_impl::help_while_pending(worker& self, group_state& group) noexcept {
  int idle_rounds = 0;
  task injected;
  while (group.pending_acquire() != 0) {
    if (std::optional<task_node*> n = self.deque.pop()) {
      execute(self, (*n)->work);
      release_node(&self, *n);
      idle_rounds = 0;
      continue;
    }
    task_node* node = nullptr;
    bool contended = false;
    const found kind = find_work(self, node, injected, contended);
    if (kind != found::nothing) {
      run_found(self, kind, node, injected);
      idle_rounds = 0;
      continue;
    }
    // The group's remaining tasks run on other workers. Back off: pause, then yield.
    if (++idle_rounds < k_yield_after) {
      for (int i = 0; i < k_pauses_per_round; ++i) {
        cpu_relax();
      }
    } else {
      std::this_thread::yield();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// quiescence

// True if every task accepted so far has finished (or was dropped).
//
// Completion counts are read first, submission counts second, all with acquire loads. Each
// counted completion's submission happens-before it (a task is spawned before it runs; the
// spawn counter is incremented before the push), so every submission of a counted completion is
// visible to the later submission reads: completions <= submissions, and equality means every
// visible submission has completed. A task accepted before the caller started waiting is
// visible; its children were spawned before it completed, so they are visible too (induction).
bool pool_impl::quiescent() const noexcept {
  std::uint64_t done = m_dropped.load(std::memory_order_acquire);  // pairs with: drop()
  for (const auto& w : m_workers) {
    done += w->stats.completed.load(std::memory_order_acquire);  // pairs with: execute()
  }
  std::uint64_t submitted = m_injection.accepted();
  for (const auto& w : m_workers) {
    submitted += w->stats.spawned.load(std::memory_order_acquire);  // pairs with: publish()
  }
  return done == submitted;
}

bool pool_impl::wait_quiescent(deadline until) {
  if (quiescent()) {
    return true;
  }
  // seq_cst + fence: the waiter's half of the Dekker pattern with notify_idle_waiters().
  m_idle_waiters.fetch_add(1, std::memory_order_seq_cst);
  fence_seq_cst();
  bool idle = false;
  {
    std::unique_lock lock(m_idle_mutex);
    idle = until.wait(m_idle_cv, lock, [this] { return quiescent(); });
  }
  m_idle_waiters.fetch_sub(1, std::memory_order_relaxed);  // relaxed: a stale count costs a notify
  return idle;
}

pool_stats pool_impl::stats() const {
  pool_stats s;
  s.workers.reserve(m_workers.size());
  // relaxed throughout: statistics; each value is exact, the set is not a single snapshot.
  for (const auto& w : m_workers) {
    worker_stats ws;
    ws.executed = w->stats.completed.load(std::memory_order_relaxed);
    ws.stolen = w->stats.stolen.load(std::memory_order_relaxed);
    ws.steal_attempts = w->stats.steal_attempts.load(std::memory_order_relaxed);
    ws.parks = w->stats.parks.load(std::memory_order_relaxed);
    ws.busy_time = std::chrono::nanoseconds(w->stats.busy_ns.load(std::memory_order_relaxed));
    ws.skipped = w->stats.skipped.load(std::memory_order_relaxed);
    s.skipped += ws.skipped;
    s.workers.push_back(ws);
    s.submitted += w->stats.spawned.load(std::memory_order_relaxed);
    s.completed += ws.executed;
    s.failed += w->stats.failed.load(std::memory_order_relaxed);
  }
  s.submitted += m_injection.accepted();
  s.dropped = m_dropped.load(std::memory_order_relaxed);
  s.queue_high_water = m_injection.high_water();
  return s;
}

// Read in the order quiescent() reads: ends first (acquire), then starts, then acceptances. Each
// worker's started store precedes its completed release store, so started >= completed per
// worker. A started task's acceptance need not be visible yet to the later relaxed reads (the
// start store is relaxed), so `queued` is clamped at zero: exact when the pool is quiescent or
// held still, approximate while it runs.
pool_impl::task_counts pool_impl::counts() const noexcept {
  std::uint64_t ended = m_dropped.load(std::memory_order_acquire);  // pairs with: drop()
  task_counts c;
  for (const auto& w : m_workers) {
    const std::uint64_t done = w->stats.completed.load(std::memory_order_acquire);  // pairs with: execute()
    // relaxed: ordered after the acquire load above, which synchronises with the completed store
    // that follows this worker's started store of the same task, so begun >= done.
    const std::uint64_t begun = w->stats.started.load(std::memory_order_relaxed);
    ended += done;
    c.running += begun - done;
  }
  std::uint64_t accepted = m_injection.accepted();  // acquire, as in quiescent()
  for (const auto& w : m_workers) {
    // acquire, pairs with: publish()'s release store, as in quiescent(): every ended task's
    // spawn is then counted, so accepted >= ended.
    accepted += w->stats.spawned.load(std::memory_order_acquire);
  }
  const std::uint64_t outstanding = accepted > ended ? accepted - ended : 0;
  c.queued = outstanding > c.running ? outstanding - c.running : 0;
  return c;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// thread_pool

shut_down_error::~shut_down_error() = default;

namespace {
pool_options make_options(std::size_t threads) {
  pool_options options;
  options.threads = threads;
  return options;
}
}  // namespace

thread_pool::thread_pool() : thread_pool(pool_options{}) {}

thread_pool::thread_pool(std::size_t threads) : thread_pool(make_options(threads)) {}

thread_pool::thread_pool(pool_options options) : m_impl(std::make_unique<detail::pool_impl>(std::move(options))) {}

thread_pool::~thread_pool() {
  if (on_own_worker()) {
    // Joining would wait for this very thread: it would hang in wait_quiescent() (this task never
    // completes) or deadlock in join(). Say why before terminating, as documented.
    std::fputs(
        "flowpool: a thread_pool was destroyed from one of its own worker threads (a task deleted or "
        "destroyed the pool that runs it); the destructor would wait for itself. Calling std::terminate().\n",
        stderr);
    std::terminate();
  }
  // m_impl's destructor shuts down gracefully and joins.
}

detail::task_claim thread_pool::claim(bool blocking) {
  detail::worker* self = detail::pool_impl::current_worker();
  if (self != nullptr && &self->pool != m_impl.get()) {
    self = nullptr;  // a worker of another pool submits as an outside thread
  }
  return m_impl->claim(self, blocking);
}

void thread_pool::publish(detail::task_claim claim) noexcept {
  m_impl->publish(claim.local ? detail::pool_impl::current_worker() : nullptr, claim);
}

void thread_pool::abandon(detail::task_claim claim) noexcept {
  m_impl->abandon(claim.local ? detail::pool_impl::current_worker() : nullptr, claim);
}

bool thread_pool::on_own_worker() const noexcept {
  const detail::worker* self = detail::pool_impl::current_worker();
  return self != nullptr && &self->pool == m_impl.get();
}

void thread_pool::help_while_pending(detail::group_state& group) noexcept {
  m_impl->help_while_pending(*detail::pool_impl::current_worker(), group);
}

bool thread_pool::wait_idle_until(detail::deadline deadline) {
  if (on_own_worker()) {
    throw std::logic_error("flowpool::thread_pool::wait_idle() called on one of the pool's own workers");
  }
  return m_impl->wait_quiescent(deadline);
}

void thread_pool::shutdown() noexcept {
  m_impl->shutdown(on_own_worker());
}

std::size_t thread_pool::shutdown_now() noexcept {
  return m_impl->shutdown_now(on_own_worker() ? detail::pool_impl::current_worker() : nullptr);
}

std::size_t thread_pool::default_thread_count() noexcept {
  return std::min(detail::available_cpus(), k_max_threads);
}

std::size_t thread_pool::thread_count() const noexcept {
  return m_impl->thread_count();
}

pool_stats thread_pool::stats() const {
  return m_impl->stats();
}

std::size_t thread_pool::tasks_queued() const noexcept {
  return static_cast<std::size_t>(m_impl->counts().queued);
}

std::size_t thread_pool::tasks_running() const noexcept {
  return static_cast<std::size_t>(m_impl->counts().running);
}

std::optional<std::size_t> thread_pool::this_worker_index() noexcept {
  const detail::worker* self = detail::pool_impl::current_worker();
  if (self == nullptr) {
    return std::nullopt;
  }
  return self->index;
}

}  // namespace flowpool
