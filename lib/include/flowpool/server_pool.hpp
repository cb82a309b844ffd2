/// @file
/// @brief flowpool::server_pool: servers with a fixed number of slots each, one OS thread per slot,
/// all taking requests from one shared bounded queue.
#pragma once

#include <flowpool/bounded_queue.hpp>
#include <flowpool/detail/thread_start.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace flowpool {

/// @brief Which slot of which server a handler runs on. Both indices are 0-based.
struct slot_id {
  std::size_t server = 0;  ///< The server, in `[0, servers)`.
  std::size_t slot = 0;    ///< The slot within its server, in `[0, slots_per_server)`.

  /// @brief Member-wise equality. Any thread; never throws.
  /// @param a one slot id.
  /// @param b the other.
  /// @return true if both the server and the slot match.
  friend constexpr bool operator==(const slot_id& a, const slot_id& b) noexcept = default;
};

/// @brief Configuration of a server_pool: an aggregate, so designated initializers work,
/// e.g. `flowpool::server_pool<req> pool{{.servers = 4, .slots_per_server = 3}, handler}`.
///
/// The constructor rejects a zero `servers`, `slots_per_server` or `queue_capacity`, and a
/// product `servers * slots_per_server` above `k_max_threads`, with `std::invalid_argument`
/// naming the field and the value.
struct server_pool_options {
  /// The most threads (`servers * slots_per_server`) one pool may start. A pool runs one OS
  /// thread per slot, so a larger product is almost certainly a unit mix-up (requests instead of
  /// slots); the limit turns it into an error instead of thousands of threads.
  static constexpr std::size_t k_max_threads = 4096;

  /// The number of servers; at least 1.
  std::size_t servers = 5;
  /// Requests each server serves at once; one OS thread per slot, so the pool runs
  /// `servers * slots_per_server` threads. At least 1.
  std::size_t slots_per_server = 2;
  /// Requests that may wait in the queue; a full queue makes an outside `submit()` block
  /// (backpressure). Follow-ups submitted from handlers are not bounded by it. At least 1.
  std::size_t queue_capacity = 1024;
  /// Prefix of the OS thread names: slot `k` of server `s` is named `NAME-S.K`, where NAME is
  /// this prefix (e.g. `server-3.1`); Linux keeps the first 15 characters.
  std::string name = "server";
  /// Optional: called on the slot's thread with the exception a handler threw, after the request
  /// has been destroyed and before it counts in `stats()` (as handled and failed) and as done
  /// (so before `join()` can return). It must not throw; if it does, that second exception is
  /// dropped (the request still counts as failed once).
  std::function<void(slot_id, std::exception_ptr)> on_error = nullptr;
};

/// @brief Counters of one server: the sums over its slots.
struct server_stats {
  std::uint64_t handled = 0;         ///< Requests whose handler returned or threw (failed included).
  std::uint64_t failed = 0;          ///< Requests whose handler threw.
  std::chrono::nanoseconds busy{0};  ///< Time its slots spent serving finished requests (see slot_stats::busy).
};

/// @brief Counters of one slot.
struct slot_stats {
  slot_id id;                 ///< Which slot.
  std::uint64_t handled = 0;  ///< Requests whose handler returned or threw (failed included).
  std::uint64_t failed = 0;   ///< Requests whose handler threw.
  /// Time spent serving finished requests: the handler call, the request's destruction and
  /// `on_error`.
  std::chrono::nanoseconds busy{0};
  /// All other time since the slot started, mostly waiting for a request (a wait in progress
  /// counts up to the call). `busy + idle` is the slot's age, less a request being served.
  std::chrono::nanoseconds idle{0};
};

/// @brief A snapshot of a server_pool's counters, returned by `server_pool::stats()`. A plain
/// aggregate: copying it or reading it later touches the pool no more.
struct server_pool_stats {
  std::vector<server_stats> servers;      ///< Indexed by server.
  std::vector<slot_stats> slots;          ///< Indexed by `server * slots_per_server + slot`.
  std::size_t queue_high_water_mark = 0;  ///< Largest queue size so far; above capacity only via follow-ups.
  std::size_t queued = 0;                 ///< Requests waiting in the queue at the time of the call.
  std::size_t unfinished = 0;             ///< Requests accepted and not yet done (queued plus running).

  /// @brief Sum of `handled` over all servers. Any thread; never throws.
  /// @return the total number of requests handled (failed ones included).
  [[nodiscard]] std::uint64_t total_handled() const noexcept {
    std::uint64_t sum = 0;
    for (const server_stats& s : servers) {
      sum += s.handled;
    }
    return sum;
  }

