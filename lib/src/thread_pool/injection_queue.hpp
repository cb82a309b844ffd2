// Internal: the bounded MPMC injection queue for tasks submitted from outside the pool.
//
// Algorithm: D. Vyukov's bounded MPMC queue: a ring of cells, each with a sequence number that
// says whose turn the cell is. Sequence numbers count in half-steps, so that a capacity of 1 works
// (with whole steps, "published for consumer p" and "free for producer p + 1" would both be
// p + 1): the cell is free for the producer of position p when seq == 2p, holds a task for the
// consumer of p when seq == 2p + 1, and becomes free for producer p + capacity when the consumer
// stores 2(p + capacity).
// A producer claims a cell with a CAS on the enqueue position and then owns it exclusively, so
// the task is constructed in place (no allocation per task, non-trivial types are safe), then
// published by storing its sequence number. The capacity is exact (any value, not only powers of
// two: positions are mapped to cells with a mask when the capacity is a power of two, with a
// division otherwise).
//
// Closing: bit 63 of the enqueue position. close() sets it with one RMW, so every claim that
// succeeded is ordered before it in the position's modification order and every later claim fails.
// accepted() (the position without the bit) is then exactly the number of tasks ever accepted.
#pragma once

#include "common/atomics.hpp"

#include <flowpool/detail/config.hpp>
#include <flowpool/detail/task.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace flowpool::detail {

class injection_queue {
 public:
  struct cell {
    atomic<std::uint64_t> seq{0};
    task item;
  };

  enum class claim_status : std::uint8_t { claimed, full, closed };

  explicit injection_queue(std::size_t capacity)
      : m_capacity(capacity), m_mask((capacity & (capacity - 1)) == 0 ? capacity - 1 : 0), m_cells(new cell[capacity]) {
    for (std::size_t i = 0; i < capacity; ++i) {
      m_cells[i].seq.store(2 * i, std::memory_order_relaxed);  // relaxed: not shared yet
    }
  }

  // Producer: claims the next cell. On `claimed`, `out` is owned by the caller, who constructs
  // out->item and then calls publish(*out). Never blocks.
  claim_status try_claim(cell*& out) noexcept {
    // relaxed: the position only hands out tickets; the cell's seq carries the data.
    std::uint64_t pos = m_enqueue.load(std::memory_order_relaxed);
    for (;;) {
      if ((pos & k_closed_bit) != 0) {
        return claim_status::closed;
      }
      cell& c = at(pos);
      // acquire, pairs with: try_pop()'s release store of seq; the consumer is done with the cell.
      const std::uint64_t seq = c.seq.load(std::memory_order_acquire);
      const auto diff = static_cast<std::int64_t>(seq - 2 * pos);
      if (diff == 0) {
        // relaxed: the ticket; exclusivity comes from the CAS itself, data from seq.
        if (m_enqueue.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          out = &c;
          return claim_status::claimed;
        }
      } else if (diff < 0) {
        // The cell still holds the task of position pos - capacity: full, unless a consumer has
        // moved on since we loaded pos (then retry with a fresh position).
        const std::uint64_t now = m_enqueue.load(std::memory_order_relaxed);  // relaxed: ticket
        if (now == pos) {
          m_high_water.store(m_capacity, std::memory_order_relaxed);  // relaxed: a statistic
          return claim_status::full;
        }
        pos = now;
      } else {
        pos = m_enqueue.load(std::memory_order_relaxed);  // relaxed: ticket (another producer won)
      }
    }
  }

  // Producer: makes a claimed cell's task visible to consumers.
  void publish(cell& c) noexcept {
    const std::uint64_t seq = c.seq.load(std::memory_order_relaxed);  // relaxed: we own the cell
    // release (seq_cst under TSan: the Dekker check of the sleepers follows),
    // pairs with: try_pop()'s acquire load of seq; publishes the task.
    fence_release();
    c.seq.store(seq + 1, k_fenced_release);
  }

  // Consumer: moves the oldest published task into `out` and its position into `position`.
  // False if none is published (the queue is empty, or the oldest claimed cell is still being
  // constructed).
  bool try_pop(task& out, std::uint64_t& position) noexcept {
    std::uint64_t pos = m_dequeue.load(std::memory_order_relaxed);  // relaxed: ticket
    for (;;) {
      cell& c = at(pos);
      // acquire, pairs with: publish()'s store of seq; makes the task readable.
      const std::uint64_t seq = c.seq.load(std::memory_order_acquire);
      const auto diff = static_cast<std::int64_t>(seq - (2 * pos + 1));
      if (diff == 0) {
        // relaxed: the ticket; data comes from seq.
        if (m_dequeue.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          if ((pos & k_sample_mask) == 0) {
            note_size();  // sampled: reading m_enqueue costs a cache-line transfer
          }
          out = std::move(c.item);
          position = pos;
          // release (seq_cst under TSan: producers blocked on a full queue are checked next),
          // pairs with: try_claim()'s acquire load of seq; the cell is free again.
          fence_release();
          c.seq.store(2 * (pos + m_capacity), k_fenced_release);
          return true;
        }
      } else if (diff < 0) {
        return false;
      } else {
        pos = m_dequeue.load(std::memory_order_relaxed);  // relaxed: ticket (another consumer won)
      }
    }
  }

  // Closes the queue: every later try_claim() returns `closed`. Idempotent.
  void close() noexcept {
    // seq_cst: ordered with the blocked producers' prepare_wait() (they re-check after it).
    m_enqueue.fetch_or(k_closed_bit, std::memory_order_seq_cst);
  }

  [[nodiscard]] bool closed() const noexcept {
    return (m_enqueue.load(std::memory_order_acquire) & k_closed_bit) != 0;  // acquire: pairs with close()
  }

