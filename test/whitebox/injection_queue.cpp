// Whitebox tests of the bounded MPMC injection queue (lib/src/injection_queue.hpp): conservation
// under several producers and consumers, exact capacity (including 1 and non-powers of two),
// full/empty/closed behaviour.
#include <doctest/doctest.h>

#include "thread_pool/injection_queue.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <latch>
#include <thread>
#include <vector>

namespace {

using flowpool::detail::injection_queue;
using flowpool::detail::task;
using status = injection_queue::claim_status;

bool push(injection_queue& q, std::atomic<std::uint64_t>* sum, std::uint64_t value) {
  injection_queue::cell* c = nullptr;
  if (q.try_claim(c) != status::claimed) {
    return false;
  }
  c->item.emplace([sum, value] { sum->fetch_add(value, std::memory_order_relaxed); });
  c->item.group = nullptr;
  q.publish(*c);
  return true;
}

TEST_SUITE("injection_queue") {
  TEST_CASE("capacity is exact for 1, 3 and 4; full, then empty, in FIFO order") {
    for (const std::size_t capacity : {std::size_t{1}, std::size_t{3}, std::size_t{4}}) {
      CAPTURE(capacity);
      injection_queue q(capacity);
      std::atomic<std::uint64_t> sum{0};
      for (int round = 0; round < 3; ++round) {  // wraps the ring
        for (std::size_t i = 0; i < capacity; ++i) {
          REQUIRE(push(q, &sum, i + 1));
        }
        injection_queue::cell* c = nullptr;
        CHECK(q.try_claim(c) == status::full);
        CHECK(q.confirmed_full());
        CHECK(q.high_water() == capacity);
        task t;
        std::uint64_t position = 0;
        for (std::size_t i = 0; i < capacity; ++i) {
          REQUIRE(q.try_pop(t, position));
          const std::uint64_t before = sum.load();
          t.run_once();
          CHECK(sum.load() - before == i + 1);  // FIFO
        }
        CHECK_FALSE(q.try_pop(t, position));
      }
      CHECK(q.accepted() == 3 * capacity);
      CHECK(q.consumed() == 3 * capacity);
    }
  }

  TEST_CASE("close refuses new claims but leaves queued tasks poppable") {
    injection_queue q(4);
    std::atomic<std::uint64_t> sum{0};
    REQUIRE(push(q, &sum, 5));
    q.close();
    CHECK(q.closed());
    injection_queue::cell* c = nullptr;
    CHECK(q.try_claim(c) == status::closed);
    task t;
    std::uint64_t position = 0;
    REQUIRE(q.try_pop(t, position));
    t.run_once();
    CHECK(sum.load() == 5);
    CHECK(q.accepted() == 1);
  }

  TEST_CASE("several producers and consumers: every task runs exactly once" * doctest::timeout(60)) {
    constexpr int k_producers = 3;
    constexpr int k_consumers = 2;
    constexpr std::uint64_t k_per_producer = 50'000;
    injection_queue q(7);  // small, not a power of two: constant wrapping and full/empty
    std::atomic<std::uint64_t> sum{0};
    std::atomic<std::uint64_t> ran{0};
    std::atomic<int> producers_left{k_producers};
    // Five threads that spin (with yield) on a queue of 7 take about a second under TSan, but a
    // machine oversubscribed several times over slowed them past the 60 s timeout once. So each
    // producer also stops early (after at least 1000 items) once 20 s have passed; the checks use
    // what was produced. Written by each producer before its release decrement, read after the joins.
    std::vector<std::uint64_t> produced(k_producers, 0);
    const auto stop_producing = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    std::latch start(k_producers + k_consumers);
    std::vector<std::thread> threads;
    threads.reserve(k_producers + k_consumers);
    for (int p = 0; p < k_producers; ++p) {
      threads.emplace_back([&, p] {
        start.arrive_and_wait();
        std::uint64_t i = 0;
        for (; i < k_per_producer; ++i) {
          if (i % 1000 == 0 && i > 0 && std::chrono::steady_clock::now() >= stop_producing) {
            break;
          }
          const std::uint64_t value = static_cast<std::uint64_t>(p) * k_per_producer + i;
          while (!push(q, &sum, value)) {
            std::this_thread::yield();
          }
        }
        produced[static_cast<std::size_t>(p)] = i;
        producers_left.fetch_sub(1, std::memory_order_release);  // release: pairs with the consumers' acquire
      });
    }
    for (int c = 0; c < k_consumers; ++c) {
      threads.emplace_back([&] {
        start.arrive_and_wait();
        task t;
        std::uint64_t position = 0;
        for (;;) {
          if (q.try_pop(t, position)) {
            t.run_once();
            ran.fetch_add(1, std::memory_order_relaxed);
          } else if (producers_left.load(std::memory_order_acquire) == 0 && q.consumed() == q.accepted()) {
            return;
          } else {
            std::this_thread::yield();
          }
        }
      });
    }
    for (auto& t : threads) {
      t.join();
    }
    std::uint64_t total = 0;
    std::uint64_t expected_sum = 0;
    for (std::size_t p = 0; p < produced.size(); ++p) {
      total += produced[p];
      expected_sum += p * k_per_producer * produced[p] + produced[p] * (produced[p] - 1) / 2;
    }
    MESSAGE("tasks produced: " << total << " of " << k_producers * k_per_producer);
    CHECK(ran.load() == total);
    CHECK(sum.load() == expected_sum);
    CHECK(q.high_water() <= 7);
  }
}

}  // namespace