  /// @brief Sum of `failed` over all servers. Any thread; never throws.
  /// @return the total number of requests whose handler threw.
  [[nodiscard]] std::uint64_t total_failed() const noexcept {
    std::uint64_t sum = 0;
    for (const server_stats& s : servers) {
      sum += s.failed;
    }
    return sum;
  }

  /// @brief Sum of `busy` over all servers. Any thread; never throws.
  /// @return the total slot-time spent in handlers.
  [[nodiscard]] std::chrono::nanoseconds total_busy() const noexcept {
    std::chrono::nanoseconds sum{0};
    for (const server_stats& s : servers) {
      sum += s.busy;
    }
    return sum;
  }
};

namespace detail {

// Throws std::invalid_argument naming the first bad field of `options`.
void validate_server_pool_options(const server_pool_options& options);

// "<name>-<server>.<slot>", the OS thread name of a slot.
[[nodiscard]] std::string server_pool_thread_name(const std::string& name, slot_id id);

// The pool whose slot runs on this thread (nullptr on every other thread). Set once by the slot
// thread itself and read only by that thread, so it needs no synchronisation; submit() compares
// it with `this` to recognise follow-ups, which must never block.
inline thread_local const void* t_current_server_pool = nullptr;

}  // namespace detail

/// @brief A pool of servers, each with a fixed number of slots; every slot is one OS thread that
/// takes the next request from one shared bounded queue the moment it is free.
///
/// A slot that finishes early takes the next request at once, so fast servers serve more and slow
/// ones fewer without any rebalancing (unlike "batch-then-wait", where a server takes K requests
/// and waits for the slowest). The handler runs on the slot's own thread and is told which server
/// and slot it is, e.g. to use the connection that slot keeps to its server.
///
/// - **Backpressure.** `submit()` from outside blocks while `queue_capacity` requests wait;
///   `try_submit()` and `submit_for()` give up instead.
/// - **Follow-ups.** A handler may submit more requests to its own pool. Such a submit never
///   blocks and is never refused for lack of room, even when the queue is full (it bypasses the
///   capacity), because a slot blocked on a full queue would stop the very threads that drain it.
///   `join()` waits for follow-ups too.
/// - **Failures.** A handler that throws: the request counts as done and as failed for its server
///   (`stats()`), `options.on_error` sees the exception, and the slot goes on serving.
/// - **Shutdown.** After `shutdown()` or `shutdown_now()` every submit, from outside or from a
///   handler, returns `false` and leaves the request with the caller. `shutdown()` lets the slots
///   finish what is queued; `shutdown_now()` hands the queued requests back. Neither waits; the
///   destructor shuts down gracefully, lets the queue drain and joins the threads.
///
/// All members are thread-safe and may be called concurrently from any thread, including from
/// handlers, except where a member says otherwise (`join()` and the destructor). The handler is
/// called concurrently from all slots, so it must be safe to call concurrently. Nothing
/// busy-waits: idle slots sleep in the queue's `get()`.
///
/// **Memory ordering.** Everything a thread did before a `submit` that returned `true`
/// happens-before the handler call for that request. Every handler call, together with the
/// destruction of its request and its `on_error` call, happens-before the return of a `join()`
/// (or successful `join_for()`) that waited for it, and also before `stats()` calls that start
/// after that return. `shutdown()`/`shutdown_now()` happen-before every submit that returns
/// `false` because of them.
///
/// **Lifetime.** The destructor waits for the handlers, which may call any member meanwhile
/// (their submits are refused). Any other thread must have left every member before the
/// destructor starts: destroying the pool while such a thread is inside one is undefined
/// behaviour. `join()`, then destroying the pool at once, is safe: the slot whose `task_done()`
/// released the `join()` may still be returning from it, and every slot goes on to wait in the
/// queue's `get()`, but the destructor shuts the queue down and joins every slot thread before it
/// destroys anything, so no slot outlives the pool's members. An outside thread's `submit()`, by
/// contrast, must have returned before the destructor starts, even if its request has already
/// been handled.
///
/// **Not guaranteed.** Slots take requests from the queue in FIFO order, but they run
/// concurrently, so handlers may start and finish in any order (a slot that took a request may be
/// preempted before its handler starts); with one slot in all, requests are handled in queue
/// order. Which slot gets a request is not specified.
///
/// **Example.** Three servers with two slots each; each slot uses its own connection, and a
/// handler submits follow-ups that `join()` also waits for (`docs/examples/server_requests.cpp`):
/// @snippet server_requests.cpp server_pool
///
/// @tparam Request the request type. It must be nothrow move-constructible: slots move requests
///         out of the queue and could neither retry nor drop one whose move threw. Wrap other
///         types in `std::unique_ptr`.
template <class Request>
class server_pool {
  static_assert(std::is_nothrow_move_constructible_v<Request>,
                "flowpool::server_pool<Request>: Request must be nothrow move-constructible "
                "(wrap it in std::unique_ptr or give it a noexcept move constructor)");

