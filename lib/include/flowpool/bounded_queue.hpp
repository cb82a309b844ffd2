/// @file
/// @brief flowpool::bounded_queue: a blocking, bounded FIFO queue with Python `queue.Queue` semantics.
#pragma once

#include <flowpool/detail/config.hpp>
#include <flowpool/detail/deadline.hpp>
#include <flowpool/detail/ring_buffer.hpp>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <iterator>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace flowpool {

/// @brief A bounded, blocking, multi-producer multi-consumer FIFO queue with an unfinished-task
/// counter and two ways to shut down, modelled on CPython 3.13's `queue.Queue`.
///
/// - `put` blocks while the queue is full (backpressure); `get` blocks while it is empty.
/// - Every successful put raises the *unfinished* count; `task_done()` lowers it; `join()` waits
///   for it to reach zero.
/// - `shutdown()` is graceful: puts fail from then on, gets drain what is left and then return
///   `std::nullopt`. `shutdown_now()` is immediate: it also removes the queued items and hands
///   them back to the caller, counting each as done. Shutdown is one-way.
///
/// All members are thread-safe and may be called from any thread, including concurrently.
/// Blocked threads sleep on condition variables; nothing busy-waits. The queue holds one mutex;
/// no member calls user code while holding it except T's constructors and destructor, and the
/// iterator operations of `put_all`/`try_put_all`.
///
/// Beyond `queue.Queue`: `emplace` (construct in place), the batch forms `put_all` and
/// `get_up_to` (many items under one lock; each item counts as one put or get), absolute
/// deadlines (`try_put_until`, `try_get_until`) and a `get` that a `std::stop_token` can end.
///
/// **Memory ordering.** Everything a thread did before a successful `put` of an item
/// happens-before everything the thread that receives that item (from `get` or `shutdown_now`)
/// does after the call returns. Every `task_done()` call happens-before the return of a
/// `join()`/`join_for()` that observed the count it helped reach zero. `shutdown()` and
/// `shutdown_now()` happen-before any call that returns `false`/`std::nullopt` because of them.
/// The batch forms order each item as a single `put`/`get` of it would.
///
/// **Exceptions.** If T's copy or move constructor throws inside a member, the exception reaches
/// the caller, no lock stays held, and the queue is as it was: a throwing put adds nothing, a
/// throwing get leaves the item at the front. Items are moved out with `std::move_if_noexcept`,
/// so for a copyable T whose move may throw the queued item is copied and left intact. A throw
/// never costs another thread its wake-up: a getter (putter) whose take (push) throws after it
/// was woken for an item (for room) wakes another sleeping getter (putter) before the exception
/// leaves the call, since the item (the room) is still there.
///
/// **Lifetime.** Destroying the queue while a thread is inside one of its members, or may still
/// call one, is undefined behaviour; remaining items are destroyed with it. One exception makes
/// the natural patterns safe: the calls that end a wait for "done", `task_done()`, `shutdown()`
/// and `shutdown_now()`, send their notifies before they release the mutex and touch nothing of
/// the queue after that. So the queue may be destroyed at once, even while the thread that made
/// such a call has not returned from it yet, as soon as
/// - a `join()` (or a `join_for()` that returned `true`) has returned, or
/// - a `get()` has returned `std::nullopt` or a `put()` has returned `false` because of a
///   shutdown,
///
/// provided every *other* thread has returned from its last call (a consumer whose last call was
/// `task_done()` counts as returned once `join()` has). In Python terms: `q.join()`, then
/// `del q`. That exception does not extend to `put` and `get`: they notify after releasing the
/// mutex (so the woken thread does not block on a mutex still held, on every item), so a
/// consumer that receives the last item must not destroy the queue until the producer's `put`
/// has returned (join the producer thread, or have it signal after the call), and likewise for a
/// producer let in by a `get`.
///
/// **Example.** Three consumer threads and one producer; `join()` waits until every item has been
/// `task_done()`'d, and `shutdown()` ends the consumers' loops (`docs/examples/queue_pipeline.cpp`):
/// @snippet queue_pipeline.cpp pipeline
///
/// @tparam T the element type; it must be destructible without throwing, and either nothrow
///           move-constructible or copy-constructible (rejected at compile time otherwise: a
///           move-only type whose move may throw could lose items when the storage grows or
///           `shutdown_now()` throws, so no strong guarantee is possible for it; wrap such a type
///           in `std::unique_ptr`).
template <class T>
class bounded_queue {
  static_assert(std::is_nothrow_move_constructible_v<T> || std::is_copy_constructible_v<T>,
                "flowpool::bounded_queue<T>: T must be nothrow move-constructible or copy-constructible "
                "(a move-only T whose move may throw cannot keep the no-item-lost guarantee; wrap it in "
                "std::unique_ptr)");

 public:
  /// The element type.
  using value_type = T;

  /// @brief Creates an empty, open queue that holds at most `capacity` items.
  ///
  /// Storage grows on demand up to `capacity`, so a large bound costs nothing until it is used.
  /// Any thread; never blocks; allocates nothing up front.
  /// @param capacity the most items the queue holds before `put` blocks; must be at least 1.
  /// @throws std::invalid_argument if `capacity` is 0.
  explicit bounded_queue(std::size_t capacity) : m_items(checked(capacity)) {}

