// Internal: a two-phase event count, the sleep/wake primitive of the pool.
//
// A waiter announces itself (prepare_wait), re-checks every condition it would wake for, and then
// either cancels (cancel_wait) or sleeps until the epoch moves (commit_wait). A notifier makes its
// condition true, executes fence_seq_cst(), and calls notify_*() only if has_waiters() says
// someone may be asleep. This is the Dekker pattern:
//
//   waiter:   m_waiters += 1 (seq_cst RMW); fence;  read condition      -> false: sleep
//   notifier: write condition;               fence;  read m_waiters      -> 0: skip the wake-up
//
// In the single total order of seq_cst operations and fences, one of the two fences comes first,
// so either the waiter's re-check sees the condition or the notifier sees the waiter: both
// missing each other (a lost wake-up) is impossible. A waiter that has read the epoch (key) and
// is then notified sees the epoch changed: futex_wait() compares atomically with going to
// sleep, so a notify between the re-check and the sleep is not lost either.
//
// Blocking uses futex_wait()/futex_wake_*() (atomics.hpp: the futex system calls on Linux,
// std::atomic::wait/notify elsewhere): no mutex on either path, and no spin beyond the pool's.
//
// Wake-up storms: a woken waiter needs microseconds to run and leave the waiter count, and every
// notifier in that window would otherwise make another futex call. m_signaled dedupes them: the
// first notifier sets it and calls into the kernel; later ones see it set and skip. Every waiter
// clears it when it prepares, cancels, or returns from commit_wait, so a notification whose
// target had already left cannot keep it set while someone sleeps.
//
// What a skipped notifier relies on, precisely: its condition write, then its exchange of
// m_signaled (which read true, so it is ordered before the waiter's clear), against the waiter's
// clear, fence and re-check. That is the "R" litmus shape, and it forbids the re-check missing
// the condition only if the notifier has a full barrier between its two writes. It has one when
// it calls fence_seq_cst() (the producers' wake-up in run_found(), leave_searching_found_work()),
// and on x86-64 the exchange itself is a locked instruction. notify_work()'s light fence is only
// a compiler barrier where membarrier is used, so on a weaker machine (POWER allows R) the scan
// that follows commit_wait() or cancel_wait() may miss that task. It is delayed, not lost: the
// worker can sleep again only through prepare_wait() and the pool's asymmetric_fence_heavy(),
// which acts as a full barrier in the notifier too, so either that re-check sees the task or the
// notifier's exchange comes after the clear and is not skipped. The cost is up to one spin phase
// of latency.
#pragma once

#include "common/atomics.hpp"

#include <flowpool/detail/config.hpp>

#include <cstdint>

namespace flowpool::detail {

class event_count {
 public:
  using key = std::uint32_t;

  // Waiter, phase 1: announce. The caller re-checks its conditions after this returns (the
  // fence is included here) and then calls exactly one of cancel_wait() / commit_wait().
  [[nodiscard]] key prepare_wait() noexcept {
    std::uint32_t waiting = 0;
    return prepare_wait(waiting);
  }

  // As prepare_wait(), and sets `waiting` to the number of threads between prepare_wait() and
  // the end of cancel_wait()/commit_wait() right after our announcement, us included. If that is
  // every thread that ever waits here, each of them leaves with an acquire RMW on m_waiters that
  // reads from our increment's release sequence (m_waiters only changes by RMWs), so everything
  // we did before this call happens-before whatever any of them does after leaving.
  [[nodiscard]] key prepare_wait(std::uint32_t& waiting) noexcept {
    // seq_cst: the waiter's half of the Dekker pattern (see the file comment).
    // pairs with: the notifier's fence_seq_cst() before has_waiters(); and (release) with the
    // other waiters' acquire decrements in cancel_wait()/commit_wait().
    waiting = m_waiters.fetch_add(1, std::memory_order_seq_cst) + 1;
    // The key is read BEFORE the flag is cleared. A notifier whose exchange of m_signaled comes
    // after our clear bumps the epoch after this load, so commit_wait() returns at once; with the
    // opposite order, such a notifier's bump could land before our load, we would sleep on the
    // new epoch, and the flag it set would stay true with nobody on the way to clear it, deduping
    // every later notify (test/whitebox/event_count_stale_signal.cpp).
    // acquire, pairs with: notify_*()'s release increment, so that a waiter that reads the new
    // epoch also sees the condition that notifier published.
    const key k = m_epoch.load(std::memory_order_acquire);
    // seq_cst: ordered before our re-check; pairs with: notify_*()'s exchange of m_signaled.
    m_signaled.store(false, std::memory_order_seq_cst);
    fence_seq_cst();
    return k;
  }