 public:
  /// The request type.
  using request_type = Request;
  /// The handler type: called with the slot it runs on and the request, which it may modify or
  /// move from; the request is destroyed after the call.
  using handler_type = std::function<void(slot_id, Request&)>;

  /// @brief Validates `options`, creates the queue and starts `servers * slots_per_server` slot
  /// threads, named `<name>-<server>.<slot>`.
  ///
  /// Any thread; blocks only to start threads (and, on failure, to join them); allocates.
  /// Memory ordering: the construction happens-before every handler call.
  /// @param options the configuration; see server_pool_options.
  /// @param handler called once per request on the slot that took it; must not be empty.
  /// @throws std::invalid_argument naming the field if `servers`, `slots_per_server` or
  ///         `queue_capacity` is 0, if `servers * slots_per_server` exceeds
  ///         `server_pool_options::k_max_threads`, or if `handler` is empty.
  /// @throws std::system_error if a thread cannot be started: the threads already started are
  ///         shut down and joined first, so nothing is left running.
  /// @throws std::bad_alloc if memory runs out.
  server_pool(server_pool_options options, handler_type handler)
      : m_options(validated(std::move(options))),
        m_handler(checked(std::move(handler))),
        m_queue(m_options.queue_capacity),
        m_slots(m_options.servers * m_options.slots_per_server),
        m_epoch(clock::now()) {
    m_threads.reserve(m_slots.size());  // so push_back below never throws with a live thread in hand
    try {
      for (std::size_t server = 0; server < m_options.servers; ++server) {
        for (std::size_t slot = 0; slot < m_options.slots_per_server; ++slot) {
          const slot_id id{server, slot};
          slot_counters& counters = m_slots[m_threads.size()];
          m_threads.push_back(detail::start_thread(detail::server_pool_thread_name(m_options.name, id),
                                                   [this, id, &counters] { run_slot(id, counters); }));
        }
      }
    } catch (...) {
      m_queue.shutdown();  // the started slots drain nothing (nothing was accepted) and exit
      join_threads();
      throw;
    }
  }

  server_pool(const server_pool&) = delete;             ///< Not copyable.
  server_pool& operator=(const server_pool&) = delete;  ///< Not copyable.
  server_pool(server_pool&&) = delete;                  ///< Not movable: slot threads hold `this`.
  server_pool& operator=(server_pool&&) = delete;       ///< Not movable.

  /// @brief Graceful: as `shutdown()`, then waits until the slots have handled every accepted
  /// request and joins them. Follow-ups that handlers submit meanwhile are refused (their
  /// `submit` returns `false`); call `join()` first to let a finite stream of follow-ups complete.
  ///
  /// Must not be called from one of this pool's handlers (a slot cannot join itself).
  /// Blocks until the queue is drained and every slot thread has exited; never throws.
  /// Memory ordering: every handler call happens-before the destructor returns.
  ~server_pool() {
    m_queue.shutdown();
    join_threads();
  }

  /// @brief Adds a request, blocking while the queue is full (outside callers only).
  ///
  /// Any thread. From outside the pool: blocks while the queue is full and the pool is open.
  /// From one of this pool's handlers: never blocks and ignores the capacity (a follow-up).
  /// May allocate (queue growth).
  /// Memory ordering: this call happens-before the handler call for the request.
  /// @param request the request; moved from only when the call returns `true`.
  /// @return `true` once queued; `false` if the pool is (or becomes, while waiting) shut down.
  /// @throws std::bad_alloc if the queue cannot grow; nothing is queued then.
  [[nodiscard]] bool submit(Request&& request) {
    if (on_own_slot()) {
      return m_queue.force_put(std::move(request));
    }
    return m_queue.put(std::move(request));
  }