  bounded_queue(const bounded_queue&) = delete;             ///< Not copyable.
  bounded_queue& operator=(const bounded_queue&) = delete;  ///< Not copyable.
  bounded_queue(bounded_queue&&) = delete;                  ///< Not movable: threads hold references to it.
  bounded_queue& operator=(bounded_queue&&) = delete;       ///< Not movable.
  /// @brief Destroys the remaining items. No thread may be inside a member at this point, except
  /// one still returning from the `task_done()`, `shutdown()` or `shutdown_now()` that released
  /// the destroying thread (see Lifetime in the class description).
  ~bounded_queue() = default;

  /// @brief Appends a copy of `item`, blocking while the queue is full.
  ///
  /// Any thread; blocks while full and open; may allocate (storage growth, T's copy).
  /// Memory ordering: see the class description.
  /// @param item the item to copy in; untouched on failure.
  /// @return `true` once added; `false` if the queue is (or becomes, while waiting) shut down.
  /// @throws whatever T's copy constructor or the allocator throws; nothing is added then, and
  ///         another putter blocked on the full queue is woken in this call's place.
  [[nodiscard]] bool put(const T& item) { return put_until(item, detail::deadline::never()); }

  /// @brief Appends `item` by moving it, blocking while the queue is full.
  ///
  /// Any thread; blocks while full and open; may allocate (storage growth).
  /// @param item the item to move in; moved from only when the call returns `true`.
  /// @return `true` once added; `false` if the queue is (or becomes, while waiting) shut down.
  /// @throws whatever T's move constructor or the allocator throws; nothing is added then, and
  ///         another putter blocked on the full queue is woken in this call's place.
  [[nodiscard]] bool put(T&& item) { return put_until(std::move(item), detail::deadline::never()); }

  /// @brief Appends a copy of `item` if there is room now. Any thread; never blocks; may allocate.
  /// @param item the item to copy in.
  /// @return `false` if the queue is full or shut down (shutdown is checked first).
  /// @throws whatever T's copy constructor or the allocator throws; nothing is added then.
  [[nodiscard]] bool try_put(const T& item) { return put_until(item, detail::deadline::already_passed()); }

  /// @brief Moves `item` in if there is room now. Any thread; never blocks; may allocate.
  /// @param item the item to move in; moved from only when the call returns `true`.
  /// @return `false` if the queue is full or shut down.
  /// @throws whatever T's move constructor or the allocator throws; nothing is added then.
  [[nodiscard]] bool try_put(T&& item) { return put_until(std::move(item), detail::deadline::already_passed()); }

  /// @brief Moves `item` in, waiting at most `timeout` for room.
  ///
  /// Any thread; blocks for at most `timeout` (one deadline: spurious wake-ups never extend it);
  /// may allocate. A zero or negative timeout makes a single non-blocking attempt; a timeout too
  /// large to represent as a deadline waits without one.
  /// @param item the item to move in; moved from only when the call returns `true`.
  /// @param timeout the longest time to wait for room.
  /// @return `false` on timeout or shutdown.
  /// @throws whatever T's move constructor or the allocator throws; nothing is added then.
  template <class Rep, class Period>
  [[nodiscard]] bool try_put_for(T&& item, const std::chrono::duration<Rep, Period>& timeout) {
    return put_until(std::move(item), detail::deadline::after(timeout));
  }

  /// @brief Copies `item` in, waiting at most `timeout` for room. As the rvalue overload.
  /// @param item the item to copy in.
  /// @param timeout the longest time to wait for room.
  /// @return `false` on timeout or shutdown.
  /// @throws whatever T's copy constructor or the allocator throws; nothing is added then.
  template <class Rep, class Period>
  [[nodiscard]] bool try_put_for(const T& item, const std::chrono::duration<Rep, Period>& timeout) {
    return put_until(item, detail::deadline::after(timeout));
  }

  /// @brief Moves `item` in, waiting for room until the absolute time `when`.
  ///
  /// Any thread; blocks until `when` at most; may allocate. `when` may be on any clock: it is
  /// converted once, at the call, into a steady-clock deadline, so later adjustments of a
  /// non-steady clock (system_clock set by an administrator) do not move it. A `when` already
  /// past makes a single non-blocking attempt; one too far away to represent waits without one.
  /// @param item the item to move in; moved from only when the call returns `true`.
  /// @param when the time after which the call gives up.
  /// @return `false` on timeout or shutdown.
  /// @throws whatever T's move constructor, the allocator or `Clock::now()` throws; nothing is
  ///         added then.
  template <class Clock, class Duration>
  [[nodiscard]] bool try_put_until(T&& item, const std::chrono::time_point<Clock, Duration>& when) {
    return put_until(std::move(item), detail::deadline::at(when));
  }

  /// @brief Copies `item` in, waiting for room until the absolute time `when`. As the rvalue overload.
  /// @param item the item to copy in.
  /// @param when the time after which the call gives up.
  /// @return `false` on timeout or shutdown.
  /// @throws whatever T's copy constructor, the allocator or `Clock::now()` throws; nothing is
  ///         added then.
  template <class Clock, class Duration>
  [[nodiscard]] bool try_put_until(const T& item, const std::chrono::time_point<Clock, Duration>& when) {
    return put_until(item, detail::deadline::at(when));
  }

