// Internal: the per-worker Chase-Lev work-stealing deque.
//
// Algorithm: D. Chase and Y. Lev, "Dynamic circular work-stealing deque" (SPAA 2005), with the
// C11 memory orderings proved correct by N. M. Le, A. Pop, A. Cohen and F. Zappa Nardelli,
// "Correct and efficient work-stealing for weak memory models" (PPoPP 2013). Each access below
// carries the ordering of that paper's Figure 1; under FLOWPOOL_TSAN the fences become seq_cst
// accesses (see atomics.hpp).
//
// Roles: one owner thread calls push() and pop() at the bottom (newest end); any number of
// thieves call steal() at the top (oldest end). The owner is debug-asserted (bind_owner()).
//
// Storage: a circular buffer of atomic<T> that doubles when full. The old buffer may still be read
// by a thief that loaded its pointer before the swap, so it is retired to a list and freed only
// when the deque is destroyed; geometric growth bounds the total at twice the final buffer.
#pragma once

#include "common/atomics.hpp"

#include <flowpool/detail/config.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <thread>
#include <type_traits>

namespace flowpool::detail {

// The outcome of a steal attempt: never a bare bool, because the idle logic reacts differently.
enum class steal_outcome : std::uint8_t {
  success,    // `value` holds the stolen element
  empty,      // the deque had nothing to steal: move on to another victim
  lost_race,  // another thief (or the owner, for the last element) took it first: retry soon
};

template <class T>
struct steal_result {
  steal_outcome outcome;
  T value;  // meaningful only on success
};

template <class T>
class chase_lev_deque {
  static_assert(std::is_trivially_copyable_v<T> && std::atomic<T>::is_always_lock_free,
                "deque elements are single lock-free words (e.g. pointers)");

 public:
  // Capacity is rounded up to a power of two (at least 2).
  explicit chase_lev_deque(std::size_t initial_capacity = 256)
      : m_buffer(new buffer(round_up(initial_capacity), nullptr)) {}

  chase_lev_deque(const chase_lev_deque&) = delete;
  chase_lev_deque& operator=(const chase_lev_deque&) = delete;

  ~chase_lev_deque() {
    buffer* b = m_buffer.load(std::memory_order_relaxed);  // relaxed: no thread uses the deque now
    while (b != nullptr) {
      buffer* older = b->retired;
      delete b;
      b = older;
    }
  }

  // Debug builds assert that push()/pop()/make_room() run on this thread from now on.
  void bind_owner(std::thread::id owner) noexcept {
#if !defined(NDEBUG)
    m_owner = owner;
#else
    (void)owner;
#endif
  }

  // Owner: reserves room for one more push(), growing the buffer if needed. Reservations nest:
  // the pool reserves before it constructs a task, and constructing it (a user's copy
  // constructor) may itself submit to the pool from this worker, reserving and pushing again;
  // every reservation keeps its own room, so the outer push() can never overwrite a slot.
  // Throws std::bad_alloc (the deque is unchanged and nothing is reserved then).
  void make_room() {
    assert_owner();
    const std::int64_t b = m_bottom.load(std::memory_order_relaxed);  // relaxed: only the owner writes it
    // acquire, pairs with: steal()'s CAS on m_top, so the slots thieves vacated may be reused.
    const std::int64_t t = m_top.load(std::memory_order_acquire);
    buffer* a = m_buffer.load(std::memory_order_relaxed);  // relaxed: only the owner writes it
    if (b - t + m_reserved >= a->capacity) {
      grow(a, t, b);
    }
    ++m_reserved;
  }

  // Owner: gives back a reservation that will not be pushed.
  void cancel_room() noexcept {
    assert_owner();
    FLOWPOOL_ASSERT(m_reserved > 0);
    --m_reserved;
  }

  // Owner: pushes `value` at the bottom, using a reservation made by make_room().
  void push(T value) noexcept {
    assert_owner();
    FLOWPOOL_ASSERT(m_reserved > 0);
    --m_reserved;
    const std::int64_t b = m_bottom.load(std::memory_order_relaxed);  // relaxed: only the owner writes it
    buffer* a = m_buffer.load(std::memory_order_relaxed);             // relaxed: only the owner writes it
    // Holds by construction (every push has its reservation); checking it in release builds would
    // cost a load of m_top, the line thieves write, on every push.
    FLOWPOOL_ASSERT(b - m_top.load(std::memory_order_relaxed) < a->capacity);
    a->at(b).store(value, std::memory_order_relaxed);  // relaxed: published by the bottom store below
    // Release fence + relaxed store (paper): publishes the slot (and what `value` points to) to
    // steal()'s acquire load of m_bottom. pairs with: steal() `m_bottom.load(acquire)`.
    fence_release();
    m_bottom.store(b + 1, k_fenced_release);
  }

  // Owner: pushes `value`, growing the buffer if needed. Throws std::bad_alloc.
  void push_growing(T value) {
    make_room();
    push(value);
  }

