/// @file
/// @brief flowpool::server_pool: servers with a fixed number of slots each, one OS thread per slot,
/// all taking requests from one shared bounded queue.
#pragma once

#include <flowpool/detail/deadline.hpp>
#include <flowpool/detail/fleet.hpp>
#include <flowpool/detail/ring_buffer.hpp>
#include <flowpool/detail/thread_start.hpp>
#include <flowpool/detail/unique_function.hpp>
#include <flowpool/latency_histogram.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <list>
#include <mutex>
#include <new>
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
  std::size_t server = 0;  ///< The server, in `[0, server_count())`.
  std::size_t slot = 0;    ///< The slot within its server.

  /// @brief Member-wise equality. Any thread; never throws.
  /// @param a one slot id.
  /// @param b the other.
  /// @return true if both the server and the slot match.
  friend constexpr bool operator==(const slot_id& a, const slot_id& b) noexcept = default;
};

/// @brief Throw it (or a type derived from it) from a handler to say "this request can never
/// succeed, do not retry it": the request fails at once, whatever `max_attempts` allows. For the
/// server's ejection it counts like a success: the server answered, the request was bad, so it
/// resets the server's consecutive failures (and a probe that throws it brings the server back).
class permanent_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  /// @brief Copies, as exceptions are copied. @param other the error to copy.
  permanent_error(const permanent_error& other) = default;
  /// @brief Copy assignment. @param other the error to copy. @return `*this`.
  permanent_error& operator=(const permanent_error& other) = default;
  ~permanent_error() override;  ///< Out of line: one vtable, in the library.
};

/// @brief The life of one server of a server_pool (see `server_pool::state()`).
enum class server_state : unsigned char {
  serving,   ///< Its slots take requests.
  ejected,   ///< It failed `eject_after` attempts in a row: its slots sleep until the ejection ends, then one probes.
  draining,  ///< `drain_server()` was called: its slots finish what they run, then exit.
  drained,   ///< Every slot has exited; the index stays valid and is never reused.
};

/// @brief The name of a state, e.g. "serving". Any thread; never throws.
/// @param state the state.
/// @return a static string.
[[nodiscard]] constexpr const char* to_string(server_state state) noexcept {
  switch (state) {
    case server_state::serving:
      return "serving";
    case server_state::ejected:
      return "ejected";
    case server_state::draining:
      return "draining";
    case server_state::drained:
      return "drained";
  }
  return "unknown";
}

/// @brief Why a request failed for good (`request_failure::reason`).
enum class failure_reason : unsigned char {
  attempts_exhausted,  ///< Its last allowed attempt (`max_attempts`) failed.
  permanent_error,     ///< A handler threw a `flowpool::permanent_error`.
  retry_budget,        ///< An attempt failed and the pool's retry budget was spent, so it was not retried.
  shut_down,           ///< An attempt failed after `shutdown_now()`, which stops all retries.
  out_of_memory,       ///< An attempt failed and its retry could not be queued (`std::bad_alloc`).
};

/// @brief What `server_pool_callbacks::on_failure` is told about a request that failed for good.
struct request_failure {
  slot_id slot;              ///< The slot of the last attempt.
  std::size_t attempts = 0;  ///< How many attempts were made (1-based count, at least 1).
  std::exception_ptr error;  ///< What the last attempt threw.
  failure_reason reason = failure_reason::attempts_exhausted;  ///< Why it was not retried.
};

/// @brief The latest time a request may still be *taken from the queue* (not: finished). A request
/// still queued at its deadline is never run: it goes to `server_pool_callbacks::on_expired`.
struct queue_deadline {
  /// The deadline; `time_point::max()` means none.
  std::chrono::steady_clock::time_point at = std::chrono::steady_clock::time_point::max();

  /// @brief A deadline `timeout` from now. Any thread; never throws.
  /// @param timeout how long the request may wait in the queue.
  /// @return the deadline.
  template <class Rep, class Period>
  [[nodiscard]] static queue_deadline in(const std::chrono::duration<Rep, Period>& timeout) noexcept {
    // A zero, negative or NaN timeout: already passed; one too large to represent: none.
    return queue_deadline{detail::deadline::after(timeout).as_time_point()};
  }
};

/// @brief Configuration of a server_pool: an aggregate, so designated initializers work,
/// e.g. `flowpool::server_pool<req> pool{{.servers = 4, .slots_per_server = 3}, handler}`.
///
/// The constructor checks every field and throws `std::invalid_argument` naming the first bad one
/// and its value: a zero `servers`, `slots_per_server`, `queue_capacity` or `max_attempts`; a
/// product `servers * slots_per_server` above `k_max_threads`; a negative `eject_for`, or a zero
/// one when `eject_after` is set; a negative `max_eject_for`, or a positive one below `eject_for`;
/// `eject_for`, `max_eject_for`, `retry_budget_window` or `queue_timeout` above a year;
/// `max_ejected_percent` above 100; a negative or NaN retry budget; a non-positive
/// `retry_budget_window`; a negative `queue_timeout`, or a positive one without
/// `server_pool_callbacks::on_expired`.
///
/// **Fleet policy, and what was chosen where the model (Envoy's outlier detection, Finagle's retry
/// budget) leaves a choice:**
/// - A retried request goes to the *front* of the queue (behind earlier retries), marked to avoid the server that
/// failed
///   it last. A slot of that server does not take it while any other server is `serving` (busy or
///   not); when none is, any server may. Only the last failing server is avoided.
/// - The retry budget is a sliding window of `retry_budget_window`, in ten steps: retries within it
///   may reach `retry_budget_min_per_second * window + retry_budget_ratio * requests` (requests =
///   first attempts accepted in the window). A failed attempt that finds it spent fails for good
///   (`failure_reason::retry_budget`). The defaults are Finagle's and Envoy's: 20 %, 10 per second,
///   10 s. `retry_budget_ratio = INFINITY` turns the budget off.
/// - After `shutdown()` (or `shutdown_now()`) no server is ejected any more and the ejected ones
///   serve again: the queue drains with every server, a failed attempt still retried elsewhere, so
///   a dead fleet ends in at most `max_attempts` attempts per request instead of one probe per
///   ejection period (Envoy's panic mode, applied while draining).
/// - `max_ejected_percent` caps the share of servers that may be ejected at once (at least one may
///   always be). The default, 100, is no cap: a request here waits rather than fails, so ejecting a
///   whole failing fleet turns the outage into backpressure, and the probes bring servers back. A
///   request that fails on every server (a poison request) should throw `permanent_error`, which
///   counts towards no ejection; lower the cap if such failures cannot be told apart.
struct server_pool_options {
  /// The most live slot threads one pool may run (over all servers, added ones included). A pool
  /// runs one OS thread per slot, so a larger count is almost certainly a unit mix-up (requests
  /// instead of slots); the limit turns it into an error instead of thousands of threads.
  static constexpr std::size_t k_max_threads = 4096;