  /// @brief Constructs an item in place from `args`, blocking while the queue is full: `put`
  /// without the temporary.
  ///
  /// The item is built as `T(std::forward<Args>(args)...)` directly in the queue's storage, under
  /// its mutex, once there is room; so T's constructor runs while the mutex is held (keep it
  /// cheap, and do not call into this queue from it).
  /// Any thread; blocks while full and open; may allocate (storage growth, T's constructor).
  /// Memory ordering: as `put` (the class description).
  /// @param args the constructor arguments; forwarded (so moved from, if rvalues) only when the
  ///        call returns `true`, untouched otherwise.
  /// @return `true` once added; `false` if the queue is (or becomes, while waiting) shut down.
  /// @throws whatever T's constructor or the allocator throws; nothing is added then (rvalue
  ///         arguments are as T's constructor left them), and another putter blocked on the full
  ///         queue is woken in this call's place.
  template <class... Args>
  requires std::is_constructible_v<T, Args...>
  [[nodiscard]] bool emplace(Args&&... args) {
    return emplace_until(detail::deadline::never(), std::forward<Args>(args)...);
  }

  /// @brief As `emplace`, if there is room now. Any thread; never blocks; may allocate.
  /// @param args the constructor arguments; forwarded only when the call returns `true`.
  /// @return `false` if the queue is full or shut down (shutdown is checked first).
  /// @throws whatever T's constructor or the allocator throws; nothing is added then.
  template <class... Args>
  requires std::is_constructible_v<T, Args...>
  [[nodiscard]] bool try_emplace(Args&&... args) {
    return emplace_until(detail::deadline::already_passed(), std::forward<Args>(args)...);
  }

  /// @brief Appends the items of `[first, last)` in order, as many at a time as there is room
  /// for, under one lock per batch; blocks until all are in or the queue is shut down.
  ///
  /// Each item is constructed from `*it` (a copy; pass `std::make_move_iterator`s to move). While
  /// the queue has room, the call appends item after item without releasing the mutex; when it
  /// is full, it wakes the getters for what it added and sleeps until there is room again. So
  /// other threads' items may come between batches, and getters may take the first items before
  /// the last are in; items of one call keep their order. Each added item raises the unfinished
  /// count, as `put` does, and wakes one sleeping getter.
  /// Any thread; blocks while full and open; may allocate.
  /// Memory ordering: as `put`, for each item.
  /// @param first the first item to append.
  /// @param last the end of the items.
  /// @return the number of items added, `k`: they are the first `k` of the range, and only they
  ///         were read (moved from, with move iterators). `k` is the whole range's length unless
  ///         the queue is (or becomes, while waiting) shut down; the items not added stay with the
  ///         caller, untouched, so nothing is lost. An empty range returns 0 at once.
  /// @throws whatever T's constructor, the allocator or the iterator throws. The items before the
  ///         one that threw stay added (and counted; getters may already have them), that one and
  ///         those after it are untouched, and another putter blocked on the full queue is woken in
  ///         this call's place. The exception does not say how many went in: if a caller needs to
  ///         know, it should use `put` per item for a T whose constructor may throw.
  template <std::input_iterator It, std::sentinel_for<It> Sentinel>
  requires std::is_constructible_v<T, std::iter_reference_t<It>>
  [[nodiscard]] std::size_t put_all(It first, Sentinel last) {
    return put_all_until(std::move(first), std::move(last), detail::deadline::never());
  }

  /// @brief As `put_all`, without blocking: appends, under one lock, as many items from the front
  /// of `[first, last)` as there is room for now.
  ///
  /// Any thread; never blocks; may allocate.
  /// @param first the first item to append.
  /// @param last the end of the items.
  /// @return the number of items added (the first ones of the range); 0 if the queue is full or
  ///         shut down. The rest stay with the caller, untouched.
  /// @throws as `put_all`.
  template <std::input_iterator It, std::sentinel_for<It> Sentinel>
  requires std::is_constructible_v<T, std::iter_reference_t<It>>
  [[nodiscard]] std::size_t try_put_all(It first, Sentinel last) {
    return put_all_until(std::move(first), std::move(last), detail::deadline::already_passed());
  }

  /// @brief Appends `item` even when the queue is full; the size may then exceed the capacity.
  ///
  /// For consumers that produce follow-up work: a consumer that blocked in `put` on a full queue
  /// could stop the only threads that drain it. Use it for work created *by* consumers; outside
  /// producers should use `put` so the capacity bounds them.
  /// Any thread; never blocks; may allocate.
  /// @param item the item to move in; moved from only when the call returns `true`.
  /// @return `false` only if the queue is shut down.
  /// @throws whatever T's move constructor or the allocator throws; nothing is added then.
  [[nodiscard]] bool force_put(T&& item) {
    wake_on_exit wake_getter{m_not_empty, m_getters};
    std::lock_guard lock(m_mutex);
    if (m_shut_down) {
      return false;
    }
    push_locked(wake_getter, std::move(item));
    return true;
  }

  /// @brief Removes and returns the oldest item, blocking while the queue is empty.
  ///
  /// Any thread; blocks while empty and open; allocates only if T's move does.
  /// Memory ordering: see the class description.
  /// @return the item; `std::nullopt` once the queue is shut down and has nothing left to hand
  ///         out (after `shutdown()` the remaining items are still returned first).
  /// @throws whatever T's move (or copy) constructor throws; the item then stays at the front,
  ///         and another getter blocked on the queue is woken in this call's place.
  [[nodiscard]] std::optional<T> get() { return get_until(detail::deadline::never()); }

  /// @brief Removes and returns the oldest item if there is one now. Any thread; never blocks.
  /// @return the item, or `std::nullopt` if the queue is empty.
  /// @throws whatever T's move (or copy) constructor throws; the item then stays queued.
  [[nodiscard]] std::optional<T> try_get() { return get_until(detail::deadline::already_passed()); }