  // Waiter, phase 2a: a condition held after all; do not sleep.
  void cancel_wait() noexcept {
    // acquire, pairs with: later waiters' seq_cst (release) increments in prepare_wait(waiting),
    // for the "everyone is waiting" count (see there). For the notifiers, a stale, too-high
    // count would only cost a spurious epoch bump.
    m_waiters.fetch_sub(1, std::memory_order_acquire);
    m_signaled.store(false, std::memory_order_seq_cst);  // seq_cst: as in prepare_wait()
  }

  // Waiter, phase 2b: sleep until a notify_*() after prepare_wait() (may also return spuriously).
  void commit_wait(key k) noexcept {
    // acquire, pairs with: notify_*()'s release increment of m_epoch.
    while (m_epoch.load(std::memory_order_acquire) == k) {
      futex_wait(m_epoch, k);  // the loop's acquire load orders what follows
    }
    m_waiters.fetch_sub(1, std::memory_order_acquire);   // acquire: as in cancel_wait()
    m_signaled.store(false, std::memory_order_seq_cst);  // seq_cst: as in prepare_wait()
    // The caller re-scans for work next: order that scan after any notifier whose wake-up was
    // deduped against us. pairs with: the notifier's fence_seq_cst().
    fence_seq_cst();
  }

  // Notifier: true if some thread may be between prepare_wait() and the end of commit_wait().
  // Precondition: the caller executed fence_seq_cst() after making its condition true.
  [[nodiscard]] bool has_waiters() const noexcept { return m_waiters.load(k_fenced) != 0; }

  // Wakes one sleeping waiter (and makes every prepared-but-not-yet-sleeping one return), unless
  // a wake-up is already on its way (see m_signaled). Precondition: has_waiters() was true.
  void notify_one() noexcept {
    // acq_rel: pairs with the waiters' seq_cst stores of false (see the file comment).
    if (!m_signaled.exchange(true, std::memory_order_acq_rel)) {
      // release, pairs with: the acquire loads of m_epoch in prepare_wait()/commit_wait().
      m_epoch.fetch_add(1, std::memory_order_release);
      futex_wake_one(m_epoch);
    }
  }

  // As notify_one(), but wakes every waiter.
  void notify_all() noexcept {
    if (!m_signaled.exchange(true, std::memory_order_acq_rel)) {  // acq_rel: as in notify_one()
      m_epoch.fetch_add(1, std::memory_order_release);            // release: as in notify_one()
      futex_wake_all(m_epoch);
    }
  }

  // Wakes every waiter, without dedup: for state changes every waiter must see (exit, close).
  void wake_all() noexcept {
    m_epoch.fetch_add(1, std::memory_order_release);  // release: as in notify_one()
    futex_wake_all(m_epoch);
  }

 private:
  alignas(k_cache_line) atomic<std::uint32_t> m_waiters{0};  // notifiers read it on every push
  atomic<bool> m_signaled{false};                            // a wake-up is on its way; cleared by waiters
  alignas(k_cache_line) atomic<std::uint32_t> m_epoch{0};    // the futex word
};

}  // namespace flowpool::detail