  /// @brief Adds a copy of a request, blocking while the queue is full. As the rvalue overload.
  /// @param request the request to copy; never modified.
  /// @return `true` once queued; `false` if the pool is shut down.
  /// @throws whatever Request's copy constructor throws, or std::bad_alloc; nothing is queued then.
  [[nodiscard]] bool submit(const Request& request) {
    if (on_own_slot()) {
      Request copy(request);
      return m_queue.force_put(std::move(copy));
    }
    return m_queue.put(request);
  }

  /// @brief Adds a request if there is room now.
  ///
  /// Any thread; never blocks; may allocate. From one of this pool's handlers it behaves as
  /// `submit()`: a follow-up is never refused for lack of room.
  /// Memory ordering: as `submit()`.
  /// @param request the request; moved from only when the call returns `true`.
  /// @return `false` if the queue is full (outside callers only) or the pool is shut down.
  /// @throws std::bad_alloc if the queue cannot grow; nothing is queued then.
  [[nodiscard]] bool try_submit(Request&& request) {
    if (on_own_slot()) {
      return m_queue.force_put(std::move(request));
    }
    return m_queue.try_put(std::move(request));
  }

  /// @brief Adds a copy of a request if there is room now. As the rvalue overload.
  /// @param request the request to copy; never modified.
  /// @return `false` if the queue is full (outside callers only) or the pool is shut down.
  /// @throws whatever Request's copy constructor throws, or std::bad_alloc; nothing is queued then.
  [[nodiscard]] bool try_submit(const Request& request) {
    if (on_own_slot()) {
      Request copy(request);
      return m_queue.force_put(std::move(copy));
    }
    return m_queue.try_put(request);
  }

  /// @brief Adds a request, waiting at most `timeout` for room.
  ///
  /// Any thread; blocks at most `timeout` (a zero or negative timeout makes one non-blocking try;
  /// one too large to represent waits without limit); may allocate. From one of this pool's
  /// handlers it behaves as `submit()` and never waits.
  /// Memory ordering: as `submit()`.
  /// @param request the request; moved from only when the call returns `true`.
  /// @param timeout the longest time to wait for room.
  /// @return `false` on timeout or shutdown.
  /// @throws std::bad_alloc if the queue cannot grow; nothing is queued then.
  template <class Rep, class Period>
  [[nodiscard]] bool submit_for(Request&& request, const std::chrono::duration<Rep, Period>& timeout) {
    if (on_own_slot()) {
      return m_queue.force_put(std::move(request));
    }
    return m_queue.try_put_for(std::move(request), timeout);
  }

  /// @brief Adds a copy of a request, waiting at most `timeout` for room. As the rvalue overload.
  /// @param request the request to copy; never modified.
  /// @param timeout the longest time to wait for room.
  /// @return `false` on timeout or shutdown.
  /// @throws whatever Request's copy constructor throws, or std::bad_alloc; nothing is queued then.
  template <class Rep, class Period>
  [[nodiscard]] bool submit_for(const Request& request, const std::chrono::duration<Rep, Period>& timeout) {
    if (on_own_slot()) {
      Request copy(request);
      return m_queue.force_put(std::move(copy));
    }
    return m_queue.try_put_for(request, timeout);
  }

  /// @brief Blocks until every accepted request, follow-ups included, has been handled (or handed
  /// back by `shutdown_now()`). Returns at once if nothing is unfinished; may be called repeatedly
  /// and from several threads. With a stream in which every request always submits a follow-up it
  /// never returns.
  ///
  /// Any thread except this pool's own slots; blocks; never allocates.
  /// Memory ordering: see the class description.
  /// @throws std::logic_error if called from one of this pool's handlers (the handler's own
  ///         request is unfinished, so it would wait for itself); nothing changes.
  void join() {
    throw_if_on_own_slot("join");
    m_queue.join();
  }

  /// @brief As `join()`, waiting at most `timeout`.
  ///
  /// Any thread except this pool's own slots; blocks at most `timeout` (zero or negative checks
  /// once; too large waits without limit); never allocates.
  /// @param timeout the longest time to wait.
  /// @return `true` if everything accepted has been handled; `false` on timeout.
  /// @throws std::logic_error if called from one of this pool's handlers; nothing changes.
  template <class Rep, class Period>
  [[nodiscard]] bool join_for(const std::chrono::duration<Rep, Period>& timeout) {
    throw_if_on_own_slot("join_for");
    return m_queue.join_for(timeout);
  }

