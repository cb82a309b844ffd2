/// @file
/// @brief A process-wide count of executed tasks that costs a task almost nothing: each thread
/// increments its own cache-line-sized counter, and the harness adds them all up afterwards.
///
/// Lets the "empty task" benchmarks check that every task ran exactly once without putting a
/// shared atomic read-modify-write (and its contention) into the measured work.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>

namespace flowpool_bench {

namespace tally_detail {

/// One thread's counter, alone on its cache line.
struct alignas(64) slot {
  /// Tasks this thread ran. Written only by its owner thread; read by `tally_total()`.
  std::atomic<std::uint64_t> value{0};
};

/// @brief Every slot ever handed out (a deque never moves its elements), and its lock.
struct registry {
  std::mutex lock;         ///< Guards `slots`.
  std::deque<slot> slots;  ///< One per thread that ever called tally_add().
};

/// @return the process-wide registry.
inline registry& the_registry() {
  static registry instance;
  return instance;
}

/// @return a new slot for the calling thread (takes the registry lock; first call per thread only).
inline slot* claim_slot() {
  registry& reg = the_registry();
  const std::lock_guard guard(reg.lock);
  return &reg.slots.emplace_back();
}

/// The calling thread's slot, claimed on its first tally_add().
inline thread_local slot* t_slot = nullptr;

}  // namespace tally_detail

/// @brief Counts one executed task on the calling thread's own counter.
///
/// Any thread; never blocks after the thread's first call (which takes a lock and allocates a
/// slot once); never throws after that first call.
inline void tally_add() {
  tally_detail::slot* mine = tally_detail::t_slot;
  if (mine == nullptr) [[unlikely]] {
    mine = tally_detail::claim_slot();
    tally_detail::t_slot = mine;
  }
  // Relaxed load + store, not a read-modify-write: only the owner thread writes its slot, and the
  // reader (tally_total) runs after a wait that orders every task before it.
  mine->value.store(mine->value.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

/// @brief The number of tally_add() calls made so far by all threads.
///
/// Exact only when every counted task happens-before this call (e.g. after the pool's or task
/// group's wait returned). Any thread; takes the registry lock.
/// @return the sum of all threads' counters.
[[nodiscard]] inline std::uint64_t tally_total() {
  tally_detail::registry& reg = tally_detail::the_registry();
  const std::lock_guard guard(reg.lock);
  std::uint64_t total = 0;
  for (const tally_detail::slot& s : reg.slots) {
    // Relaxed: the caller's wait already ordered every counted increment before this load.
    total += s.value.load(std::memory_order_relaxed);
  }
  return total;
}

}  // namespace flowpool_bench