  /// @brief Removes and returns the oldest item, waiting at most `timeout` for one.
  ///
  /// Any thread; blocks for at most `timeout` (one deadline); a zero or negative timeout makes a
  /// single non-blocking attempt.
  /// @param timeout the longest time to wait for an item.
  /// @return the item, or `std::nullopt` on timeout or when shut down and empty.
  /// @throws whatever T's move (or copy) constructor throws; the item then stays queued.
  template <class Rep, class Period>
  [[nodiscard]] std::optional<T> try_get_for(const std::chrono::duration<Rep, Period>& timeout) {
    return get_until(detail::deadline::after(timeout));
  }

  /// @brief Removes and returns the oldest item, waiting until the absolute time `when` for one.
  ///
  /// Any thread; blocks until `when` at most. `when` may be on any clock; it is converted once
  /// into a steady-clock deadline, as in `try_put_until`. A `when` already past makes a single
  /// non-blocking attempt.
  /// @param when the time after which the call gives up.
  /// @return the item, or `std::nullopt` on timeout or when shut down and empty.
  /// @throws whatever T's move (or copy) constructor or `Clock::now()` throws; the item then
  ///         stays queued.
  template <class Clock, class Duration>
  [[nodiscard]] std::optional<T> try_get_until(const std::chrono::time_point<Clock, Duration>& when) {
    return get_until(detail::deadline::at(when));
  }

  /// @brief As `get()`, and a stop request on `stop` ends the wait, as it ends a
  /// `std::condition_variable_any` wait that takes a `std::stop_token`.
  ///
  /// An item that is there is always handed out, even when stop has been requested: the stop only
  /// ends the *wait*. So the call returns an item if the queue has one (now or once one arrives),
  /// and `std::nullopt` once the queue is empty and either stop has been requested on `stop`
  /// (before or during the call) or the queue is shut down. A `stop` without a stop state
  /// (`std::stop_token{}`) makes this exactly `get()`.
  /// Any thread, except one that holds the queue's mutex: `request_stop()` runs the wake-up (which
  /// takes the mutex) on the requesting thread, so it must not be called from T's constructors or
  /// destructor while they run inside a member of this queue.
  /// Blocks while empty, open and not stopped; allocates only what `std::stop_callback`
  /// registration and T's move allocate (the standard library's registration does not allocate).
  /// Memory ordering: as `get()`; in addition, `request_stop()` happens-before a return of
  /// `std::nullopt` because of it.
  /// Lifetime: the stop callback is unregistered before the call returns, so once it has
  /// returned, stop requests touch nothing of the queue.
  /// @param stop the token whose stop request ends the wait.
  /// @return the item, or `std::nullopt` as described above.
  /// @throws whatever T's move (or copy) constructor throws; the item then stays at the front,
  ///         and another getter blocked on the queue is woken in this call's place.
  [[nodiscard]] std::optional<T> get(std::stop_token stop) {
    wake_on_exit wake_putter{m_not_full, m_putters};  // destroyed last: notifies after the unlock
    // Constructed before the lock: if stop is already requested, the callback runs right here and
    // takes the mutex. Destroyed after the unlock: if the callback is running on the requesting
    // thread, the destructor waits for it, and it needs the mutex.
    const std::stop_callback wake_on_stop(stop, [this]() noexcept { wake_getters_for_stop(); });
    std::unique_lock lock(m_mutex);
    (void)sleep_until(m_not_empty, m_getters, lock, detail::deadline::never(),
                      [this, &stop] { return m_shut_down || !m_items.empty() || stop.stop_requested(); });
    if (m_items.empty()) {
      return std::nullopt;
    }
    return take_front(lock, wake_putter);
  }

  /// @brief Removes and returns up to `max_items` of the oldest items at once, under one lock;
  /// blocks until there is at least one (or the queue is shut down).
  ///
  /// It takes `min(max_items, size())` items as soon as the queue holds one or more; it does not
  /// wait for `max_items` to arrive. Each removed item still needs its own `task_done()`. The
  /// freed slots wake up to as many sleeping putters. After `shutdown()` it hands out what is
  /// left, in batches, and then returns an empty vector without blocking.
  /// Any thread; blocks while empty and open; allocates the returned vector.
  /// Memory ordering: as `get()`, for each item.
  /// @param max_items the most items to take; must be at least 1.
  /// @return the items, oldest first; empty only once the queue is shut down and has nothing left.
  /// @throws std::invalid_argument if `max_items` is 0. std::bad_alloc, or whatever T's move (or
  ///         copy) constructor throws: then nothing was removed (items are moved out only if that
  ///         cannot throw, and otherwise copied), and another getter blocked on the queue is woken
  ///         in this call's place.
  [[nodiscard]] std::vector<T> get_up_to(std::size_t max_items) {
    if (max_items == 0) {
      throw std::invalid_argument("flowpool::bounded_queue::get_up_to: max_items must be at least 1 (got 0)");
    }
    std::vector<T> taken;  // declared before the lock: on a throw its copies are destroyed unlocked
    wake_on_exit wake_putters{m_not_full, m_putters};  // notifies after the unlock
    std::unique_lock lock(m_mutex);
    (void)sleep_until(m_not_empty, m_getters, lock, detail::deadline::never(),
                      [this] { return m_shut_down || !m_items.empty(); });
    const std::size_t count = max_items < m_items.size() ? max_items : m_items.size();
    if (count == 0) {
      return taken;
    }
    try {
      taken.reserve(count);
      for (std::size_t i = 0; i < count; ++i) {
        taken.emplace_back(std::move_if_noexcept(m_items.at_offset(i)));
      }
    } catch (...) {
      // Nothing was removed, so the items this getter may have been woken for are still there.
      pass_on_wake_up(m_not_empty, m_getters, lock);
      throw;
    }
    for (std::size_t i = 0; i < count; ++i) {
      pop_front_locked(wake_putters);  // one putter per slot freed below the capacity
    }
    return taken;
  }