  // Number of tasks ever accepted (claimed). acquire: used by the quiescence check, see
  // pool_impl::quiescent().
  [[nodiscard]] std::uint64_t accepted() const noexcept {
    return m_enqueue.load(std::memory_order_acquire) & ~k_closed_bit;
  }

  // Number of tasks ever taken out by try_pop().
  [[nodiscard]] std::uint64_t consumed() const noexcept {
    return m_dequeue.load(std::memory_order_acquire);  // acquire: pairs with nothing; monotonic snapshot
  }

  // A snapshot for the park re-check: true if the oldest cell not yet popped holds a published
  // task, i.e. a try_pop() now would find one. A cell that a producer has claimed but not yet
  // published does not count: its producer may be slow or preempted inside the task's
  // constructor for any length of time, and idle workers must sleep meanwhile instead of spinning
  // (its publish() is followed by the producer's notify_work(), which wakes them). Published
  // tasks behind it cannot be popped before it anyway (FIFO).
  // Under TSan both loads are seq_cst like the rest of that sequence.
  [[nodiscard]] bool looks_non_empty() const noexcept {
    const std::uint64_t d = m_dequeue.load(k_fenced_acquire);
    // pairs with: publish()'s store of seq (the Dekker re-check of the sleepers reads it).
    const std::uint64_t seq = at(d).seq.load(k_fenced_acquire);
    // seq == 2d + 1: published. Otherwise there is work only if d was stale (a consumer moved on
    // meanwhile): then look again. Not "seq != 2d": the cell may still hold 2(d - capacity) + 1
    // while the consumer of d - capacity, past its CAS, moves the task out (the user's move
    // constructor), and idle workers would spin on that for as long as it takes.
    return seq == 2 * d + 1 || m_dequeue.load(k_fenced_acquire) != d;
  }

  // Tasks claimed and not yet popped. relaxed: an estimate (used for the producers' wake-up
  // threshold, whose correctness rests on the re-check in claim(), not on this value).
  [[nodiscard]] std::size_t size_estimate() const noexcept {
    const std::uint64_t d = m_dequeue.load(std::memory_order_relaxed);
    const std::uint64_t e = m_enqueue.load(std::memory_order_relaxed) & ~k_closed_bit;
    return e > d ? static_cast<std::size_t>(e - d) : 0;
  }

  // For a producer that try_claim() told `full`, after its prepare_wait(): true if every cell
  // is really taken (capacity tasks claimed and not popped). False means the cell it needs is
  // still being emptied by a consumer that has already popped it: retry instead of sleeping.
  // Both loads are k_fenced_acquire (seq_cst under TSan), as the rest of the park re-check.
  [[nodiscard]] bool confirmed_full() const noexcept {
    const std::uint64_t d = m_dequeue.load(k_fenced_acquire);
    const std::uint64_t e = m_enqueue.load(k_fenced_acquire) & ~k_closed_bit;
    return e - d >= m_capacity;
  }

  [[nodiscard]] std::size_t capacity() const noexcept { return m_capacity; }

  // The most tasks seen waiting at once: a high-water mark, so it never goes back and never
  // exceeds the capacity. Sampled by consumers every 16th pop, set to the capacity when a producer
  // finds the queue full, and raised to the current size when read: exact whenever the queue was
  // stalled at its peak (the case tests and users look at), a lower bound otherwise.
  [[nodiscard]] std::size_t high_water() const noexcept {
    raise_high_water(size_lower_bound());
    return m_high_water.load(std::memory_order_relaxed);  // relaxed: a statistic
  }

 private:
  static constexpr std::uint64_t k_closed_bit = std::uint64_t{1} << 63;

  [[nodiscard]] cell& at(std::uint64_t pos) const noexcept {
    return m_cells[m_mask != 0 || m_capacity == 1 ? (pos & m_mask) : (pos % m_capacity)];
  }

  static constexpr std::uint64_t k_sample_mask = 15;

  // A size the queue really had, or less: the enqueue position is read first, so that dequeues
  // between the two loads can only lower the result (reading the dequeue position first would let
  // enqueues in between inflate it beyond any real size, even beyond the capacity).
  // relaxed (both): a statistic.
  [[nodiscard]] std::size_t size_lower_bound() const noexcept {
    const std::uint64_t e = m_enqueue.load(std::memory_order_relaxed) & ~k_closed_bit;
    const std::uint64_t d = m_dequeue.load(std::memory_order_relaxed);
    return e > d ? static_cast<std::size_t>(e - d) : 0;
  }

  void raise_high_water(std::size_t size) const noexcept {
    size = size < m_capacity ? size : m_capacity;
    std::size_t seen = m_high_water.load(std::memory_order_relaxed);  // relaxed: a statistic
    while (size > seen &&
           !m_high_water.compare_exchange_weak(seen, size, std::memory_order_relaxed)) {  // relaxed: as above
    }
  }

  // Sampled by consumers after a pop.
  void note_size() noexcept { raise_high_water(size_lower_bound()); }

  alignas(k_cache_line) atomic<std::uint64_t> m_enqueue{0};  // producers CAS; bit 63 = closed
  alignas(k_cache_line) atomic<std::uint64_t> m_dequeue{0};  // consumers CAS
  // Producers, consumers and high_water() readers raise it (a statistic; mutable: a read may raise it).
  alignas(k_cache_line) mutable atomic<std::size_t> m_high_water{0};
  alignas(k_cache_line) const std::size_t m_capacity;
  const std::size_t m_mask;  // capacity - 1 if a power of two, else 0
  std::unique_ptr<cell[]> m_cells;
};

}  // namespace flowpool::detail
