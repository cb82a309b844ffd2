/// @file
/// @brief Internal: the half of flowpool::server_pool that does not depend on `Request`. Not API.
///
/// server_pool<Request> keeps the requests (its queue entries) and calls the handler; everything
/// else is here and compiled once in lib/src/server_pool/fleet.cpp: membership, the per-server
/// state machine (serving, ejected with its probe, draining, drained), who may take which entry,
/// which sleeping slot to wake, the retry budget, the counters and the histograms. The template
/// and the fleet share one mutex, `fleet::mutex()`; every member below that takes a `lock_type&`
/// must be called with it held.
#pragma once

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <vector>

namespace flowpool {
struct server_pool_options;
struct server_pool_stats;
}  // namespace flowpool

namespace flowpool::detail {

// "No server": the avoid mark of a request that has never failed.
inline constexpr std::size_t k_no_server = static_cast<std::size_t>(-1);

// What a slot does next (fleet::gate).
enum class slot_gate : unsigned char {
  exit,   // leave the loop: drained, or shut down with nothing left that this slot could get
  wait,   // sleep (ejected and not yet due, or a probe is out)
  serve,  // take an entry it may take, if any
  probe,  // take one entry as its server's probe
};

// How an attempt ended.
enum class attempt_outcome : unsigned char { succeeded, failed, permanent };

// What becomes of a failed attempt's request (fleet::decide). The final_* values match
// flowpool::failure_reason one to one.
enum class failure_decision : unsigned char {
  retry,
  final_attempts,   // no attempt left
  final_permanent,  // a permanent_error
  final_budget,     // the retry budget is spent
  final_shut_down,  // shutdown_now() was called: nothing is queued any more
  final_no_memory,  // the retry could not be queued (std::bad_alloc)
};

struct fleet_slot;    // one slot thread's record; defined in fleet.cpp
struct fleet_server;  // one server's record; defined in fleet.cpp

class fleet {
 public:
  using clock = std::chrono::steady_clock;
  using lock_type = std::unique_lock<std::mutex>;

  // Validates `options` (std::invalid_argument naming the field) and keeps the policy fields.
  explicit fleet(const server_pool_options& options);
  ~fleet();
  fleet(const fleet&) = delete;
  fleet& operator=(const fleet&) = delete;

  [[nodiscard]] std::mutex& mutex() const noexcept { return m_mutex; }

  // ---- Membership. None of these take the lock from the caller; they lock it themselves. ----

  // Validates `slots` (0, or past k_max_threads live slots: std::invalid_argument), then adds a
  // server in the internal "starting" phase with `slots` slot records, and returns its index. Its
  // slots take nothing until open_server(). Callers serialise begin..open/abort (server_pool's
  // membership mutex), so the new server is always the last one.
  [[nodiscard]] std::size_t begin_server(std::size_t slots);
  [[nodiscard]] fleet_slot& slot_of(std::size_t server, std::size_t slot) noexcept;
  // Called by a slot thread once its state is built (failure: what its constructor threw). On
  // success it waits for open_server() or abort_server() and returns true if opened.
  [[nodiscard]] bool slot_started(fleet_slot& slot, std::exception_ptr failure) noexcept;
  // Waits until `started` slots of the server have called slot_started(); returns the first failure.
  [[nodiscard]] std::exception_ptr await_started(std::size_t server, std::size_t started) noexcept;
  // The server starts serving (state serving); wakes its slots.
  void open_server(std::size_t server) noexcept;
  // The starting server's slots exit instead; after the caller has joined their threads it calls
  // remove_server(), which forgets the server (it was never visible).
  void abort_server(std::size_t server) noexcept;
  void remove_server(std::size_t server) noexcept;
  // drain_server(): std::invalid_argument for an unknown index, std::logic_error if it would
  // leave no server that could ever serve again; a no-op for a server already draining/drained.
  void drain_server(std::size_t server);
  [[nodiscard]] unsigned char state(std::size_t server) const;            // a flowpool::server_state value
  [[nodiscard]] std::size_t server_count() const noexcept;                // servers ever opened
  [[nodiscard]] std::size_t live_slots() const noexcept;                  // slot threads not yet exited
  [[nodiscard]] std::size_t active_slots() const noexcept;                // slots of open servers not draining/drained
  [[nodiscard]] static bool has_exited(const fleet_slot& slot) noexcept;  // lock held by the caller