  /// @brief Marks one item previously received from the queue as fully processed.
  ///
  /// Any thread; never blocks (beyond the queue's mutex); never allocates.
  /// Memory ordering: this call happens-before the return of any `join()` it releases.
  /// Lifetime: it notifies the released joiners before it releases the mutex and then touches
  /// nothing of the queue, so a released `join()` caller may destroy the queue at once.
  /// @throws std::logic_error if the unfinished count is already 0 (called more often than items
  ///         were put); the count stays unchanged.
  void task_done() {
    std::lock_guard lock(m_mutex);
    // Declared after the lock, so it notifies before the unlock: once the mutex is released this
    // call touches nothing of the queue, and a released join() caller may destroy it at once.
    wake_on_exit wake_joiners{m_all_done, m_joiners};
    if (m_unfinished == 0) {
      throw std::logic_error(
          "flowpool::bounded_queue::task_done(): called more times than items were put "
          "(the unfinished count is already 0)");
    }
    --m_unfinished;
    if (m_unfinished == 0) {
      wake_joiners.arm_all();
    }
  }

  /// @brief Blocks until every item ever put has been marked done with `task_done()` (or removed
  /// by `shutdown_now()`). Returns at once if nothing is unfinished; may be called again and again.
  ///
  /// Any thread; blocks; never allocates; never throws.
  /// Memory ordering: every `task_done()` that counted towards zero happens-before the return.
  /// Lifetime: once it returns, the caller may destroy the queue at once, even while the
  /// `task_done()` or `shutdown_now()` that released it is still returning (see the class
  /// description for the other threads).
  void join() noexcept { (void)join_until(detail::deadline::never()); }

  /// @brief As `join()`, waiting at most `timeout`.
  /// @param timeout the longest time to wait; zero or negative checks once without blocking.
  /// @return `true` if the unfinished count reached 0; `false` on timeout.
  template <class Rep, class Period>
  [[nodiscard]] bool join_for(const std::chrono::duration<Rep, Period>& timeout) noexcept {
    return join_until(detail::deadline::after(timeout));
  }

  /// @brief Graceful shutdown: puts fail from now on; gets hand out what is left, then return
  /// `std::nullopt` without blocking. Wakes every thread blocked in `put` (they return `false`)
  /// and in `get` on an empty queue (they return `std::nullopt`). Idempotent.
  ///
  /// Any thread; never blocks (beyond the queue's mutex); never allocates; never throws.
  /// Memory ordering: happens-before every call that fails because of it.
  /// Lifetime: it notifies before it releases the mutex and then touches nothing of the queue, so
  /// a thread whose `get`/`put` it ended may destroy the queue at once.
  void shutdown() noexcept {
    std::lock_guard lock(m_mutex);
    // Declared after the lock: they notify before the unlock (see Lifetime; shutdown is rare).
    wake_on_exit wake_getters{m_not_empty, m_getters};
    wake_on_exit wake_putters{m_not_full, m_putters};
    m_shut_down = true;
    wake_getters.arm_all();
    wake_putters.arm_all();
  }

  /// @brief Immediate shutdown: as `shutdown()`, and removes every queued item and returns them
  /// in FIFO order. Each removed item counts as done (the unfinished count drops by their number,
  /// never below zero), which may release `join()`. Items already handed out by `get` still need
  /// their `task_done()`. May be called after `shutdown()` to drain what is left.
  ///
  /// Any thread; never blocks (beyond the queue's mutex); allocates the returned vector.
  /// Memory ordering: every `put` of a returned item happens-before the return; the call
  /// happens-before every call that fails because of it and the return of a `join()` it releases.
  /// Lifetime: as `shutdown()`; a released `join()` caller may destroy the queue at once.
  /// @return the removed items, oldest first.
  /// @throws std::bad_alloc if the vector cannot be allocated: then nothing changed at all.
  ///         If T's move (or copy) constructor throws, the queue is shut down (gracefully) and
  ///         every item stays queued, to be drained by `get` or another `shutdown_now()`.
  [[nodiscard]] std::vector<T> shutdown_now() {
    std::vector<T> removed;  // declared before the lock: on a throw its items are destroyed unlocked
    std::lock_guard lock(m_mutex);
    // Declared after the lock: they notify before the unlock, also when a move throws (see Lifetime).
    wake_on_exit wake_getters{m_not_empty, m_getters};
    wake_on_exit wake_putters{m_not_full, m_putters};
    wake_on_exit wake_joiners{m_all_done, m_joiners};
    removed.reserve(m_items.size());
    m_shut_down = true;
    wake_getters.arm_all();
    wake_putters.arm_all();
    for (std::size_t i = 0; i < m_items.size(); ++i) {
      removed.emplace_back(std::move_if_noexcept(m_items.at_offset(i)));
    }
    const std::size_t count = m_items.size();
    m_items.clear();
    m_unfinished -= count < m_unfinished ? count : m_unfinished;
    if (m_unfinished == 0) {
      wake_joiners.arm_all();
    }
    return removed;
  }