  /// @brief Graceful shutdown: no new requests (every later submit returns `false`, follow-ups
  /// included); the slots still handle everything already queued, then go idle for good. Wakes
  /// submitters blocked on a full queue (they return `false`). Idempotent; does not wait: use
  /// `join()` to wait for the queued requests, or destroy the pool to also join the threads.
  ///
  /// Any thread, handlers included; never blocks (beyond the queue's mutex); never throws.
  /// Memory ordering: happens-before every submit refused because of it.
  void shutdown() noexcept { m_queue.shutdown(); }

  /// @brief Immediate shutdown: as `shutdown()`, and removes the queued requests that no slot has
  /// started and returns them. Requests already running are not interrupted; `join()` waits for
  /// them. May be called after `shutdown()` to take back what is still queued.
  ///
  /// Any thread, handlers included; never blocks (beyond the queue's mutex); allocates the result.
  /// Memory ordering: the submit of every returned request happens-before the return.
  /// @return the removed requests, oldest first.
  /// @throws std::bad_alloc if the vector cannot be allocated; then nothing changed at all.
  [[nodiscard]] std::vector<Request> shutdown_now() { return m_queue.shutdown_now(); }

  /// @brief A snapshot of the per-server, per-slot and queue counters.
  ///
  /// Any thread; never blocks (beyond the queue's mutex); allocates the result.
  ///
  /// Each slot writes only its own counters (on its own cache line); this call reads them with
  /// relaxed loads, so a slot never waits for a reader and a reader never waits for a slot. Each
  /// value is exact at some instant during the call, but the values are not one consistent cut:
  /// a request that finishes during the call may already count in `busy` and not yet in
  /// `handled`. Once the pool is quiet (e.g. after `join()` returned; see the class description)
  /// the snapshot is exact: `handled`, `failed` and `busy` include every finished request.
  /// `idle` includes a wait still in progress, up to the time of the call.
  /// Memory ordering: none of its own (relaxed loads); see the class description for what
  /// `join()` makes visible.
  /// @return the snapshot.
  /// @throws std::bad_alloc if the vectors cannot be allocated.
  [[nodiscard]] server_pool_stats stats() const {
    server_pool_stats out;
    out.servers.resize(m_options.servers);
    out.slots.reserve(m_slots.size());
    for (std::size_t i = 0; i < m_slots.size(); ++i) {
      const slot_counters& c = m_slots[i];
      slot_stats s;
      s.id = slot_id{i / m_options.slots_per_server, i % m_options.slots_per_server};
      // Relaxed: each counter is a single-writer tally that publishes no other data; see above.
      s.handled = c.handled.load(std::memory_order_relaxed);
      s.failed = c.failed.load(std::memory_order_relaxed);
      s.busy = std::chrono::nanoseconds(c.busy_ns.load(std::memory_order_relaxed));
      s.idle = std::chrono::nanoseconds(decode_idle(c.idle_mark.load(std::memory_order_relaxed), now_ns()));
      server_stats& server = out.servers[s.id.server];
      server.handled += s.handled;
      server.failed += s.failed;
      server.busy += s.busy;
      out.slots.push_back(s);
    }
    out.queue_high_water_mark = m_queue.high_water_mark();
    out.queued = m_queue.size();
    out.unfinished = m_queue.unfinished();
    return out;
  }

  /// @brief The number of slot threads, `servers * slots_per_server`. Any thread; never throws.
  /// @return the thread count.
  [[nodiscard]] std::size_t thread_count() const noexcept { return m_slots.size(); }

  /// @brief The options the pool was built with. Any thread; never throws.
  /// @return the options (valid as long as the pool lives).
  [[nodiscard]] const server_pool_options& options() const noexcept { return m_options; }

  /// @brief Whether `shutdown()` or `shutdown_now()` has been called. Any thread; never throws.
  /// @return true once shut down (it never becomes false again).
  [[nodiscard]] bool is_shut_down() const noexcept { return m_queue.is_shut_down(); }

  /// @brief Requests accepted and not yet done (queued plus running), possibly stale by the time
  /// it returns. Any thread; never throws.
  /// @return the unfinished count.
  [[nodiscard]] std::size_t unfinished() const noexcept { return m_queue.unfinished(); }

  /// @brief Whether the calling thread is one of this pool's slots (i.e. inside its handler).
  /// Any thread; never blocks; never throws.
  /// @return true on this pool's slot threads, false everywhere else.
  [[nodiscard]] bool on_own_slot() const noexcept { return detail::t_current_server_pool == this; }

 private:
  using clock = std::chrono::steady_clock;

  // 128, not 64: Intel's adjacent-line prefetcher pulls cache lines in pairs, so 64-byte
  // separation still lets neighbouring slots' counters share traffic.
  static constexpr std::size_t k_cache_line = 128;

