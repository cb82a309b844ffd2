// Reviewer's regression test for event_count's wake-up dedup flag (lib/src/event_count.hpp).
//
// prepare_wait() clears m_signaled *before* it reads the epoch key. A notifier whose
// exchange(m_signaled, true) lands after that clear and whose epoch increment lands before the key
// load leaves m_signaled == true while the waiter goes on to sleep with a key that already includes
// that increment. Nobody clears the flag again until another waiter prepares, so every later
// notify_one()/notify_all() is deduped away: a notify that happens strictly after prepare_wait()
// returned is lost and the committed waiter sleeps on.
//
// Each round: the waiter prepares; the notifier fires a first notify_one() into the middle of
// prepare_wait() (after has_waiters() turns true, plus a varying delay), then, once the waiter
// says prepare_wait() has returned, a second notify_one(), which the contract says must end
// commit_wait(). A round whose waiter is still asleep long after that second notify is a lost
// wake-up (the waiter is then released with wake_all(), which skips the dedup, and counted).
#include <doctest/doctest.h>

#include "common/atomics.hpp"
#include "thread_pool/event_count.hpp"

#include <test_support.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

namespace {

using flowpool::detail::cpu_relax;
using flowpool::detail::event_count;

TEST_SUITE("event_count") {
  TEST_CASE("a notify_one after prepare_wait returned always ends commit_wait" * doctest::timeout(120)) {
    event_count ec;
    std::atomic<std::uint64_t> go{0};        // round number the waiter may start
    std::atomic<std::uint64_t> prepared{0};  // round whose prepare_wait() returned
    std::atomic<std::uint64_t> woke{0};      // round whose commit_wait() returned
    std::atomic<bool> quit{false};
    std::uint64_t lost = 0;
    std::uint64_t rounds = 0;

    std::thread waiter([&] {
      for (std::uint64_t r = 1;; ++r) {
        while (go.load(std::memory_order_acquire) < r) {
          if (quit.load(std::memory_order_acquire)) {
            return;
          }
          cpu_relax();
        }
        const event_count::key k = ec.prepare_wait();
        prepared.store(r, std::memory_order_release);
        ec.commit_wait(k);
        woke.store(r, std::memory_order_release);
      }
    });

    const auto end = std::chrono::steady_clock::now() + flowpool_test::stress_duration();
    std::uint64_t delay = 0;
    while (lost == 0 && std::chrono::steady_clock::now() < end) {
      const std::uint64_t r = ++rounds;
      go.store(r, std::memory_order_release);
      // First notify: aimed at the inside of the waiter's prepare_wait().
      while (!ec.has_waiters()) {
        cpu_relax();
      }
      for (std::uint64_t i = 0; i < delay; ++i) {
        cpu_relax();
      }
      delay = (delay + 1) % 8;
      ec.notify_one();
      // Second notify: strictly after prepare_wait() returned. It must wake the waiter.
      while (prepared.load(std::memory_order_acquire) < r) {
        cpu_relax();
      }
      ec.notify_one();
      // Failure detection only (not ordering): a correct event count wakes the waiter within
      // microseconds, but a loaded machine may not run it for a while; after a bound far beyond
      // that (the limit flowpool_test::eventually uses), count the round as lost and release it.
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      while (woke.load(std::memory_order_acquire) < r) {
        if (std::chrono::steady_clock::now() > give_up) {
          ++lost;
          ec.wake_all();
          break;
        }
        std::this_thread::yield();
      }
      while (woke.load(std::memory_order_acquire) < r) {
        std::this_thread::yield();
      }
    }
    quit.store(true, std::memory_order_release);
    waiter.join();
    MESSAGE("rounds: " << rounds << ", lost wake-ups: " << lost);
    CHECK(lost == 0);
  }
}

}  // namespace