  // ---- Submitting (lock held). ----

  // Waits for room as an outside submitter would (`until == time_point::max()`: no limit;
  // `until` in the past: no wait); a follow-up (`bypass`) never waits. Returns false, changing
  // nothing, when the pool is shut down or there is no room by `until`.
  [[nodiscard]] bool wait_for_room(lock_type& lock, bool bypass, clock::time_point until);
  // A new request was queued (after wait_for_room() returned true): counts it, and returns the
  // slot to wake (or nullptr), to be passed to notify() after the unlock.
  [[nodiscard]] fleet_slot* pushed(clock::time_point now) noexcept;
  // A failed request was put back at the front of the queue, avoiding `server`.
  [[nodiscard]] fleet_slot* requeued(std::size_t avoid) noexcept;
  [[nodiscard]] bool is_shut_down() const noexcept { return m_shutdown; }
  // A submit that wait_for_room() admitted did not queue after all (its push threw): if it had
  // been woken for a freed place, that wake-up goes to another waiting submitter.
  void room_unused() noexcept;

  // ---- Slots (lock held). ----

  [[nodiscard]] slot_gate gate(fleet_slot& slot, clock::time_point now) noexcept;
  // Whether `slot` may take an entry that avoids `avoid` (the avoid rule only; gate() first).
  [[nodiscard]] bool may_take(const fleet_slot& slot, std::size_t avoid) const noexcept;
  // Sleeps until woken (a push, a state change, shutdown) or, for an ejected server, its due time.
  void idle_wait(lock_type& lock, fleet_slot& slot) noexcept;
  // The slot took an entry (as its server's probe if `probe`).
  void took(fleet_slot& slot, bool probe) noexcept;
  // Whether another slot should be woken for what is still queued (queued > wakes in flight and
  // someone sleeps); the template then offers its entries' avoid marks to wake_for().
  [[nodiscard]] bool wake_wanted() const noexcept;
  [[nodiscard]] fleet_slot* wake_for(std::size_t avoid) noexcept;
  // Decides a failed attempt: updates the server's ejection state and the retry budget.
  // `attempt` is 1-based; `retry_possible` is false when the template could not reserve room.
  [[nodiscard]] failure_decision decide(fleet_slot& slot, attempt_outcome outcome, std::size_t attempt,
                                        bool retry_possible, clock::time_point now) noexcept;
  // The attempt is over (lock held): the success for the ejection state machine, and, when `final`,
  // the request as done with `outcome` (succeeded, or the final failure).
  void finished(fleet_slot& slot, attempt_outcome outcome, bool final) noexcept;
  // An expired entry has been reported and destroyed (lock held).
  void expired() noexcept;

  // ---- A slot's own accounting: on its thread, WITHOUT the lock (single writer, see fleet.cpp). ----

  // It took an entry at `now` that had been queued `waited`; `runs` is false for an expired entry.
  void record_take(fleet_slot& slot, bool runs, clock::time_point now, std::chrono::nanoseconds waited) const noexcept;
  // An attempt from `started` (its take) to `ended` (request destroyed, callbacks done).
  void record_attempt(fleet_slot& slot, attempt_outcome outcome, clock::time_point started,
                      std::chrono::nanoseconds handler_time, clock::time_point ended) const noexcept;
  // Busy time of an expired entry (or of any other work between a take and the next wait).
  void record_busy(fleet_slot& slot, clock::time_point started, clock::time_point ended) const noexcept;

  // The slot's thread is about to end (its state destroyed); locks itself.
  void slot_exited(fleet_slot& slot) noexcept;

  // ---- Shutdown and join (they lock themselves, except returned()). ----

