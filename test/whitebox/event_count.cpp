// Whitebox tests of the two-phase event count (lib/src/event_count.hpp): no lost wake-up when a
// waiter's prepare/re-check/commit races a notifier's publish/fence/check.
#include <doctest/doctest.h>

#include "common/atomics.hpp"
#include "thread_pool/event_count.hpp"

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace {

using flowpool::detail::event_count;
using flowpool::detail::fence_seq_cst;

TEST_SUITE("event_count") {
  TEST_CASE("cancel_wait after a successful re-check leaves no waiter behind") {
    event_count ec;
    const event_count::key k = ec.prepare_wait();
    (void)k;
    CHECK(ec.has_waiters());
    ec.cancel_wait();
    fence_seq_cst();
    CHECK_FALSE(ec.has_waiters());
  }

  TEST_CASE("prepare_wait counts the waiters, itself included, and a cancelled one leaves the count") {
    event_count ec;
    std::uint32_t first = 0;
    std::uint32_t second = 0;
    (void)ec.prepare_wait(first);
    (void)ec.prepare_wait(second);
    CHECK(first == 1);
    CHECK(second == 2);
    ec.cancel_wait();
    ec.cancel_wait();
    std::uint32_t again = 0;
    (void)ec.prepare_wait(again);
    CHECK(again == 1);
    ec.cancel_wait();
  }

  TEST_CASE("a waiter asleep in commit_wait is counted by the next prepare_wait" * doctest::timeout(30)) {
    event_count ec;
    std::atomic<bool> announced{false};
    std::thread sleeper([&] {
      const event_count::key k = ec.prepare_wait();
      announced.store(true);
      ec.commit_wait(k);
    });
    while (!announced.load()) {
      std::this_thread::yield();
    }
    std::uint32_t waiting = 0;
    (void)ec.prepare_wait(waiting);
    CHECK(waiting == 2);
    ec.cancel_wait();
    fence_seq_cst();
    REQUIRE(ec.has_waiters());
    ec.notify_one();  // bumps the epoch: the sleeper returns whether or not it is asleep yet
    sleeper.join();
  }

  TEST_CASE("a notify between prepare_wait and commit_wait is not lost") {
    event_count ec;
    const event_count::key k = ec.prepare_wait();
    ec.notify_one();
    ec.commit_wait(k);  // must return at once: the epoch moved after prepare_wait
    CHECK_FALSE(ec.has_waiters());
  }

  TEST_CASE("ping-pong through two event counts: every hand-off wakes the other side" * doctest::timeout(60)) {
    // Each side waits for the counter to reach its turn using the full protocol, so a lost
    // wake-up shows up as a hang (caught by the timeout), and a wrong hand-off as a bad count.
    constexpr std::uint64_t k_rounds = 20'000;
    std::atomic<std::uint64_t> turn{0};
    event_count ec[2];
    auto wait_for = [&](int side, std::uint64_t value) {
      for (;;) {
        // acquire: pairs with the other side's seq_cst store of turn.
        if (turn.load(std::memory_order_acquire) == value) {
          return;
        }
        const event_count::key k = ec[side].prepare_wait();
        if (turn.load(std::memory_order_seq_cst) == value) {  // the re-check
          ec[side].cancel_wait();
          return;
        }
        ec[side].commit_wait(k);
      }
    };
    auto hand_to = [&](int side, std::uint64_t value) {
      turn.store(value, std::memory_order_seq_cst);  // the condition
      fence_seq_cst();
      if (ec[side].has_waiters()) {
        ec[side].notify_one();
      }
    };
    std::thread other([&] {
      for (std::uint64_t i = 1; i < 2 * k_rounds; i += 2) {
        wait_for(1, i);
        hand_to(0, i + 1);
      }
    });
    for (std::uint64_t i = 0; i < 2 * k_rounds; i += 2) {
      hand_to(1, i + 1);
      wait_for(0, i + 2);
    }
    other.join();
    CHECK(turn.load() == 2 * k_rounds);
  }

  TEST_CASE("many waiters, one notifier: wake_all releases all of them" * doctest::timeout(60)) {
    constexpr int k_waiters = 4;
    event_count ec;
    std::atomic<bool> go{false};
    std::atomic<int> out{0};
    std::vector<std::thread> waiters;
    waiters.reserve(k_waiters);
    for (int i = 0; i < k_waiters; ++i) {
      waiters.emplace_back([&] {
        for (;;) {
          const event_count::key k = ec.prepare_wait();
          if (go.load(std::memory_order_seq_cst)) {
            ec.cancel_wait();
            break;
          }
          ec.commit_wait(k);
        }
        out.fetch_add(1);
      });
    }
    go.store(true, std::memory_order_seq_cst);
    fence_seq_cst();
    ec.wake_all();
    for (auto& w : waiters) {
      w.join();
    }
    CHECK(out.load() == k_waiters);
  }
}

}  // namespace