  // Owner: pops the newest element, or nullopt if the deque is empty (or a thief won the last one).
  std::optional<T> pop() noexcept {
    assert_owner();
    const std::int64_t b = m_bottom.load(std::memory_order_relaxed) - 1;  // relaxed: owner-only writer
    buffer* a = m_buffer.load(std::memory_order_relaxed);                 // relaxed: owner-only writer
    // Reserve slot b before looking at m_top. The seq_cst fence is the Dekker fence of the paper:
    // a thief either sees the reduced bottom or this pop sees the thief's top increment.
    // pairs with: the fence in steal() between its m_top and m_bottom loads.
    m_bottom.store(b, k_fenced);
    fence_seq_cst();
    std::int64_t t = m_top.load(k_fenced);
    if (t > b) {                                         // was empty
      m_bottom.store(b + 1, std::memory_order_relaxed);  // relaxed: restores the owner's own value
      return std::nullopt;
    }
    T value = a->at(b).load(std::memory_order_relaxed);  // relaxed: the owner wrote it
    if (t == b) {
      // The last element: race thieves for it with the same CAS they use.
      // seq_cst, pairs with: steal()'s CAS on m_top (one of the two wins).
      const bool won = m_top.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst, std::memory_order_relaxed);
      m_bottom.store(b + 1, std::memory_order_relaxed);  // relaxed: owner-only; the deque is empty again
      if (!won) {
        return std::nullopt;
      }
    }
    return value;
  }

  // Any thread: takes the oldest element.
  steal_result<T> steal() noexcept {
    // acquire, pairs with: the CAS on m_top of other thieves / pop() (we read the slot after it).
    std::int64_t t = m_top.load(k_fenced_acquire);
    // pairs with: the fence in pop() (Dekker: see pop()).
    fence_seq_cst();
    // acquire, pairs with: push()'s release fence + store of m_bottom; makes the slot readable.
    const std::int64_t b = m_bottom.load(k_fenced_acquire);
    if (t >= b) {
      return {steal_outcome::empty, T{}};
    }
    // acquire (the paper's consume), pairs with: grow()'s release store of m_buffer.
    buffer* a = m_buffer.load(std::memory_order_acquire);
    T value = a->at(t).load(std::memory_order_relaxed);  // relaxed: ordered by the m_bottom acquire
    // seq_cst, pairs with: other thieves' CAS and pop()'s CAS on the last element.
    if (!m_top.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst, std::memory_order_relaxed)) {
      return {steal_outcome::lost_race, T{}};
    }
    return {steal_outcome::success, value};
  }

  // Any thread: true if the deque looked non-empty. A snapshot: callers that sleep on the answer
  // order it with a seq_cst fence (see the worker's park sequence). Both loads use k_fenced_acquire
  // so that under TSan they are seq_cst like the rest of that sequence.
  [[nodiscard]] bool looks_non_empty() const noexcept {
    const std::int64_t t = m_top.load(k_fenced_acquire);
    const std::int64_t b = m_bottom.load(k_fenced_acquire);
    return b > t;
  }

  // Any thread: the approximate number of elements (exact when no operation is in flight).
  [[nodiscard]] std::size_t size_estimate() const noexcept {
    const std::int64_t b = m_bottom.load(std::memory_order_relaxed);  // relaxed: an estimate
    const std::int64_t t = m_top.load(std::memory_order_relaxed);     // relaxed: an estimate
    return b > t ? static_cast<std::size_t>(b - t) : 0;
  }

  // Owner (or any thread once no other thread uses the deque): current buffer capacity.
  [[nodiscard]] std::size_t capacity() const noexcept {
    return static_cast<std::size_t>(m_buffer.load(std::memory_order_relaxed)->capacity);  // relaxed: owner's own write
  }

 private:
  struct buffer {
    buffer(std::int64_t cap, buffer* older)
        : capacity(cap), mask(cap - 1), slots(new atomic<T>[static_cast<std::size_t>(cap)]), retired(older) {}
    atomic<T>& at(std::int64_t i) noexcept { return slots[static_cast<std::size_t>(i & mask)]; }
    std::int64_t capacity;
    std::int64_t mask;
    std::unique_ptr<atomic<T>[]> slots;
    buffer* retired;  // the buffer this one replaced, kept alive for late thieves
  };

  static std::int64_t round_up(std::size_t n) noexcept {
    std::int64_t cap = 2;
    while (static_cast<std::size_t>(cap) < n) {
      cap *= 2;
    }
    return cap;
  }

  void grow(buffer* old, std::int64_t t, std::int64_t b) {
    auto* bigger = new buffer(old->capacity * 2, old);
    for (std::int64_t i = t; i < b; ++i) {
      // relaxed: the owner wrote these slots; thieves read them only after the release below.
      bigger->at(i).store(old->at(i).load(std::memory_order_relaxed), std::memory_order_relaxed);
    }
    // release, pairs with: steal()'s acquire load of m_buffer; publishes the copied slots.
    m_buffer.store(bigger, std::memory_order_release);
  }

  void assert_owner() const noexcept {
#if !defined(NDEBUG)
    FLOWPOOL_ASSERT(m_owner == std::thread::id{} || m_owner == std::this_thread::get_id());
#endif
  }

  // Thieves CAS it; the owner CASes it only for the last element. Own line: thieves hammer it.
  alignas(k_cache_line) atomic<std::int64_t> m_top{0};
  // Written only by the owner; read by thieves. Own line, with the owner's buffer pointer.
  alignas(k_cache_line) atomic<std::int64_t> m_bottom{0};
  atomic<buffer*> m_buffer;     // written only by the owner (grow); read by thieves
  std::int64_t m_reserved = 0;  // owner-only: make_room() calls not yet used by push() or cancel_room()
#if !defined(NDEBUG)
  std::thread::id m_owner{};
#endif
};

}  // namespace flowpool::detail