  /// @brief The number of queued items, possibly stale by the time it returns. Any thread; never throws.
  /// @return the current size.
  [[nodiscard]] std::size_t size() const noexcept {
    std::lock_guard lock(m_mutex);
    return m_items.size();
  }

  /// @brief The bound given at construction. Any thread; never blocks; never throws.
  /// @return the capacity.
  [[nodiscard]] std::size_t capacity() const noexcept { return m_items.soft_capacity(); }

  /// @brief Whether `size() == 0`, possibly stale by the time it returns. Any thread; never throws.
  /// @return true if empty.
  [[nodiscard]] bool empty() const noexcept { return size() == 0; }

  /// @brief Whether `size() >= capacity()`, possibly stale by the time it returns. Any thread; never throws.
  /// @return true if full.
  [[nodiscard]] bool full() const noexcept { return size() >= capacity(); }

  /// @brief Items put and not yet marked done. Any thread; never throws.
  /// @return the unfinished count.
  [[nodiscard]] std::size_t unfinished() const noexcept {
    std::lock_guard lock(m_mutex);
    return m_unfinished;
  }

  /// @brief Whether `shutdown()` or `shutdown_now()` has been called. Any thread; never throws.
  /// @return true once shut down (it never becomes false again).
  [[nodiscard]] bool is_shut_down() const noexcept {
    std::lock_guard lock(m_mutex);
    return m_shut_down;
  }

  /// @brief The largest size the queue has had. Any thread; never throws.
  /// @return the high-water mark (it can exceed the capacity only through `force_put`).
  [[nodiscard]] std::size_t high_water_mark() const noexcept {
    std::lock_guard lock(m_mutex);
    return m_high_water;
  }

 private:
  // The threads asleep on one condition variable, split by whether a notify is already on its
  // way to them. Guarded by m_mutex.
  //
  // A notifier wakes someone only while `unsignalled` is non-zero. Without the split, every put
  // made between waking a getter and that getter re-taking the mutex would call notify_one
  // again, and pthread_cond_signal costs two atomic read-modify-writes on the condition
  // variable's cache line even when nobody is left to wake (a third of all CPU time in the 1 -> 1
  // benchmark of bench/queue before this change).
  //
  // Invariant: unsignalled + signalled is the number of threads between went_to_sleep() and
  // woke(). A thread that wakes up for any reason (notify, spurious wake-up, timeout) gives back
  // a signal if one is outstanding, otherwise an unsignalled count; taking a signal meant for
  // another thread is harmless because that thread then gives back an unsignalled count. Hence,
  // at any time, the threads blocked in wait() number at most `unsignalled` plus the notifies
  // claimed and not yet delivered: when `unsignalled` is 0, every blocked thread has a notify
  // coming, and otherwise the next state change claims one. Every woken thread re-checks the
  // predicate under the mutex, so a waiter that times out consumes the state it was told about
  // instead of swallowing the wake-up.
  struct sleepers {
    std::uint32_t unsignalled = 0;  // asleep, and no notify sent their way yet
    std::uint32_t signalled = 0;    // notifies sent that no woken thread has given back yet

    // Claims one sleeper for a notify_one; false if every sleeper already has a notify coming.
    bool claim_one() noexcept {
      if (unsignalled == 0) {
        return false;
      }
      --unsignalled;
      ++signalled;
      return true;
    }
    // Claims every sleeper for a notify_all; false if every sleeper already has a notify coming.
    bool claim_all() noexcept {
      const bool any = unsignalled != 0;
      signalled += unsignalled;
      unsignalled = 0;
      return any;
    }
    void went_to_sleep() noexcept { ++unsignalled; }
    void woke() noexcept {
      if (signalled != 0) {
        --signalled;
      } else {
        --unsignalled;
      }
    }
  };

  // Notifies a condition variable when the scope ends (or at flush()). Arming (and claiming the
  // sleepers it will wake) is done under the lock; the notify itself needs no lock. Each arm_one()
  // claims at most one more sleeper (so a batch that adds or frees k slots claims up to k) and
  // the destructor sends exactly what was claimed, so the sleepers' counts match the notifies sent. Where it is
  // declared decides when it notifies:
  // - before the lock (put, get: the hot paths): after the unlock, so the woken thread does not
  //   immediately block on the mutex we still hold;
  // - after the lock (task_done, shutdown, shutdown_now: the calls that end a wait for "done"):
  //   before the unlock, so that after its unlock the call touches nothing of the queue and the
  //   thread it released may destroy the queue at once (see Lifetime in the class description).
  class wake_on_exit {
   public:
    wake_on_exit(std::condition_variable& cv, sleepers& sleeping) noexcept : m_cv(cv), m_sleeping(sleeping) {}
    wake_on_exit(const wake_on_exit&) = delete;
    wake_on_exit& operator=(const wake_on_exit&) = delete;
    ~wake_on_exit() { flush(); }
    // Wakes one more sleeper that has no notify coming yet, if there is one.
    void arm_one() noexcept {
      if (!m_all && m_sleeping.claim_one()) {
        ++m_count;
      }
    }
    // Wakes every sleeper, unless every one of them already has a notify coming.
    void arm_all() noexcept {
      if (m_sleeping.claim_all()) {
        m_all = true;
      }
    }
    // Sends the notifies armed so far now, and disarms. put_all calls it, under the lock, before
    // it sleeps for room: the getters it woke are the ones that make that room.
    void flush() noexcept {
      if (m_all) {
        m_cv.notify_all();
      } else {
        for (; m_count != 0; --m_count) {
          m_cv.notify_one();
        }
      }
      m_all = false;
      m_count = 0;
    }