  /// The number of servers the pool starts with; at least 1 (`add_server()` adds more later).
  std::size_t servers = 5;
  /// Requests each of the initial servers serves at once; one OS thread per slot. At least 1.
  std::size_t slots_per_server = 2;
  /// Requests that may wait in the queue; a full queue makes an outside `submit()` block
  /// (backpressure). Follow-ups submitted from handlers and retries are not bounded by it. At least 1.
  std::size_t queue_capacity = 1024;
  /// Prefix of the OS thread names: slot `k` of server `s` is named `NAME-S.K`, where NAME is
  /// this prefix (e.g. `server-3.1`); Linux keeps the first 15 characters.
  std::string name = "server";
  /// Optional: called on the slot's thread, once per request that failed for good, with the
  /// exception of its last attempt, after `server_pool_callbacks::on_failure` (which also gets the
  /// request) and before the request counts as done (so before `join()` can return). It must not
  /// throw; if it does, that second exception is dropped (the request still counts as failed once).
  std::function<void(slot_id, std::exception_ptr)> on_error = nullptr;

  /// Total tries per request: 1 means no retry. At least 1.
  std::size_t max_attempts = 1;
  /// Consecutive failed attempts (a `permanent_error` is not one) that eject a server; 0 = never.
  std::size_t eject_after = 0;
  /// The first ejection of a server; each further ejection without a successful probe in between
  /// lasts twice as long as the one before, up to `max_eject_for` (by default 32 times this).
  /// Not negative; positive if `eject_after` is set; at most a year.
  std::chrono::milliseconds eject_for{1000};
  /// The longest one ejection may last (Envoy's `max_ejection_time`): the doubling stops there.
  /// 0 = `32 * eject_for`. If set, at least `eject_for` and at most a year (it may exceed 32 times
  /// `eject_for`: the doubling goes on until it reaches the cap). Lower it when outages
  /// are short next to `32 * eject_for`: a server that is back waits out the rest of its period
  /// (half of it on average) before its probe, so the cap bounds that wait, at the cost of one
  /// probe (one attempt of a request, which is then retried) per `max_eject_for` while it is down.
  std::chrono::milliseconds max_eject_for{0};
  /// At most this share (in percent, 0 to 100) of the servers that are not draining may be
  /// ejected at once; at least one server may always be. 100 = no cap (see above).
  std::size_t max_ejected_percent = 100;
  /// Retries may add at most this share of the requests accepted in the recent window (0.2 =
  /// 20 %). At least 0; `INFINITY` disables the budget.
  double retry_budget_ratio = 0.2;
  /// ... plus this many retries per second of the window, whatever the request rate. At least 0.
  double retry_budget_min_per_second = 10.0;
  /// The window the budget looks back over. Positive.
  std::chrono::milliseconds retry_budget_window{10000};
  /// Default limit on how long a request may wait in the queue, from the moment it enters it
  /// (after any wait for room), before a slot takes it; 0 = none; at most a year. The deadline is fixed at the submit
  /// and bounds every attempt, so a retry still queued past it expires too. A request past it is never run but goes to
  /// `on_expired`. A per-request `queue_deadline` given to `submit()` overrides it.
  std::chrono::milliseconds queue_timeout{0};
};

/// @brief Counters of one server: the sums over its slots, plus its state.
struct server_stats {
  std::uint64_t handled = 0;                   ///< Attempts its handler calls made (returned or threw).
  std::uint64_t failed = 0;                    ///< Attempts whose handler threw (a permanent_error included).
  std::uint64_t retried = 0;                   ///< Its failed attempts whose request was queued again.
  std::uint64_t ejections = 0;                 ///< How many times it was ejected (a failed probe counts again).
  std::size_t slots = 0;                       ///< Its slot count.
  server_state state = server_state::serving;  ///< Its state at the time of the call.
  std::chrono::nanoseconds busy{0};            ///< Time its slots spent serving finished attempts.
  latency_histogram handler_time;              ///< The duration of each handler call, returned or thrown.
  /// The length of its latest ejection (0 if it was never ejected): `eject_for`, doubled per
  /// ejection in a row, capped at `max_eject_for`.
  std::chrono::nanoseconds last_ejection{0};

  /// @brief Attempts that returned normally. Any thread; never throws.
  /// @return `handled - failed`.
  [[nodiscard]] std::uint64_t succeeded() const noexcept { return handled - failed; }
};

/// @brief Counters of one slot.
struct slot_stats {
  slot_id id;                 ///< Which slot.
  std::uint64_t handled = 0;  ///< Attempts its handler calls made (returned or threw).
  std::uint64_t failed = 0;   ///< Attempts whose handler threw.
  /// Time spent serving finished attempts: the handler call, and for a request's last attempt its
  /// destruction and the failure callbacks (an expired request's callback counts too).
  std::chrono::nanoseconds busy{0};
  /// All other time since the slot started, mostly waiting for a request (a wait in progress
  /// counts up to the call). `busy + idle` is the slot's age, less an attempt in progress.
  std::chrono::nanoseconds idle{0};
};

/// @brief A snapshot of a server_pool's counters, returned by `server_pool::stats()`. A plain
/// aggregate: copying it or reading it later touches the pool no more.
///
/// Conservation: `accepted == succeeded + final_failures + expired + returned + unfinished`, exactly
/// once the pool is quiet (and at every instant up to the requests in flight).
struct server_pool_stats {
  std::vector<server_stats> servers;  ///< Indexed by server (drained servers included).
  /// In server order, then slot order; with every server at `slots_per_server` slots, slot `k` of
  /// server `s` is at index `s * slots_per_server + k`. A drained server keeps its slots' entries.
  std::vector<slot_stats> slots;
  std::size_t queue_high_water_mark =
      0;                             ///< Largest queue size so far; above capacity only via follow-ups and retries.
  std::size_t queued = 0;            ///< Requests waiting in the queue (retries included) at the time of the call.
  std::size_t unfinished = 0;        ///< Requests accepted and not yet done (queued plus running).
  std::uint64_t accepted = 0;        ///< Requests accepted by a submit (each counts once, however often it is tried).
  std::uint64_t succeeded = 0;       ///< Requests whose last attempt returned normally.
  std::uint64_t final_failures = 0;  ///< Requests that failed for good (reported to on_failure / on_error).
  std::uint64_t expired = 0;         ///< Requests that passed their queue deadline and were never run.
  std::uint64_t returned = 0;        ///< Requests handed back by `shutdown_now()`.
  std::uint64_t retry_budget_refusals = 0;  ///< Failed attempts not retried because the budget was spent.
  latency_histogram queue_wait;             ///< Per attempt: from entering the queue to leaving it for a handler.

  /// @brief Sum of `handled` over all servers. Any thread; never throws.
  /// @return the total number of attempts (handler calls).
  [[nodiscard]] std::uint64_t total_handled() const noexcept {
    std::uint64_t sum = 0;
    for (const server_stats& s : servers) {
      sum += s.handled;
    }
    return sum;
  }

  /// @brief Sum of `failed` over all servers. Any thread; never throws.
  /// @return the total number of attempts whose handler threw.
  [[nodiscard]] std::uint64_t total_failed() const noexcept {
    std::uint64_t sum = 0;
    for (const server_stats& s : servers) {
      sum += s.failed;
    }
    return sum;
  }

