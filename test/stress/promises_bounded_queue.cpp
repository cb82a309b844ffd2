// Issue 9: one stress case for every concurrency promise of bounded_queue.hpp that no other test
// exercised with several threads (docs/guarantees.md maps every promise to its test). Each case
// runs rounds bounded in count and by flowpool_test::stress_duration(), checks conservation (every
// accepted item delivered or handed back exactly once), and has a no-progress watchdog.
#include "promises_support.hpp"
#include "test_support.hpp"

#include <doctest/doctest.h>

#include <flowpool/bounded_queue.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <latch>
#include <optional>
#include <thread>
#include <vector>

using flowpool::bounded_queue;
using flowpool_test::mix;
using flowpool_test::progress_watchdog;
using flowpool_test::round_budget;
using namespace std::chrono_literals;

namespace {}  // namespace

TEST_SUITE("bounded_queue promises") {
  // bounded_queue.hpp: "All members are thread-safe and may be called from any thread, including
  // concurrently"; shutdown() "Idempotent"; high_water_mark() and is_shut_down() never go back.
  TEST_CASE("every member called from several threads at once: every accepted item is delivered or handed back once" *
            doctest::timeout(240)) {
    progress_watchdog dog("bounded_queue promises / every member from several threads at once");
    round_budget budget;
    while (budget.next()) {
      const auto r = static_cast<std::uint64_t>(budget.rounds());
      const std::size_t capacity = std::array<std::size_t, 3>{1, 3, 32}[mix(r) % 3];
      const std::uint32_t trigger = static_cast<std::uint32_t>(mix(r + 1) % 1500);
      const bool both_now = mix(r + 2) % 2 == 0;
      CAPTURE(capacity);
      CAPTURE(trigger);
      CAPTURE(both_now);
      constexpr int k_producers = 2;
      constexpr int k_consumers = 2;
      constexpr std::uint32_t k_ops = 1000;  // per producer
      constexpr std::uint32_t k_ids = k_producers * k_ops;
      // Written by one thread per id, read after every thread is joined: relaxed everywhere.
      std::vector<std::atomic<std::uint8_t>> accepted(k_ids);
      std::vector<std::atomic<std::uint8_t>> delivered(k_ids);
      std::vector<std::atomic<std::uint8_t>> returned(k_ids);
      std::atomic<std::uint32_t> next_id{0};
      std::atomic<int> observer_violations{0};
      std::atomic<int> joins_released{0};
      std::atomic<bool> stop_observing{false};
      bounded_queue<std::uint32_t> queue(capacity);
      std::latch start(k_producers + k_consumers + 4);
      flowpool_test::gate close;
      std::vector<std::thread> all;
      for (int p = 0; p < k_producers; ++p) {
        all.emplace_back([&] {
          start.arrive_and_wait();
          for (std::uint32_t op = 0; op < k_ops; ++op) {
            const std::uint32_t id = next_id.fetch_add(1);
            if (id == trigger) {
              close.open();
            }
            const std::uint32_t copy = id;
            bool ok = false;
            switch (mix(id) % 7) {
              case 0:
                ok = queue.put(copy);
                break;
              case 1:
                ok = queue.put(std::uint32_t{id});
                break;
              case 2:
                ok = queue.try_put(copy);
                break;
              case 3:
                ok = queue.try_put(std::uint32_t{id});
                break;
              case 4:
                ok = queue.try_put_for(std::uint32_t{id}, 200us);
                break;
              case 5:
                ok = queue.try_put_for(copy, 200us);
                break;
              default:
                ok = queue.force_put(std::uint32_t{id});
                break;
            }
            if (ok) {
              accepted[id].store(1, std::memory_order_relaxed);
            } else if (queue.is_shut_down()) {
              break;
            }
            dog.tick();
          }
          close.open();  // lets the closers go if the trigger was never reached
        });
      }
      for (int c = 0; c < k_consumers; ++c) {
        all.emplace_back([&, c] {
          start.arrive_and_wait();
          for (std::uint64_t n = 0;; ++n) {
            std::optional<std::uint32_t> item;
            switch ((n + static_cast<std::uint64_t>(c)) % 3) {
              case 0:
                item = queue.get();
                break;
              case 1:
                item = queue.try_get();
                break;
              default:
                item = queue.try_get_for(200us);
                break;
            }
            if (!item) {
              if (queue.is_shut_down() && queue.empty()) {
                break;  // after shutdown nothing is added, so empty stays empty
              }
              continue;
            }
            delivered[*item].fetch_add(1, std::memory_order_relaxed);
            queue.task_done();
            dog.tick();
          }
        });
      }
      all.emplace_back([&] {  // joiner
        start.arrive_and_wait();
        while (!stop_observing.load()) {
          if (queue.join_for(100us)) {
            joins_released.fetch_add(1);
          }  // no tick: this loop spins until the end, so it proves no progress
        }
      });
      all.emplace_back([&] {  // observer
        start.arrive_and_wait();
        std::size_t high = 0;
        bool was_shut = false;
        while (!stop_observing.load()) {
          const std::size_t size = queue.size();
          const std::size_t now_high = queue.high_water_mark();
          const bool shut = queue.is_shut_down();
          bool bad = queue.capacity() != capacity || now_high < high || size > now_high || (was_shut && !shut);
          (void)queue.unfinished();
          (void)queue.empty();
          (void)queue.full();
          observer_violations.fetch_add(bad ? 1 : 0);
          high = now_high;
          was_shut = shut;  // no tick: this loop spins until the end, so it proves no progress
        }
      });
      for (int k = 0; k < 2; ++k) {  // two closers at once: shutdown() and shutdown_now() race
        all.emplace_back([&, k] {
          start.arrive_and_wait();
          close.wait();
          if (k == 0 && !both_now) {
            queue.shutdown();
            queue.shutdown();  // idempotent
          } else {
            for (const std::uint32_t id : queue.shutdown_now()) {
              returned[id].fetch_add(1, std::memory_order_relaxed);
            }
          }
          dog.tick();
        });
      }
      for (std::size_t i = 0; i < all.size() - 4; ++i) {
        all[i].join();  // producers and consumers
      }
      all[all.size() - 2].join();
      all[all.size() - 1].join();
      queue.join();  // every delivered item was marked done; returned ones count as done
      stop_observing.store(true);
      all[all.size() - 4].join();
      all[all.size() - 3].join();
      std::size_t misfits = 0;
      for (std::uint32_t id = 0; id < k_ids; ++id) {
        misfits += accepted[id].load() != delivered[id].load() + returned[id].load() ? 1 : 0;
      }
      CHECK(misfits == 0);
      CHECK(observer_violations.load() == 0);
      CHECK(queue.unfinished() == 0);
      CHECK(queue.is_shut_down());
      CHECK(queue.empty());
    }
  }

  // bounded_queue.hpp, shutdown(): "Wakes every thread blocked in put (they return false) and in
  // get on an empty queue (they return std::nullopt). Idempotent"; "graceful shutdown does not
  // release join"; shutdown_now(): "Each removed item counts as done ..., which may release join()".
  TEST_CASE(
      "shutdown wakes every blocked putter and getter, and shutdown_now every blocked joiner, from two threads at "
      "once" *
      doctest::timeout(240)) {
    progress_watchdog dog("bounded_queue promises / shutdown wakes every blocked putter, getter and joiner");
    round_budget budget(4, 5000);
    while (budget.next()) {
      const int round = budget.rounds();
      CAPTURE(round);
      constexpr int k_each = 3;
      bounded_queue<int> full_queue(2);
      bounded_queue<int> empty_queue(4);
      REQUIRE(full_queue.put(0));
      REQUIRE(full_queue.put(1));
      std::atomic<int> putters_refused{0};
      std::atomic<int> getters_empty{0};
      std::atomic<int> joins_released{0};
      std::latch ready(3 * k_each + 1);
      std::vector<std::thread> putters;
      std::vector<std::thread> getters;
      std::vector<std::thread> joiners;
      for (int i = 0; i < k_each; ++i) {
        putters.emplace_back([&, i] {
          ready.arrive_and_wait();
          const bool ok = (i + round) % 2 == 0 ? full_queue.put(10 + i) : full_queue.try_put_for(10 + i, 1h);
          putters_refused.fetch_add(ok ? 0 : 1);
          dog.tick();
        });
        getters.emplace_back([&, i] {
          ready.arrive_and_wait();
          const std::optional<int> got = (i + round) % 2 == 0 ? empty_queue.get() : empty_queue.try_get_for(1h);
          getters_empty.fetch_add(got ? 0 : 1);
          dog.tick();
        });
        joiners.emplace_back([&, i] {
          ready.arrive_and_wait();
          bool released = true;
          if ((i + round) % 2 == 0) {
            full_queue.join();
          } else {
            released = full_queue.join_for(1h);
          }
          joins_released.fetch_add(released ? 1 : 0);
          dog.tick();
        });
      }
      ready.arrive_and_wait();
      {
        std::thread other([&] {
          full_queue.shutdown();
          empty_queue.shutdown();
        });
        empty_queue.shutdown();
        full_queue.shutdown();
        other.join();
      }
      for (auto& t : putters) {
        t.join();  // hangs (watchdog) unless shutdown woke every blocked putter
      }
      for (auto& t : getters) {
        t.join();  // likewise for getters
      }
      CHECK(putters_refused.load() == k_each);
      CHECK(getters_empty.load() == k_each);
      CHECK(joins_released.load() == 0);  // two items are still unfinished
      std::vector<int> back_a;
      std::vector<int> back_b;
      {
        std::thread other([&] { back_a = full_queue.shutdown_now(); });
        back_b = full_queue.shutdown_now();
        other.join();
      }
      for (auto& t : joiners) {
        t.join();  // hangs (watchdog) unless shutdown_now woke every blocked joiner
      }
      CHECK(joins_released.load() == k_each);
      std::vector<int> back = back_a;
      back.insert(back.end(), back_b.begin(), back_b.end());
      std::sort(back.begin(), back.end());
      CHECK(back == std::vector<int>{0, 1});
      CHECK(full_queue.unfinished() == 0);
    }
  }

  // bounded_queue.hpp, join(): "Blocks until every item ever put has been marked done ... may be
  // called again and again", "Any thread"; every task_done() that counted towards zero
  // happens-before the return. Several joiners call it while producers and consumers run.
  TEST_CASE(
      "join and join_for from several threads again and again: each return covers every item put before the call" *
      doctest::timeout(240)) {
    progress_watchdog dog("bounded_queue promises / join from several threads again and again");
    constexpr int k_producers = 2;
    constexpr int k_consumers = 2;
    constexpr int k_joiners = 3;
    round_budget budget;
    while (budget.next()) {
      const auto r = static_cast<std::uint64_t>(budget.rounds());
      const std::size_t capacity = std::array<std::size_t, 3>{1, 4, 64}[mix(r) % 3];
      CAPTURE(capacity);
      bounded_queue<int> queue(capacity);
      std::array<std::atomic<std::uint64_t>, k_producers> put_count{};
      std::atomic<std::uint64_t> done_count{0};
      // Plain: a joiner reads a cell only for items put before its join() (TSan checks the order).
      std::array<std::vector<std::uint8_t>, k_producers> cells;
      for (auto& c : cells) {
        c.assign(1024, 0);
      }
      std::atomic<int> producers_done{0};
      std::atomic<int> uncovered{0};
      std::atomic<int> timed_out{0};
      std::atomic<int> refused{0};
      std::latch start(k_producers + k_consumers + k_joiners);
      std::vector<std::thread> producers;
      std::vector<std::thread> consumers;
      std::vector<std::thread> joiners;
      for (int p = 0; p < k_producers; ++p) {
        producers.emplace_back([&, p] {
          start.arrive_and_wait();
          const int burst = 200 + static_cast<int>(mix(r * 3 + static_cast<std::uint64_t>(p)) % 800);
          for (int i = 0; i < burst; ++i) {
            if (!queue.put(p * 100000 + i)) {
              refused.fetch_add(1);  // never: the queue is open until every producer is done
              break;
            }
            // pairs with: the joiners' acquire load: this put returned before their join()
            put_count[p].store(static_cast<std::uint64_t>(i + 1), std::memory_order_release);
            dog.tick();
          }
          producers_done.fetch_add(1);
        });
      }
      for (int c = 0; c < k_consumers; ++c) {
        consumers.emplace_back([&] {
          start.arrive_and_wait();
          while (const std::optional<int> item = queue.get()) {
            cells[static_cast<std::size_t>(*item / 100000)][static_cast<std::size_t>(*item % 100000)] = 1;
            done_count.fetch_add(1, std::memory_order_relaxed);  // relaxed: task_done() -> join() orders it
            queue.task_done();
            dog.tick();
          }
        });
      }
      for (int j = 0; j < k_joiners; ++j) {
        joiners.emplace_back([&, j] {
          start.arrive_and_wait();
          bool last = false;
          for (int calls = 0; !last && calls < 10000; ++calls) {
            last = producers_done.load() == k_producers;
            std::array<std::uint64_t, k_producers> put_before{};
            std::uint64_t before = 0;
            for (std::size_t p = 0; p < put_before.size(); ++p) {
              put_before[p] = put_count[p].load(std::memory_order_acquire);  // pairs with: the producers' store
              before += put_before[p];
            }
            if ((calls + j) % 2 == 0) {
              queue.join();
            } else if (!queue.join_for(60s)) {
              timed_out.fetch_add(1);
            }
            if (done_count.load(std::memory_order_relaxed) < before) {
              uncovered.fetch_add(1);
            }
            for (std::size_t p = 0; p < put_before.size(); ++p) {
              for (std::uint64_t i = 0; i < put_before[p]; ++i) {
                uncovered.fetch_add(cells[p][i] != 1 ? 1 : 0);  // its task_done() happens-before join()
              }
            }
            dog.tick();
          }
        });
      }
      for (auto& t : producers) {
        t.join();
      }
      for (auto& t : joiners) {
        t.join();
      }
      queue.shutdown();
      for (auto& t : consumers) {
        t.join();
      }
      CHECK(uncovered.load() == 0);
      CHECK(timed_out.load() == 0);
      CHECK(refused.load() == 0);
      std::uint64_t total = 0;
      for (auto& count : put_count) {
        total += count.load();
      }
      CHECK(done_count.load() == total);
      CHECK(queue.unfinished() == 0);
    }
  }
}