   private:
    std::condition_variable& m_cv;
    sleepers& m_sleeping;
    std::size_t m_count = 0;  // notify_one calls owed (sleepers claimed one at a time)
    bool m_all = false;       // a notify_all is owed instead (it covers the counted ones too)
  };

  // Pops the front item when the scope ends without an exception, i.e. after the caller's return
  // value has been move-constructed from it. If that move (or copy) throws, the item stays queued
  // and the wake-up this getter may have been sent for it is handed on to another sleeping getter
  // (issue 9, item 2), which releases `lock` before the exception leaves get.
  // Used only when the take can throw (k_nothrow_take is false).
  class pop_on_success {
   public:
    pop_on_success(bounded_queue& queue, std::unique_lock<std::mutex>& lock, wake_on_exit& wake_putter) noexcept
        : m_queue(queue), m_lock(lock), m_wake_putter(wake_putter) {}
    pop_on_success(const pop_on_success&) = delete;
    pop_on_success& operator=(const pop_on_success&) = delete;
    ~pop_on_success() {
      if (std::uncaught_exceptions() == m_exceptions) {
        m_queue.pop_front_locked(m_wake_putter);
      } else {
        pass_on_wake_up(m_queue.m_not_empty, m_queue.m_getters, m_lock);
      }
    }

   private:
    bounded_queue& m_queue;
    std::unique_lock<std::mutex>& m_lock;
    wake_on_exit& m_wake_putter;
    int m_exceptions = std::uncaught_exceptions();
  };

  // Whether taking the front item out (with std::move_if_noexcept) cannot throw; then get needs
  // no pop_on_success guard and its two std::uncaught_exceptions() calls under the lock.
  static constexpr bool k_nothrow_take =
      std::is_nothrow_constructible_v<T, decltype(std::move_if_noexcept(std::declval<T&>()))>;

  static std::size_t checked(std::size_t capacity) {
    if (capacity == 0) {
      throw std::invalid_argument("flowpool::bounded_queue: capacity must be at least 1 (got 0)");
    }
    return capacity;
  }

  // Sleeps on `cv` until `ready()` holds or `deadline` passes, one wait() at a time so that
  // `sleeping` is told of every wake-up (see sleepers). After a timeout, ready() is checked once
  // more, so a waiter whose timeout races with a notify still takes the state it was woken for.
  // Precondition: `lock` holds m_mutex. Returns ready().
  template <class Ready>
  static bool sleep_until(std::condition_variable& cv, sleepers& sleeping, std::unique_lock<std::mutex>& lock,
                          const detail::deadline& deadline, Ready ready) {
    while (!ready()) {
      if (deadline.passed()) {
        return false;
      }
      sleeping.went_to_sleep();
      // The predicate is false on its first call and true on its second, so deadline::wait
      // returns after exactly one wake-up (notify, spurious or timeout) or at once if the
      // deadline has passed; the loop re-checks both.
      bool woken = false;
      (void)deadline.wait(cv, lock, [&woken] { return std::exchange(woken, true); });
      sleeping.woke();
    }
    return true;
  }

  // Called when a thread's put or get threw after it had passed its wait (the item, or the room,
  // is still there: the strong guarantee). That thread may have been the one sleeper a notify was
  // claimed for (see sleepers); it has given the notify back in woke(), so without this the state
  // change would stay unannounced to the others, which would sleep on (issue 9, item 2). So it
  // claims one more sleeper of the same condition variable, releases `lock` and notifies it,
  // exactly as wake_on_exit would. If the thread had not used up a notify (it never slept, or
  // woke spuriously), this costs one extra wake-up, on an exception path only; the woken thread
  // re-checks its condition as every woken thread does.
  // Precondition: `lock` holds m_mutex. Postcondition: it does not.
  static void pass_on_wake_up(std::condition_variable& cv, sleepers& sleeping,
                              std::unique_lock<std::mutex>& lock) noexcept {
    const bool claimed = sleeping.claim_one();
    lock.unlock();
    if (claimed) {
      cv.notify_one();
    }
  }

  template <class U>
  bool put_until(U&& item, const detail::deadline& deadline) {
    return emplace_until(deadline, std::forward<U>(item));
  }

  template <class... Args>
  bool emplace_until(const detail::deadline& deadline, Args&&... args) {
    wake_on_exit wake_getter{m_not_empty, m_getters};  // destroyed last: notifies after the unlock
    std::unique_lock lock(m_mutex);
    if (!sleep_until(m_not_full, m_putters, lock, deadline,
                     [this] { return m_shut_down || m_items.size() < capacity(); }) ||
        m_shut_down) {
      return false;
    }
    try {
      push_locked(wake_getter, std::forward<Args>(args)...);
    } catch (...) {
      // T's constructor or the storage growth threw, so nothing was added and the room this
      // putter may have been woken for is still there: hand that wake-up on (issue 9, item 2).
      // Zero cost until something throws (table-based unwinding), so no `if constexpr` here:
      // growth may throw std::bad_alloc whatever T is.
      pass_on_wake_up(m_not_full, m_putters, lock);
      throw;
    }
    return true;
  }