  /// @brief Sum of `retried` over all servers. Any thread; never throws.
  /// @return the total number of retries queued.
  [[nodiscard]] std::uint64_t total_retried() const noexcept {
    std::uint64_t sum = 0;
    for (const server_stats& s : servers) {
      sum += s.retried;
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

  /// @brief The handler-time distribution over all servers. Any thread; never throws.
  /// @return the merged histogram.
  [[nodiscard]] latency_histogram total_handler_time() const noexcept {
    latency_histogram sum;
    for (const server_stats& s : servers) {
      sum.merge(s.handler_time);
    }
    return sum;
  }
};

template <class Request, class SlotState>
class server_pool;

/// @brief The callbacks for requests that end without success. Each may be empty, and each may be
/// any callable, move-only ones included. Both run on the slot thread that ended the request,
/// before it counts as done, and so concurrently for different requests (guard what they share);
/// neither may throw (a throw is dropped).
/// @tparam Request the pool's request type.
template <class Request>
struct server_pool_callbacks {
  /// Called once for a request that failed for good, with the request itself (by reference, still
  /// alive: e.g. to dead-letter it) and why. Then `server_pool_options::on_error`, if set.
  detail::unique_function<void(const request_failure&, Request&)> on_failure{};
  /// Called once for a request that passed its queue deadline and was never run. Required when a
  /// queue deadline is used: an expired request is never thrown away unseen.
  detail::unique_function<void(Request&)> on_expired{};
};

/// @brief What a handler is told about the attempt it serves, and how it reaches its pool. Lives
/// on the slot's stack for one handler call: do not keep it.
/// @tparam Request the pool's request type.
/// @tparam SlotState the pool's per-slot state type (`void` for none).
template <class Request, class SlotState = void>
class slot_context {
 public:
  /// The pool type.
  using pool_type = server_pool<Request, SlotState>;

  /// @brief The slot this attempt runs on. Never throws.
  /// @return the slot id.
  [[nodiscard]] slot_id slot() const noexcept { return m_slot; }
  /// @brief Which attempt this is: 1 for the first, up to `max_attempts`. Never throws.
  /// @return the 1-based attempt number.
  [[nodiscard]] std::size_t attempt() const noexcept { return m_attempt; }
  /// @brief Whether this attempt is the probe of an ejected server (its result decides whether
  /// the server serves again). Never throws.
  /// @return true for a probe.
  [[nodiscard]] bool is_probe() const noexcept { return m_probe; }
  /// @brief The pool. Never throws.
  /// @return the pool that runs this handler.
  [[nodiscard]] pool_type& pool() const noexcept { return m_pool; }
  /// @brief This slot's own state, built on this thread when the slot started. Never throws.
  /// Only for a pool with a `SlotState`.
  /// @return the state.
  [[nodiscard]] std::add_lvalue_reference_t<SlotState> state() const noexcept requires(!std::is_void_v<SlotState>) {
    return *m_state;
  }
  /// @brief Submits a follow-up: as `pool().submit()` from a handler, it never blocks and is never
  /// refused for lack of room, only after shutdown.
  /// @param request the request; moved from only when the call returns `true`.
  /// @return `false` if the pool is shut down.
  /// @throws std::bad_alloc if the queue cannot grow; nothing is queued then.
  [[nodiscard]] bool submit(Request&& request) { return m_pool.submit(std::move(request)); }
  /// @brief Submits a follow-up with a queue deadline (as `server_pool::submit`).
  /// @param request the request; moved from only when the call returns `true`.
  /// @param deadline the latest time a slot may take it from the queue.
  /// @return `false` if the pool is shut down.
  /// @throws std::invalid_argument if the pool has no `on_expired`; std::bad_alloc; nothing is queued then.
  [[nodiscard]] bool submit(Request&& request, queue_deadline deadline) {
    return m_pool.submit(std::move(request), deadline);
  }
  /// @brief Submits a copy of a follow-up. As the rvalue overload.
  /// @param request the request to copy.
  /// @return `false` if the pool is shut down.
  /// @throws whatever Request's copy constructor throws, or std::bad_alloc; nothing is queued then.
  [[nodiscard]] bool submit(const Request& request) { return m_pool.submit(request); }

  slot_context(const slot_context&) = delete;             ///< Not copyable: it belongs to one call.
  slot_context& operator=(const slot_context&) = delete;  ///< Not copyable.
  slot_context(slot_context&&) = delete;                  ///< Not movable.
  slot_context& operator=(slot_context&&) = delete;       ///< Not movable.
  ~slot_context() = default;                              ///< Trivial.

 private:
  friend class server_pool<Request, SlotState>;
  slot_context(pool_type& pool, slot_id slot, std::size_t attempt, bool probe,
               std::add_pointer_t<SlotState> state) noexcept
      : m_pool(pool), m_slot(slot), m_attempt(attempt), m_probe(probe), m_state(state) {}

  pool_type& m_pool;
  slot_id m_slot;
  std::size_t m_attempt;
  bool m_probe;
  std::add_pointer_t<SlotState> m_state;
};

namespace detail {

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
/// and slot it is, e.g. to use the connection that slot keeps to its server (`SlotState`).
///
/// - **Backpressure.** `submit()` from outside blocks while `queue_capacity` requests wait;
///   `try_submit()` and `submit_for()` give up instead.
/// - **Follow-ups.** A handler may submit more requests to its own pool (`slot_context::submit`).
///   Such a submit never blocks and is never refused for lack of room, even when the queue is full
///   (it bypasses the capacity), because a slot blocked on a full queue would stop the very threads
///   that drain it. `join()` waits for follow-ups too.
/// - **Retries.** A handler that throws fails that attempt. With attempts left (`max_attempts`),
///   a retry budget to spend and no `permanent_error`, the request goes back to the *front* of the
///   queue, avoiding the server that failed it while another server is serving. Otherwise it fails
///   for good: `on_failure` gets the request, then `on_error` the exception, once per request.
/// - **Ejection.** `eject_after` consecutive failed attempts eject a server for `eject_for`
///   (doubling on each ejection in a row, up to `max_eject_for`, by default 32 times `eject_for`):
///   its slots sleep, then exactly one slot takes one request as a probe. A probe that succeeds
///   makes the server `serving` again and resets its ejection time; one that fails ejects it
///   again. While every server is ejected, requests wait in the queue and backpressure applies;
///   nothing is dropped.
/// - **Membership.** `add_server()` starts a new server at any time before shutdown;
///   `drain_server()` lets one finish what it runs and stop. Indices are never reused.
/// - **Queue deadlines.** A request still queued past its deadline (per request, or
///   `queue_timeout`) is never run: it goes to `on_expired` and counts as expired.
/// - **Shutdown.** After `shutdown()` or `shutdown_now()` every submit, from outside or from a
///   handler, returns `false` and leaves the request with the caller. `shutdown()` lets the slots
///   finish what is queued, retries included; `shutdown_now()` hands the queued requests back
///   (retries waiting included) and retries nothing after it. Neither waits; the destructor shuts
///   down gracefully, lets the queue drain and joins the threads.
/// - **Nothing is lost.** Every accepted request ends in exactly one of: succeeded, failed for
///   good (reported), expired (reported), or returned by `shutdown_now()`; `stats()` counts each.
///
/// All members are thread-safe and may be called concurrently from any thread, including from
/// handlers, except where a member says otherwise (`join()` and the destructor). The handler is
/// called concurrently from all slots, so it must be safe to call concurrently. Nothing
/// busy-waits: an idle slot sleeps on its own condition variable. The pool keeps at most one
/// wake-up in flight for new requests: the woken slot, once it has taken a request, wakes the next
/// sleeper while more requests wait, so a burst reaches every slot one hand-off at a time and a
/// stream the busy slots keep up with wakes no one (a retry wakes a slot that may take it).
///
/// **Memory ordering.** All of the pool's state is guarded by one mutex, which gives these
/// happens-before edges: everything a thread did before a `submit` that returned `true`
/// happens-before every attempt's handler call for that request, and each attempt's handler call
/// happens-before the next attempt's. Every handler call, with the destruction of its request and
/// its callbacks, happens-before the return of a `join()` (or successful `join_for()`) that waited
/// for it, and before `stats()` calls that start after that return. `shutdown()`/`shutdown_now()`
/// happen-before every submit that returns `false` because of them. A slot's state is built, used
/// and destroyed on the slot's own thread only.
///
/// **Lifetime.** The destructor waits for the handlers, which may call any member meanwhile
/// (their submits are refused, `add_server()` throws). Any other thread must have left every member
/// before the destructor starts: destroying the pool while such a thread is inside one is
/// undefined behaviour. `join()`, then destroying the pool at once, is safe. An outside thread's
/// `submit()` must have returned before the destructor starts, even if its request has already
/// been handled.
///
/// **Not guaranteed.** Slots take requests in queue order (retries at the front), but they run
/// concurrently, so handlers may start and finish in any order; with one slot in all, requests are
/// handled in queue order. Which slot gets a request is not specified.
///
/// **Example.** Three servers with two slots each; each slot uses its own connection, and a
/// handler submits follow-ups that `join()` also waits for (`docs/examples/server_requests.cpp`):
/// @snippet server_requests.cpp server_pool
///
/// A flaky fleet with retries, ejection and a per-slot connection (`docs/examples/flaky_fleet.cpp`):
/// @snippet flaky_fleet.cpp flaky_fleet
///
/// @tparam Request the request type. It must be nothrow move-constructible: slots move requests
///         in and out of the queue and could neither retry nor drop one whose move threw. Wrap
///         other types in `std::unique_ptr`.
/// @tparam SlotState optional per-slot state (e.g. one connection per slot), built on each slot's
///         thread by the factory given to the constructor and destroyed there when the slot stops;
///         the handler reaches it through `slot_context::state()`. `void` (the default) for none.
template <class Request, class SlotState = void>
class server_pool {
  static_assert(std::is_nothrow_move_constructible_v<Request>,
                "flowpool::server_pool<Request>: Request must be nothrow move-constructible "
                "(wrap it in std::unique_ptr or give it a noexcept move constructor)");
  static_assert(std::is_void_v<SlotState> || std::is_object_v<SlotState>,
                "flowpool::server_pool<Request, SlotState>: SlotState must be void or an object type");

 public:
  /// The request type.
  using request_type = Request;
  /// The per-slot state type (`void` for none).
  using state_type = SlotState;
  /// What a handler is given besides the request.
  using context_type = slot_context<Request, SlotState>;
  /// The simple handler form: the slot it runs on and the request, which it may modify or move
  /// from. A handler may also take `(context_type&, Request&)`, and may be move-only.
  using handler_type = std::function<void(slot_id, Request&)>;
  /// The failure and expiry callbacks.
  using callbacks_type = server_pool_callbacks<Request>;

  /// @brief Validates the options, creates the queue and starts `servers * slots_per_server` slot
  /// threads, named `<name>-<server>.<slot>`; returns once every slot is ready to serve. Only for
  /// a pool without `SlotState`.
  ///
  /// Any thread; blocks only to start threads (and, on failure, to join them); allocates.
  /// Memory ordering: the construction happens-before every handler call.
  /// @param options the configuration; see server_pool_options.
  /// @param handler called once per attempt on the slot that took the request, as
  ///        `handler(slot_id, Request&)` or `handler(context_type&, Request&)`; any callable,
  ///        move-only ones included; must not be empty.
  /// @param callbacks optional failure and expiry callbacks.
  /// @throws std::invalid_argument naming the field for bad options (see server_pool_options),
  ///         or if `handler` is empty.
  /// @throws std::system_error if a thread cannot be started: the threads already started are
  ///         shut down and joined first, so nothing is left running.
  /// @throws std::bad_alloc if memory runs out.
  template <class Handler>
  requires(std::is_void_v<SlotState> && (std::is_null_pointer_v<std::decay_t<Handler>> ||
                                         std::is_invocable_v<std::decay_t<Handler>&, context_type&, Request&> ||
                                         std::is_invocable_v<std::decay_t<Handler>&, slot_id, Request&>))
      server_pool(server_pool_options options, Handler&& handler, callbacks_type callbacks = {})
      : server_pool(std::move(options), std::forward<Handler>(handler), std::move(callbacks), 0) {}

  /// @brief As the constructor above, for a pool with per-slot state: each slot thread first
  /// builds its state with `make_state(slot_id)`, and the constructor returns once all are built.
  /// A state whose construction throws is reported like a thread that fails to start: the other
  /// slots are shut down and joined, and the constructor rethrows that exception.
  /// @param options the configuration; see server_pool_options.
  /// @param make_state called once per slot, on that slot's thread, as `SlotState(slot_id)`, so
  ///        concurrently from the new slots (it must be safe to call concurrently); the state is
  ///        destroyed on the same thread when the slot stops.
  /// @param handler as above; `slot_context::state()` gives it the slot's state.
  /// @param callbacks optional failure and expiry callbacks.
  /// @throws std::invalid_argument, std::system_error, std::bad_alloc as above; and whatever a
  ///         `make_state` call threw.
  template <class Factory, class Handler>
  requires(!std::is_void_v<SlotState> && std::is_invocable_r_v<SlotState, std::decay_t<Factory>&, slot_id> &&
           (std::is_null_pointer_v<std::decay_t<Handler>> ||
            std::is_invocable_v<std::decay_t<Handler>&, context_type&, Request&> ||
            std::is_invocable_v<std::decay_t<Handler>&, slot_id, Request&>))
      server_pool(server_pool_options options, Factory&& make_state, Handler&& handler, callbacks_type callbacks = {})
      : server_pool(std::move(options), std::forward<Handler>(handler), std::move(callbacks), 0) {
    m_make_state = std::forward<Factory>(make_state);
    if (!m_make_state) {
      throw std::invalid_argument("flowpool::server_pool: make_state must not be empty");
    }
    start_initial_servers();
  }

  server_pool(const server_pool&) = delete;             ///< Not copyable.
  server_pool& operator=(const server_pool&) = delete;  ///< Not copyable.
  server_pool(server_pool&&) = delete;                  ///< Not movable: slot threads hold `this`.
  server_pool& operator=(server_pool&&) = delete;       ///< Not movable.

  /// @brief Graceful: as `shutdown()`, then waits until the slots have finished every accepted
  /// request (retries included) and joins every slot thread, those of added servers included.
  /// Follow-ups that handlers submit meanwhile are refused; call `join()` first to let a finite
  /// stream of follow-ups complete.
  ///
  /// Must not be called from one of this pool's handlers (a slot cannot join itself).
  /// Blocks until the queue is drained and every slot thread has exited; never throws.
  /// Memory ordering: every handler call happens-before the destructor returns.
  ~server_pool() {
    m_fleet.shutdown();
    join_all_threads();
  }

  /// @brief Adds a request, blocking while the queue is full (outside callers only).
  ///
  /// Any thread. From outside the pool: blocks while the queue is full and the pool is open.
  /// From one of this pool's handlers: never blocks and ignores the capacity (a follow-up).
  /// May allocate (queue growth).
  /// Memory ordering: this call happens-before the handler call for the request.
  /// @param request the request; moved from only when the call returns `true`.
  /// @param deadline optional: the latest time a slot may take it from the queue (default: the
  ///        pool's `queue_timeout` from now, or none).
  /// @return `true` once queued; `false` if the pool is (or becomes, while waiting) shut down.
  /// @throws std::invalid_argument if `deadline` is set but the pool has no `on_expired`; nothing is queued.
  /// @throws std::bad_alloc if the queue cannot grow; nothing is queued then.
  [[nodiscard]] bool submit(Request&& request, queue_deadline deadline = {}) {
    return enqueue(std::move(request), deadline, clock::time_point::max());
  }

  /// @brief Adds a copy of a request, blocking while the queue is full. As the rvalue overload.
  /// @param request the request to copy; never modified.
  /// @param deadline optional queue deadline, as in the rvalue overload.
  /// @return `true` once queued; `false` if the pool is shut down.
  /// @throws std::invalid_argument as the rvalue overload; whatever Request's copy constructor
  ///         throws, or std::bad_alloc; nothing is queued then.
  [[nodiscard]] bool submit(const Request& request, queue_deadline deadline = {}) {
    return enqueue(request, deadline, clock::time_point::max());
  }

  /// @brief Adds a request if there is room now.
  ///
  /// Any thread; never blocks; may allocate. From one of this pool's handlers it behaves as
  /// `submit()`: a follow-up is never refused for lack of room.
  /// Memory ordering: as `submit()`.
  /// @param request the request; moved from only when the call returns `true`.
  /// @param deadline optional queue deadline, as in `submit()`.
  /// @return `false` if the queue is full (outside callers only) or the pool is shut down.
  /// @throws std::invalid_argument, std::bad_alloc as `submit()`; nothing is queued then.
  [[nodiscard]] bool try_submit(Request&& request, queue_deadline deadline = {}) {
    return enqueue(std::move(request), deadline, clock::time_point::min());
  }

  /// @brief Adds a copy of a request if there is room now. As the rvalue overload.
  /// @param request the request to copy; never modified.
  /// @param deadline optional queue deadline, as in `submit()`.
  /// @return `false` if the queue is full (outside callers only) or the pool is shut down.
  /// @throws whatever Request's copy constructor throws, or as `submit()`; nothing is queued then.
  [[nodiscard]] bool try_submit(const Request& request, queue_deadline deadline = {}) {
    return enqueue(request, deadline, clock::time_point::min());
  }

  /// @brief Adds a request, waiting at most `timeout` for room.
  ///
  /// Any thread; blocks at most `timeout` (a zero or negative timeout makes one non-blocking try;
  /// one too large to represent waits without limit); may allocate. From one of this pool's
  /// handlers it behaves as `submit()` and never waits.
  /// Memory ordering: as `submit()`.
  /// @param request the request; moved from only when the call returns `true`.
  /// @param timeout the longest time to wait for room.
  /// @param deadline optional queue deadline, as in `submit()`.
  /// @return `false` on timeout or shutdown.
  /// @throws std::invalid_argument, std::bad_alloc as `submit()`; nothing is queued then.
  template <class Rep, class Period>
  [[nodiscard]] bool submit_for(Request&& request, const std::chrono::duration<Rep, Period>& timeout,
                                queue_deadline deadline = {}) {
    return enqueue(std::move(request), deadline, room_deadline(timeout));
  }

  /// @brief Adds a copy of a request, waiting at most `timeout` for room. As the rvalue overload.
  /// @param request the request to copy; never modified.
  /// @param timeout the longest time to wait for room.
  /// @param deadline optional queue deadline, as in `submit()`.
  /// @return `false` on timeout or shutdown.
  /// @throws whatever Request's copy constructor throws, or as `submit()`; nothing is queued then.
  template <class Rep, class Period>
  [[nodiscard]] bool submit_for(const Request& request, const std::chrono::duration<Rep, Period>& timeout,
                                queue_deadline deadline = {}) {
    return enqueue(request, deadline, room_deadline(timeout));
  }

  /// @brief Blocks until every accepted request, follow-ups and retries included, has finished
  /// (succeeded, failed for good, expired, or been handed back by `shutdown_now()`). Returns at
  /// once if nothing is unfinished; may be called repeatedly and from several threads. With a
  /// stream in which every request always submits a follow-up it never returns.
  ///
  /// Any thread except this pool's own slots; blocks; never allocates.
  /// Memory ordering: see the class description.
  /// @throws std::logic_error if called from one of this pool's handlers (the handler's own
  ///         request is unfinished, so it would wait for itself); nothing changes.
  void join() {
    throw_if_on_own_slot("join");
    std::unique_lock<std::mutex> lock(m_fleet.mutex());
    m_fleet.join(lock);
  }

  /// @brief As `join()`, waiting at most `timeout`.
  ///
  /// Any thread except this pool's own slots; blocks at most `timeout` (zero or negative checks
  /// once; too large waits without limit); never allocates.
  /// @param timeout the longest time to wait.
  /// @return `true` if everything accepted has finished; `false` on timeout.
  /// @throws std::logic_error if called from one of this pool's handlers; nothing changes.
  template <class Rep, class Period>
  [[nodiscard]] bool join_for(const std::chrono::duration<Rep, Period>& timeout) {
    throw_if_on_own_slot("join_for");
    const clock::time_point until = room_deadline(timeout);
    std::unique_lock<std::mutex> lock(m_fleet.mutex());
    return m_fleet.join_until(lock, until);
  }

  /// @brief Graceful shutdown: no new requests (every later submit returns `false`, follow-ups
  /// included, and `add_server()` throws); the slots still finish everything already queued,
  /// retries included, then exit. Wakes submitters blocked on a full queue (they return `false`).
  /// Idempotent; does not wait: use `join()` to wait for the queued requests, or destroy the pool
  /// to also join the threads.
  ///
  /// Any thread, handlers included; never blocks (beyond the pool's mutex); never throws.
  /// Memory ordering: happens-before every submit refused because of it.
  void shutdown() noexcept { m_fleet.shutdown(); }

  /// @brief Immediate shutdown: as `shutdown()`, and removes the queued requests that no slot has
  /// started, retries waiting included, and returns them. Requests already running are not
  /// interrupted; `join()` waits for them; a running attempt that fails after this call is not
  /// retried but fails for good (`failure_reason::shut_down`). May be called after `shutdown()` to
  /// take back what is still queued.
  ///
  /// Any thread, handlers included; never blocks (beyond the pool's mutex); allocates the result.
  /// Memory ordering: the submit of every returned request happens-before the return.
  /// @return the removed requests in queue order (retries first, as they are at the front).
  /// @throws std::bad_alloc if the vector cannot be allocated; then nothing changed at all.
  [[nodiscard]] std::vector<Request> shutdown_now() {
    std::vector<Request> out;
    std::unique_lock<std::mutex> lock(m_fleet.mutex());
    out.reserve(m_retries.size() + m_queue.size());  // the only step that can throw
    for (entry& e : m_retries) {
      out.push_back(std::move(e.request));  // cannot throw: reserved, nothrow move
    }
    m_retries.clear();
    while (!m_queue.empty()) {
      out.push_back(std::move(m_queue.front().request));
      m_queue.pop_front();
    }
    m_fleet.shut_down_now(out.size());
    return out;
  }

  /// @brief Starts a new server with `slots` slot threads on the same queue, and returns its index
  /// (the next one: indices are never reused). Returns once every new slot is ready to serve (its
  /// state built, for a pool with `SlotState`).
  ///
  /// Any thread, handlers included; blocks while the threads start; allocates. Calls are
  /// serialised, so indices follow the order of the calls.
  /// @param slots the new server's slot count; at least 1.
  /// @return the new server's index.
  /// @throws std::invalid_argument if `slots` is 0 or the live slots would exceed
  ///         `server_pool_options::k_max_threads`; nothing changes.
  /// @throws std::logic_error after shutdown; nothing changes.
  /// @throws std::system_error if a thread cannot be started, or what a `make_state` threw: the
  ///         new server's started slots are stopped and joined, and nothing changes.
  std::size_t add_server(std::size_t slots) {
    std::lock_guard<std::mutex> membership(m_membership);
    if (is_shut_down()) {
      throw std::logic_error("flowpool::server_pool::add_server(): the pool is shut down");
    }
    reap_exited_threads();
    return start_server(slots);
  }

  /// @brief Drains a server: its slots finish the request they run, then exit, and take nothing
  /// more; queued requests go to other servers. The state is `draining` until the last slot has
  /// exited, then `drained`; `stats()` keeps its counters. Draining a server that is already
  /// draining or drained does nothing. Returns at once.
  ///
  /// Any thread, handlers included (a handler may drain its own server); never blocks beyond the
  /// pool's mutex and joining threads that have already exited.
  /// @param server the server's index.
  /// @throws std::invalid_argument if `server` is not a server's index; nothing changes.
  /// @throws std::logic_error if no other server would be left serving or ejected (the queue
  ///         would have no one to serve it: add a server first, or shut down); nothing changes.
  void drain_server(std::size_t server) {
    m_fleet.drain_server(server);
    std::unique_lock<std::mutex> membership(m_membership, std::try_to_lock);
    if (membership.owns_lock()) {
      try {
        reap_exited_threads();           // best effort: add_server() and the destructor reap too
      } catch (const std::bad_alloc&) {  // the drain itself has happened; the threads are joined later
      }
    }
  }

  /// @brief A server's state at the time of the call. Any thread; never blocks beyond the mutex.
  /// @param server the server's index.
  /// @return its state.
  /// @throws std::invalid_argument if `server` is not a server's index.
  [[nodiscard]] server_state state(std::size_t server) const {
    return static_cast<server_state>(m_fleet.state(server));
  }

  /// @brief How many servers the pool has had (drained ones included): indices are `[0, server_count())`.
  /// Any thread; never throws.
  /// @return the server count.
  [[nodiscard]] std::size_t server_count() const noexcept { return m_fleet.server_count(); }

  /// @brief A snapshot of the per-server, per-slot and pool counters and histograms.
  ///
  /// Any thread; never blocks beyond the pool's mutex (a slot never waits for a reader: the
  /// per-slot counters and histograms are read without it); allocates the result.
  ///
  /// Each value is exact at some instant during the call, but the values are not one consistent
  /// cut: an attempt that finishes during the call may already count in `busy` and not yet in
  /// `handled`. Once the pool is quiet (e.g. after `join()` returned; see the class description)
  /// the snapshot is exact. `idle` includes a wait still in progress, up to the time of the call.
  /// @return the snapshot.
  /// @throws std::bad_alloc if the vectors cannot be allocated.
  [[nodiscard]] server_pool_stats stats() const {
    server_pool_stats out;
    m_fleet.fill_stats(out);
    return out;
  }

  /// @brief The number of slots (one thread each) of the servers that are not draining or
  /// drained: `servers * slots_per_server` until `add_server()` or `drain_server()` changes it.
  /// It does not drop when slots exit at shutdown. Any thread; never throws.
  /// @return the slot count.
  [[nodiscard]] std::size_t thread_count() const noexcept { return m_fleet.active_slots(); }

  /// @brief The options the pool was built with. Any thread; never throws.
  /// @return the options (valid as long as the pool lives).
  [[nodiscard]] const server_pool_options& options() const noexcept { return m_options; }

  /// @brief Whether `shutdown()` or `shutdown_now()` has been called. Any thread; never throws.
  /// @return true once shut down (it never becomes false again).
  [[nodiscard]] bool is_shut_down() const noexcept {
    std::lock_guard<std::mutex> lock(m_fleet.mutex());
    return m_fleet.is_shut_down();
  }

  /// @brief Requests waiting in the queue now (retries included), possibly stale by the time it
  /// returns; cheaper than `stats()` (no allocation). Any thread; never throws.
  /// @return the queued count.
  [[nodiscard]] std::size_t queued() const noexcept {
    std::lock_guard<std::mutex> lock(m_fleet.mutex());
    return m_fleet.queued();
  }

  /// @brief Requests accepted and not yet done (queued plus running), possibly stale by the time
  /// it returns. Any thread; never throws.
  /// @return the unfinished count.
  [[nodiscard]] std::size_t unfinished() const noexcept {
    std::lock_guard<std::mutex> lock(m_fleet.mutex());
    return m_fleet.unfinished();
  }

  /// @brief Whether the calling thread is one of this pool's slots (i.e. inside its handler).
  /// Any thread; never blocks; never throws.
  /// @return true on this pool's slot threads, false everywhere else.
  [[nodiscard]] bool on_own_slot() const noexcept { return detail::t_current_server_pool == this; }

 private:
  using clock = detail::fleet::clock;
  using handler_fn = detail::unique_function<void(context_type&, Request&)>;
  using state_factory =
      std::conditional_t<std::is_void_v<SlotState>, std::nullptr_t, detail::unique_function<SlotState(slot_id)>>;

  // A queued request and what the pool knows about it.
  struct entry {
    entry(Request&& r, clock::time_point enq, clock::time_point dl) noexcept
        : request(std::move(r)), enqueued(enq), deadline(dl) {}
    entry(const Request& r, clock::time_point enq, clock::time_point dl) : request(r), enqueued(enq), deadline(dl) {}
    entry(entry&&) noexcept = default;
    entry(const entry&) = delete;
    entry& operator=(const entry&) = delete;
    entry& operator=(entry&&) = delete;
    ~entry() = default;

    Request request;
    clock::time_point enqueued;               // when this attempt entered the queue
    clock::time_point deadline;               // max() = none
    std::size_t attempt = 1;                  // the attempt it waits for, 1-based
    std::size_t avoid = detail::k_no_server;  // the server that failed it last
  };

  // The delegate every public constructor ends in (the int tells it apart).
  template <class Handler>
  server_pool(server_pool_options options, Handler&& handler, callbacks_type callbacks, int)
      : m_options(std::move(options)),
        m_fleet(m_options),
        m_handler(wrap_handler(std::forward<Handler>(handler))),
        m_callbacks(std::move(callbacks)),
        m_queue(m_options.queue_capacity) {
    if (m_options.queue_timeout.count() > 0 && !m_callbacks.on_expired) {
      throw std::invalid_argument(
          "flowpool::server_pool: options.queue_timeout is set but callbacks.on_expired is empty "
          "(an expired request must go somewhere)");
    }
    if constexpr (std::is_void_v<SlotState>) {
      start_initial_servers();
    }
  }

  template <class Handler>
  static handler_fn wrap_handler(Handler&& handler) {
    using stored = std::decay_t<Handler>;
    if constexpr (std::is_null_pointer_v<stored>) {
      throw std::invalid_argument("flowpool::server_pool: handler must not be empty");
    } else if constexpr (std::is_pointer_v<stored> || detail::is_std_function<stored>::value) {
      if (detail::is_empty_callable<stored>(handler)) {
        throw std::invalid_argument("flowpool::server_pool: handler must not be empty");
      }
    }
    if constexpr (std::is_null_pointer_v<stored>) {
      return handler_fn();
    } else if constexpr (std::is_invocable_v<stored&, context_type&, Request&>) {
      return handler_fn(std::forward<Handler>(handler));
    } else {
      return handler_fn([h = stored(std::forward<Handler>(handler))](context_type& ctx, Request& r) mutable {
        std::invoke(h, ctx.slot(), r);
      });
    }
  }

  void start_initial_servers() {
    std::lock_guard<std::mutex> membership(m_membership);
    try {
      for (std::size_t s = 0; s < m_options.servers; ++s) {
        (void)start_server(m_options.slots_per_server);
      }
    } catch (...) {
      m_fleet.shutdown();  // the started slots have nothing to drain and exit
      join_threads_locked();
      throw;
    }
  }

  // m_membership held. Starts a server's slots, waits for them, opens it; on any failure stops
  // and joins the new slots, forgets the server and rethrows.
  std::size_t start_server(std::size_t slots) {
    const std::size_t index = m_fleet.begin_server(slots);
    const std::size_t first_thread = m_threads.size();
    std::size_t started = 0;
    std::exception_ptr failure;
    try {
      m_threads.reserve(m_threads.size() + slots);  // so push_back below never throws with a live thread in hand
      for (; started < slots; ++started) {
        detail::fleet_slot& record = m_fleet.slot_of(index, started);
        const slot_id id{index, started};
        m_threads.emplace_back(&record, detail::start_thread(detail::server_pool_thread_name(m_options.name, id),
                                                             [this, &record, id] { run_slot(record, id); }));
      }
    } catch (...) {
      failure = std::current_exception();
    }
    if (!failure) {
      failure = m_fleet.await_started(index, started);
    }
    if (failure) {
      m_fleet.abort_server(index);
      for (std::size_t i = first_thread; i < m_threads.size(); ++i) {
        m_threads[i].second.join();
      }
      m_threads.resize(first_thread);
      m_fleet.remove_server(index);
      std::rethrow_exception(failure);
    }
    m_fleet.open_server(index);
    return index;
  }

  // m_membership held: joins the threads of slots that have exited (drained servers).
  void reap_exited_threads() {
    std::vector<std::thread> done;
    done.reserve(m_threads.size());  // the only step that can throw
    {
      std::lock_guard<std::mutex> lock(m_fleet.mutex());
      for (std::size_t i = 0; i < m_threads.size();) {
        if (detail::fleet::has_exited(*m_threads[i].first)) {
          done.push_back(std::move(m_threads[i].second));
          m_threads[i] = std::move(m_threads.back());
          m_threads.pop_back();
        } else {
          ++i;
        }
      }
    }
    for (std::thread& t : done) {
      t.join();
    }
  }

  using thread_list = std::vector<std::pair<detail::fleet_slot*, std::thread>>;

  static void join_each(thread_list& threads) noexcept {
    for (auto& entry : threads) {
      if (entry.second.joinable()) {
        entry.second.join();
      }
    }
    threads.clear();
  }

  // m_membership held (the constructor's failure path).
  void join_threads_locked() noexcept { join_each(m_threads); }

  void join_all_threads() noexcept {
    // Shut down first (by the caller), so no add_server() passes its check after this lock.
    thread_list threads;
    {
      std::lock_guard<std::mutex> membership(m_membership);
      threads.swap(m_threads);
    }
    join_each(threads);
  }

  template <class Rep, class Period>
  static clock::time_point room_deadline(const std::chrono::duration<Rep, Period>& timeout) noexcept {
    return detail::deadline::after(timeout).as_time_point();  // min: one try; max: no limit (NaN: one try)
  }

  void throw_if_on_own_slot(const char* what) const {
    if (on_own_slot()) {
      throw std::logic_error(std::string("flowpool::server_pool::") + what +
                             "(): called from one of the pool's own handlers, which would wait for itself");
    }
  }

  bool enqueue(const Request& request, queue_deadline deadline, clock::time_point room_until) {
    Request copy(request);  // before the lock: a slow or throwing copy holds up no slot
    return enqueue(std::move(copy), deadline, room_until);
  }

  bool enqueue(Request&& request, queue_deadline deadline, clock::time_point room_until) {
    if (deadline.at != clock::time_point::max() && !m_callbacks.on_expired) {
      throw std::invalid_argument(
          "flowpool::server_pool::submit(): a queue_deadline needs callbacks.on_expired "
          "(an expired request must go somewhere)");
    }
    const bool follow_up = on_own_slot();
    detail::fleet_slot* wake = nullptr;
    {
      std::unique_lock<std::mutex> lock(m_fleet.mutex());
      if (!m_fleet.wait_for_room(lock, follow_up, room_until)) {
        return false;
      }
      const clock::time_point now = clock::now();
      clock::time_point limit = deadline.at;
      if (limit == clock::time_point::max() && m_options.queue_timeout.count() > 0) {
        limit = now + m_options.queue_timeout;  // validated to at most a year: no overflow
      }
      try {
        m_queue.emplace_back(std::move(request), now, limit);  // only growth can throw; then nothing moved
      } catch (...) {
        m_fleet.room_unused();  // pass on the room this submit was woken for
        throw;
      }
      wake = m_fleet.pushed(now);
    }
    detail::fleet::notify(wake);
    return true;
  }

  // Lock held: the first entry this slot may take (retries first), removed from the queue.
  std::optional<entry> take(const detail::fleet_slot& me) noexcept {
    std::optional<entry> out;
    for (auto it = m_retries.begin(); it != m_retries.end(); ++it) {
      if (m_fleet.may_take(me, it->avoid)) {
        out.emplace(std::move(*it));
        m_retries.erase(it);
        return out;
      }
    }
    if (!m_queue.empty()) {
      out.emplace(std::move(m_queue.front()));
      m_queue.pop_front();
    }
    return out;
  }

  // Lock held: picks a sleeping slot for what is still queued, if the fleet wants one woken.
  detail::fleet_slot* wake_for_rest() noexcept {
    if (!m_fleet.wake_wanted()) {
      return nullptr;
    }
    if (!m_queue.empty()) {
      if (detail::fleet_slot* slot = m_fleet.wake_for(detail::k_no_server)) {
        return slot;
      }
    }
    std::size_t offered = detail::k_no_server;
    for (const entry& e : m_retries) {
      if (e.avoid == offered) {
        continue;  // same avoid mark, same answer
      }
      offered = e.avoid;
      if (detail::fleet_slot* slot = m_fleet.wake_for(e.avoid)) {
        return slot;
      }
    }
    return nullptr;
  }

  void run_slot(detail::fleet_slot& me, slot_id id) noexcept {
    detail::t_current_server_pool = this;
    if constexpr (std::is_void_v<SlotState>) {
      if (m_fleet.slot_started(me, nullptr)) {
        serve(me, id, nullptr);
      }
    } else {
      bool built = false;
      try {
        SlotState state = m_make_state(id);  // a prvalue: built in place, so it may be immovable
        built = true;
        if (m_fleet.slot_started(me, nullptr)) {
          serve(me, id, &state);
        }
      } catch (...) {
        if (!built) {  // serve() is noexcept: only the factory can have thrown
          (void)m_fleet.slot_started(me, std::current_exception());
        }
      }
    }
    m_fleet.slot_exited(me);
    detail::t_current_server_pool = nullptr;
  }

  void serve(detail::fleet_slot& me, slot_id id, std::add_pointer_t<SlotState> state) noexcept {
    std::unique_lock<std::mutex> lock(m_fleet.mutex());
    clock::time_point now = clock::now();
    for (;;) {
      const detail::slot_gate gate = m_fleet.gate(me, now);
      if (gate == detail::slot_gate::exit) {
        detail::fleet_slot* next = wake_for_rest();  // a draining slot may have been woken for an entry
        lock.unlock();
        detail::fleet::notify(next);
        lock.lock();
        break;
      }
      std::optional<entry> job = gate != detail::slot_gate::wait ? take(me) : std::optional<entry>{};
      if (!job) {
        // A woken slot that finds nothing it may take (or whose gate says wait) passes the wake-up on.
        detail::fleet_slot* next = wake_for_rest();
        if (next != nullptr) {
          lock.unlock();
          detail::fleet::notify(next);
          lock.lock();
        } else {
          m_fleet.idle_wait(lock, me);
        }
        now = clock::now();
        continue;
      }
      const bool expired = job->deadline <= now;
      const bool probe = gate == detail::slot_gate::probe && !expired;
      m_fleet.took(me, probe);
      // The hand-off chain: a push wakes a slot only when no wake-up is in flight, so the taker wakes
      // the next sleeper while more is queued than wake-ups in flight (for a retry, one that may take it).
      detail::fleet_slot* next = wake_for_rest();
      lock.unlock();
      detail::fleet::notify(next);
      m_fleet.record_take(me, !expired, now, now - job->enqueued);
      if (expired) {
        expire(std::move(*job));
        job.reset();
        const clock::time_point ended = clock::now();
        m_fleet.record_busy(me, now, ended);
        lock.lock();
        m_fleet.expired();
        now = ended;
        continue;
      }
      now = attempt(lock, me, id, state, probe, now, job);
    }
  }

  // Runs one attempt of `job`, taken at `started`; returns with the lock held, and the time it ended.
  clock::time_point attempt(std::unique_lock<std::mutex>& lock, detail::fleet_slot& me, slot_id id,
                            std::add_pointer_t<SlotState> state, bool probe, clock::time_point started,
                            std::optional<entry>& job) noexcept {
    const std::size_t attempt_no = job->attempt;
    detail::attempt_outcome outcome = detail::attempt_outcome::succeeded;
    std::exception_ptr error;
    {
      context_type ctx(*this, id, attempt_no, probe, state);
      try {
        m_handler(ctx, job->request);
      } catch (const permanent_error&) {
        outcome = detail::attempt_outcome::permanent;
        error = std::current_exception();
      } catch (...) {
        outcome = detail::attempt_outcome::failed;
        error = std::current_exception();
      }
    }
    const clock::time_point returned = clock::now();
    const std::chrono::nanoseconds handler_time = returned - started;
    if (outcome == detail::attempt_outcome::succeeded) {
      job.reset();  // the request is gone before join() can return
      const clock::time_point ended = clock::now();
      m_fleet.record_attempt(me, outcome, started, handler_time, ended);
      lock.lock();
      m_fleet.finished(me, outcome, true);
      return ended;
    }
    // A failure. Reserve a list node for the retry first, so that queueing it cannot fail later.
    std::list<entry> node;
    const bool may_retry = outcome == detail::attempt_outcome::failed && attempt_no < m_options.max_attempts;
    bool reserved = false;
    if (may_retry) {
      try {
        node.emplace_back(std::move(*job));  // allocation first: on bad_alloc *job is untouched
        job.reset();
        reserved = true;
      } catch (const std::bad_alloc&) {
      }
    }
    // Before the lock: once a retry is queued another slot may finish it and release join(), which
    // must see this attempt's counters (the failure path adds the callbacks' time below).
    m_fleet.record_attempt(me, outcome, started, handler_time, returned);
    lock.lock();
    const detail::failure_decision decision = m_fleet.decide(me, outcome, attempt_no, reserved, returned);
    if (decision == detail::failure_decision::retry) {
      entry& e = node.front();
      e.attempt = attempt_no + 1;
      e.avoid = id.server;
      e.enqueued = returned;                    // the deadline stays: it bounds the request's whole time in the queue
      m_retries.splice(m_retries.end(), node);  // behind earlier retries, ahead of first attempts
      m_fleet.finished(me, outcome, false);
      detail::fleet_slot* next = m_fleet.requeued(id.server);
      lock.unlock();
      detail::fleet::notify(next);
      lock.lock();
      return returned;
    }
    lock.unlock();
    Request& request = reserved ? node.front().request : job->request;
    report_failure(request_failure{id, attempt_no, error, reason_of(decision)}, request);
    node.clear();
    job.reset();
    const clock::time_point ended = clock::now();
    m_fleet.record_busy(me, returned, ended);  // the callbacks and the destruction
    lock.lock();
    m_fleet.finished(me, outcome, true);
    return ended;
  }

  static failure_reason reason_of(detail::failure_decision d) noexcept {
    switch (d) {
      case detail::failure_decision::final_permanent:
        return failure_reason::permanent_error;
      case detail::failure_decision::final_budget:
        return failure_reason::retry_budget;
      case detail::failure_decision::final_shut_down:
        return failure_reason::shut_down;
      case detail::failure_decision::final_no_memory:
        return failure_reason::out_of_memory;
      case detail::failure_decision::retry:
      case detail::failure_decision::final_attempts:
        break;
    }
    return failure_reason::attempts_exhausted;
  }

  void report_failure(const request_failure& failure, Request& request) noexcept {
    if (m_callbacks.on_failure) {
      try {
        m_callbacks.on_failure(failure, request);
      } catch (...) {  // documented: the callbacks must not throw; a second failure has nowhere to go
      }
    }
    if (m_options.on_error) {
      try {
        m_options.on_error(failure.slot, failure.error);
      } catch (...) {  // as above
      }
    }
  }

  void expire(entry&& job) noexcept {
    try {
      m_callbacks.on_expired(job.request);  // never empty here: a deadline requires it
    } catch (...) {                         // as above
    }
  }

  const server_pool_options m_options;
  detail::fleet m_fleet;  // the mutex, the policy and the counters
  const handler_fn m_handler;
  callbacks_type m_callbacks;
  state_factory m_make_state{};
  detail::ring_buffer<entry> m_queue;  // first attempts, in submit order (guarded by m_fleet.mutex())
  std::list<entry> m_retries;          // retries, oldest first: the front of the queue (same guard)
  std::mutex m_membership;             // serialises add_server() and the thread list's owners
  thread_list m_threads;               // guarded by m_membership
};

}  // namespace flowpool