  // One slot's counters, on a cache line of their own. Writer: that slot's thread only (plain
  // load-add-store, no read-modify-write needed). Readers: stats(), with relaxed loads.
  struct alignas(k_cache_line) slot_counters {
    std::atomic<std::uint64_t> handled{0};
    std::atomic<std::uint64_t> failed{0};
    std::atomic<std::int64_t> busy_ns{0};
    // Idle time, encoded so that one load gives an exact value even mid-wait (times are ns since
    // m_epoch):  not waiting: 2 * idle_total;  waiting since t: 2 * (idle_before - t) + 1, so
    // that idle(now) = idle_before + (now - t).
    std::atomic<std::int64_t> idle_mark{0};
  };

  static server_pool_options validated(server_pool_options options) {
    detail::validate_server_pool_options(options);
    return options;
  }

  static handler_type checked(handler_type handler) {
    if (!handler) {
      throw std::invalid_argument("flowpool::server_pool: handler must not be empty");
    }
    return handler;
  }

  void throw_if_on_own_slot(const char* what) const {
    if (on_own_slot()) {
      throw std::logic_error(std::string("flowpool::server_pool::") + what +
                             "(): called from one of the pool's own handlers, which would wait for itself");
    }
  }

  [[nodiscard]] std::int64_t now_ns() const noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - m_epoch).count();
  }

  static std::int64_t decode_idle(std::int64_t mark, std::int64_t now) noexcept {
    // Arithmetic shift (C++20): floor(mark / 2), i.e. the stored offset or total.
    const std::int64_t base = mark >> 1;
    const std::int64_t idle = (mark & 1) != 0 ? base + now : base;
    return idle < 0 ? 0 : idle;  // a reader's clock read can trail the writer's by a hair
  }

  void run_slot(slot_id id, slot_counters& mine) noexcept {
    detail::t_current_server_pool = this;
    // This thread is the only writer of `mine`, so it keeps the totals in locals and stores them.
    // Busy and idle partition the slot's life: busy runs from taking a request until it has been
    // destroyed and reported; everything else (waiting, bookkeeping) is idle.
    std::uint64_t handled = 0;
    std::uint64_t failed = 0;
    std::int64_t busy = 0;
    std::int64_t idle = 0;
    std::int64_t wait_start = now_ns();
    for (;;) {
      // Relaxed (here and below): single-writer tallies read only by stats(), which accepts any
      // recent value; a joiner is ordered after them by task_done() -> join(), not by these stores.
      mine.idle_mark.store(2 * (idle - wait_start) + 1, std::memory_order_relaxed);
      std::optional<Request> request = m_queue.get();  // sleeps while the queue is empty
      const std::int64_t start = now_ns();
      idle += start - wait_start;
      mine.idle_mark.store(2 * idle, std::memory_order_relaxed);
      if (!request) {
        break;  // shut down and drained
      }
      std::exception_ptr error;
      try {
        m_handler(id, *request);
      } catch (...) {
        error = std::current_exception();
      }
      request.reset();  // the request is gone before join() can return
      const bool threw = error != nullptr;
      if (threw) {
        report(id, std::move(error));
      }
      const std::int64_t end = now_ns();
      busy += end - start;
      mine.busy_ns.store(busy, std::memory_order_relaxed);
      if (threw) {
        mine.failed.store(++failed, std::memory_order_relaxed);
      }
      mine.handled.store(++handled, std::memory_order_relaxed);
      m_queue.task_done();  // pairs with: join() (the queue's mutex orders everything above before it)
      wait_start = end;
    }
    detail::t_current_server_pool = nullptr;
  }

  void report(slot_id id, std::exception_ptr error) const noexcept {
    if (!m_options.on_error) {
      return;
    }
    try {
      m_options.on_error(id, std::move(error));
    } catch (...) {  // documented: on_error must not throw; a second failure has nowhere to go
    }
  }

  void join_threads() noexcept {
    for (std::thread& t : m_threads) {
      if (t.joinable()) {
        t.join();
      }
    }
  }

  const server_pool_options m_options;
  const handler_type m_handler;
  bounded_queue<Request> m_queue;
  std::vector<slot_counters> m_slots;  // one per slot thread, index server * slots_per_server + slot
  const clock::time_point m_epoch;     // origin of the slots' nanosecond timestamps
  std::vector<std::thread> m_threads;  // written only by the constructor and destructor
};

}  // namespace flowpool