  template <class It, class Sentinel>
  std::size_t put_all_until(It first, Sentinel last, const detail::deadline& deadline) {
    wake_on_exit wake_getters{m_not_empty, m_getters};  // destroyed last: the final notifies go after the unlock
    std::unique_lock lock(m_mutex);
    std::size_t added = 0;
    while (first != last) {
      if (!m_shut_down && m_items.size() >= capacity()) {
        wake_getters.flush();  // about to sleep: the getters woken for our items make the room
      }
      if (!sleep_until(m_not_full, m_putters, lock, deadline,
                       [this] { return m_shut_down || m_items.size() < capacity(); }) ||
          m_shut_down) {
        break;
      }
      try {
        do {
          push_locked(wake_getters, *first);  // one getter woken per item
          ++added;
          ++first;
        } while (first != last && m_items.size() < capacity());
      } catch (...) {
        // The items before this one stay (their getters are woken after the unlock); the room
        // this putter may have been woken for is still there: hand that wake-up on (as emplace_until).
        pass_on_wake_up(m_not_full, m_putters, lock);
        throw;
      }
    }
    return added;
  }

  template <class... Args>
  void push_locked(wake_on_exit& wake_getter, Args&&... args) {
    m_items.emplace_back(std::forward<Args>(args)...);  // may throw: nothing has changed yet
    ++m_unfinished;
    if (m_items.size() > m_high_water) {
      m_high_water = m_items.size();
    }
    wake_getter.arm_one();
  }

  // Precondition: the mutex is held and the queue is not empty.
  void pop_front_locked(wake_on_exit& wake_putter) noexcept {
    m_items.pop_front();
    if (m_items.size() < capacity()) {
      wake_putter.arm_one();
    }
  }

  std::optional<T> get_until(const detail::deadline& deadline) {
    wake_on_exit wake_putter{m_not_full, m_putters};  // destroyed last: notifies after the unlock
    std::unique_lock lock(m_mutex);
    (void)sleep_until(m_not_empty, m_getters, lock, deadline, [this] { return m_shut_down || !m_items.empty(); });
    if (m_items.empty()) {
      return std::nullopt;
    }
    return take_front(lock, wake_putter);
  }

  // Precondition: `lock` holds the mutex and the queue is not empty. If taking the item can
  // throw, the returned prvalue is built directly in the caller's return slot (guaranteed copy
  // elision) before pop_on_success pops the front, so a throw leaves it queued (and hands the
  // wake-up on). If it cannot throw, nothing of that is compiled in.
  std::optional<T> take_front([[maybe_unused]] std::unique_lock<std::mutex>& lock,
                              wake_on_exit& wake_putter) noexcept(k_nothrow_take) {
    if constexpr (k_nothrow_take) {
      std::optional<T> item(std::in_place, std::move_if_noexcept(m_items.front()));
      pop_front_locked(wake_putter);
      return item;
    } else {
      pop_on_success pop{*this, lock, wake_putter};
      return std::optional<T>(std::in_place, std::move_if_noexcept(m_items.front()));
    }
  }

  // The stop callback of get(std::stop_token): wakes every getter (the simplest correct accounting;
  // stop requests are rare), and the one whose token was stopped sees stop_requested() when it
  // re-checks under the mutex. If every sleeper already has a notify coming (see sleepers), the
  // stopped getter is among them and needs nothing more. Runs on the requesting thread, or inline
  // in the stop_callback's constructor; never with the mutex held by the caller.
  // Always notify_all: a stop concerns one getter, and notifies are not addressed, so "every
  // sleeper already has a notify coming" (arm_all() sending nothing) does not mean the stopped one
  // will be woken: another getter may take those notifies, and the stopped one would sleep on with
  // the queue empty. Notifying every sleeper keeps the counts right (each woken thread gives back
  // one signal or one unsignalled count) and costs little: stop requests are rare.
  void wake_getters_for_stop() noexcept {
    std::lock_guard lock(m_mutex);
    (void)m_getters.claim_all();
    m_not_empty.notify_all();  // under the lock: the getter re-checks stop_requested() after it
  }

  bool join_until(const detail::deadline& deadline) noexcept {
    std::unique_lock lock(m_mutex);
    return sleep_until(m_all_done, m_joiners, lock, deadline, [this] { return m_unfinished == 0; });
  }

  // Two cache lines: the pair that adjacent-line prefetchers move together.
  static constexpr std::size_t k_hot_block = 2 * detail::k_cache_line;

  // Hot block: the mutex and every field put/get touch under it, packed right behind it into
  // one k_hot_block (exactly 128 bytes with glibc's 40-byte mutex), so handing the lock to another
  // core moves the whole state at once. Any thread reads and writes these fields, always under
  // m_mutex; the only exception is the capacity inside m_items, which never changes.
  alignas(k_hot_block) mutable std::mutex m_mutex;
  bool m_shut_down = false;
  sleepers m_getters;  // threads asleep on m_not_empty
  sleepers m_putters;  // threads asleep on m_not_full
  sleepers m_joiners;  // threads asleep on m_all_done
  std::size_t m_unfinished = 0;
  detail::ring_buffer<T> m_items;  // its soft capacity is the queue's capacity
  std::size_t m_high_water = 0;
  // Cold block: touched only when a thread waits or is woken, so waking never drags the hot
  // block's lines away from the lock holder. Each condition variable is thread-safe on its own.
  alignas(k_hot_block) std::condition_variable m_not_empty;  // getters wait here; put and shutdown notify
  std::condition_variable m_not_full;                        // putters wait here; get and shutdown notify
  std::condition_variable m_all_done;                        // joiners wait here; task_done and shutdown_now notify
};

}  // namespace flowpool