  void shutdown() noexcept;
  // shutdown_now(): marks the pool shut down for good (lock held); `returned` entries left it.
  void shut_down_now(std::size_t returned) noexcept;
  void join(lock_type& lock) noexcept;
  [[nodiscard]] bool join_until(lock_type& lock, clock::time_point until) noexcept;
  [[nodiscard]] std::size_t queued() const noexcept { return m_queued; }
  [[nodiscard]] std::size_t unfinished() const noexcept { return m_unfinished; }

  // Wakes a slot returned above; call it after releasing the lock. nullptr is ignored.
  static void notify(fleet_slot* slot) noexcept;

  // Fills all of `out` (the fleet keeps every counter); locks itself.
  void fill_stats(server_pool_stats& out) const;

 private:
  [[nodiscard]] bool serving_other_than(std::size_t server) const noexcept;
  [[nodiscard]] bool can_take_now(const fleet_server& server, std::size_t avoid, bool other_serving,
                                  clock::time_point now) const noexcept;
  [[nodiscard]] fleet_slot* wake_in(fleet_server& server) noexcept;
  void wake_all() noexcept;
  void end_ejections() noexcept;
  void eject(fleet_server& server, clock::time_point now) noexcept;
  void done_one() noexcept;
  [[nodiscard]] bool budget_allows(clock::time_point now) noexcept;
  void budget_rotate(clock::time_point now) noexcept;
  [[nodiscard]] std::int64_t now_ns(clock::time_point t) const noexcept;

  mutable std::mutex m_mutex;
  std::condition_variable m_room;     // outside submitters waiting for room
  std::condition_variable m_idle;     // join() waiters
  std::condition_variable m_started;  // begin_server()'s caller waiting for slot_started()

  // Policy (fixed at construction).
  std::size_t m_capacity;
  std::size_t m_max_attempts;
  std::size_t m_eject_after;
  std::chrono::nanoseconds m_eject_for;
  std::chrono::nanoseconds m_max_eject_for;  // max_eject_for, or 32 * eject_for when that is 0
  std::size_t m_max_ejected_percent;
  double m_budget_ratio;
  double m_budget_floor_per_second;
  std::chrono::nanoseconds m_budget_bucket;
  const clock::time_point m_epoch;

  // Membership: append-only, so fleet_slot/fleet_server references stay valid for the pool's life.
  std::vector<std::unique_ptr<fleet_server>> m_servers;
  std::size_t m_opened = 0;        // servers visible to users (the rest are starting)
  std::size_t m_live_slots = 0;    // slot records whose thread has not exited
  std::size_t m_active_slots = 0;  // slots of open servers that are not draining or drained
  std::size_t m_serving = 0;       // servers in state serving
  std::size_t m_ejected = 0;       // servers in state ejected
  std::size_t m_wake_cursor = 0;

  // Queue accounting (the entries themselves are the template's).
  std::size_t m_queued = 0;
  std::size_t m_unfinished = 0;
  std::size_t m_high_water = 0;
  std::size_t m_waiting_submitters = 0;
  std::size_t m_listed = 0;         // slots asleep in idle_wait and not yet woken
  std::size_t m_wakes_pending = 0;  // slots woken and not yet back from idle_wait
  bool m_shutdown = false;
  bool m_shutdown_now = false;

  // Pool counters.
  std::uint64_t m_accepted = 0;
  std::uint64_t m_succeeded = 0;
  std::uint64_t m_final_failures = 0;
  std::uint64_t m_expired = 0;
  std::uint64_t m_returned = 0;
  std::uint64_t m_budget_refusals = 0;

  // Retry budget: requests and retries per bucket over a sliding window of k_budget_buckets.
  static constexpr std::size_t k_budget_buckets = 10;
  std::int64_t m_budget_bucket_start = 0;  // index (in buckets since m_epoch) of m_budget_requests[0]
  std::array<std::uint64_t, k_budget_buckets> m_budget_requests{};
  std::array<std::uint64_t, k_budget_buckets> m_budget_retries{};
  std::size_t m_budget_head = 0;
};

}  // namespace flowpool::detail
