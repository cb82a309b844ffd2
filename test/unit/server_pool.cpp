// Contract tests for flowpool::server_pool (issue 3): exactly-once handling, follow-ups that never
// deadlock, join() semantics, exception isolation, shutdown while busy, slot identities, thread
// names, stats, bad options, and submits refused after shutdown.
#include <doctest/doctest.h>

#include "test_support.hpp"

#include <flowpool/server_pool.hpp>

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <latch>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using flowpool_test::eventually;

using namespace std::chrono_literals;
using flowpool::server_pool;
using flowpool::server_pool_options;
using flowpool::slot_id;

struct shape {
  std::size_t servers;
  std::size_t slots;
};
constexpr shape k_shapes[] = {{1, 1}, {2, 3}, {5, 2}};

// Holds the first `count` handler calls inside the handler until release() is called, so a test
// knows every slot is busy. hold() returns at once for every later call.
class slot_gate {
 public:
  explicit slot_gate(std::size_t count) : m_count(count), m_entered(static_cast<std::ptrdiff_t>(count)) {}
  void hold() {
    if (m_calls.fetch_add(1) < m_count) {
      m_entered.count_down();
      m_released.wait();
    }
  }
  void wait_until_all_held() { m_entered.wait(); }
  void release() { m_released.count_down(); }

 private:
  std::size_t m_count;
  std::atomic<std::size_t> m_calls{0};
  std::latch m_entered;
  std::latch m_released{1};
};

}  // namespace

TEST_SUITE("server_pool") {
  TEST_CASE("every request is handled exactly once, from several submitters" * doctest::timeout(30)) {
    for (const shape s : k_shapes) {
      CAPTURE(s.servers);
      CAPTURE(s.slots);
      constexpr int k_per_submitter = 2000;
      constexpr int k_submitters = 3;
      std::vector<std::atomic<int>> seen(k_per_submitter * k_submitters);
      {
        server_pool<int> pool({.servers = s.servers, .slots_per_server = s.slots, .queue_capacity = 4},
                              [&](slot_id, int& r) { seen[static_cast<std::size_t>(r)].fetch_add(1); });
        std::vector<std::thread> submitters;
        for (int t = 0; t < k_submitters; ++t) {
          submitters.emplace_back([&pool, t] {
            for (int i = 0; i < k_per_submitter; ++i) {
              REQUIRE(pool.submit(t * k_per_submitter + i));
            }
          });
        }
        for (std::thread& t : submitters) {
          t.join();
        }
        pool.join();
        const flowpool::server_pool_stats stats = pool.stats();
        CHECK(stats.total_handled() == seen.size());
        CHECK(stats.queue_high_water_mark <= 4);  // outside submitters are bounded by the capacity
      }
      CHECK(std::all_of(seen.begin(), seen.end(), [](const std::atomic<int>& n) { return n.load() == 1; }));
    }
  }

  TEST_CASE("follow-ups from handlers never deadlock, even with capacity 1 and every slot submitting" *
            doctest::timeout(30)) {
    for (const shape s : k_shapes) {
      CAPTURE(s.servers);
      CAPTURE(s.slots);
      // Every request of depth d submits two follow-ups of depth d - 1: a binary tree per seed.
      constexpr int k_depth = 9;
      constexpr int k_seeds = 8;
      constexpr std::uint64_t k_expected = k_seeds * ((std::uint64_t{1} << (k_depth + 1)) - 1);
      std::atomic<std::uint64_t> handled{0};
      std::atomic<int> refused{0};
      server_pool<int>* self = nullptr;
      server_pool<int> pool({.servers = s.servers, .slots_per_server = s.slots, .queue_capacity = 1},
                            [&](slot_id, int& depth) {
                              handled.fetch_add(1);
                              if (depth > 0) {
                                for (int i = 0; i < 2; ++i) {
                                  if (!self->submit(depth - 1)) {
                                    refused.fetch_add(1);
                                  }
                                }
                              }
                            });
      self = &pool;  // set before the first submit, which happens-before every handler call
      for (int i = 0; i < k_seeds; ++i) {
        REQUIRE(pool.submit(k_depth));
      }
      pool.join();
      CHECK(refused.load() == 0);
      CHECK(handled.load() == k_expected);  // join() waited for every follow-up
      CHECK(pool.stats().total_handled() == k_expected);
      CHECK(pool.unfinished() == 0);
    }
  }

  TEST_CASE("join() waits for follow-ups submitted by handlers" * doctest::timeout(30)) {
    // A chain: each request submits the next until the last; join() must cover the whole chain,
    // although only the first request came from outside.
    constexpr int k_chain = 500;
    std::atomic<int> handled{0};
    server_pool<int>* self = nullptr;
    server_pool<int> pool({.servers = 2, .slots_per_server = 2, .queue_capacity = 1}, [&](slot_id, int& n) {
      if (n + 1 < k_chain) {
        REQUIRE(self->submit(n + 1));  // outside handlers this would be a blocking put
      }
      handled.fetch_add(1);
    });
    self = &pool;
    REQUIRE(pool.submit(0));
    pool.join();
    CHECK(handled.load() == k_chain);
    CHECK(pool.join_for(0s));  // nothing unfinished: returns true at once
  }

  TEST_CASE("a follow-up submitted by const reference is a copy and is never refused for lack of room" *
            doctest::timeout(30)) {
    std::atomic<int> total{0};
    server_pool<std::string>* self = nullptr;
    server_pool<std::string> pool({.servers = 1, .slots_per_server = 2, .queue_capacity = 1},
                                  [&](slot_id, std::string& r) {
                                    total.fetch_add(1);
                                    if (r.size() < 6) {
                                      const std::string next = r + "x";
                                      CHECK(self->try_submit(next));
                                      CHECK(self->submit_for(next, 0s));
                                      CHECK(next == r + "x");  // untouched
                                    }
                                  });
    self = &pool;
    REQUIRE(pool.submit(std::string("x")));
    pool.join();
    CHECK(total.load() == 63);  // lengths 1..6, doubling: 1 + 2 + 4 + 8 + 16 + 32
  }

  TEST_CASE("a handler that throws counts as done and failed, and its slot keeps serving" * doctest::timeout(30)) {
    constexpr int k_requests = 100;
    std::atomic<int> ran{0};
    std::atomic<int> reported{0};
    std::mutex errors_mutex;
    std::vector<std::string> errors;
    server_pool_options options{.servers = 1, .slots_per_server = 1, .queue_capacity = 8};
    options.on_error = [&](slot_id id, std::exception_ptr e) {
      CHECK(id == slot_id{0, 0});
      reported.fetch_add(1);
      try {
        std::rethrow_exception(e);
      } catch (const std::runtime_error& ex) {
        std::lock_guard lock(errors_mutex);
        errors.emplace_back(ex.what());
      } catch (int) {
        std::lock_guard lock(errors_mutex);
        errors.emplace_back("int");
      }
    };
    server_pool<int> pool(std::move(options), [&](slot_id, int& r) {
      ran.fetch_add(1);
      if (r % 4 == 1) {
        throw std::runtime_error("request " + std::to_string(r));
      }
      if (r % 4 == 3) {
        throw 7;  // not derived from std::exception
      }
    });
    for (int i = 0; i < k_requests; ++i) {
      REQUIRE(pool.submit(i));
    }
    pool.join();                      // a failed request still counts as done
    CHECK(ran.load() == k_requests);  // one slot, so it kept serving after every throw
    const flowpool::server_pool_stats stats = pool.stats();
    CHECK(stats.servers[0].handled == k_requests);
    CHECK(stats.servers[0].failed == k_requests / 2);
    CHECK(reported.load() == k_requests / 2);
    std::lock_guard lock(errors_mutex);
    CHECK(std::count(errors.begin(), errors.end(), std::string("int")) == k_requests / 4);
    CHECK(std::count(errors.begin(), errors.end(), std::string("request 5")) == 1);
  }

  TEST_CASE("shutdown() from another thread while every slot is busy: queued requests are still handled" *
            doctest::timeout(30)) {
    for (const shape s : k_shapes) {
      CAPTURE(s.servers);
      CAPTURE(s.slots);
      const std::size_t slots = s.servers * s.slots;
      slot_gate gate(slots);
      std::atomic<std::size_t> handled{0};
      server_pool<int> pool({.servers = s.servers, .slots_per_server = s.slots, .queue_capacity = 16},
                            [&](slot_id, int&) {
                              gate.hold();
                              handled.fetch_add(1);
                            });
      for (std::size_t i = 0; i < slots + 10; ++i) {
        REQUIRE(pool.submit(static_cast<int>(i)));
      }
      gate.wait_until_all_held();  // every slot is inside a handler; 10 requests wait in the queue
      std::thread([&pool] { pool.shutdown(); }).join();
      CHECK(pool.is_shut_down());
      CHECK_FALSE(pool.submit(1));
      CHECK_FALSE(pool.try_submit(1));
      CHECK(pool.stats().queued == 10);
      gate.release();
      pool.join();
      CHECK(handled.load() == slots + 10);
    }
  }

  TEST_CASE("shutdown_now() from another thread while every slot is busy returns exactly the queued requests" *
            doctest::timeout(30)) {
    for (const shape s : k_shapes) {
      CAPTURE(s.servers);
      CAPTURE(s.slots);
      const std::size_t slots = s.servers * s.slots;
      slot_gate gate(slots);
      std::mutex mutex;
      std::set<int> handled;
      server_pool<int> pool({.servers = s.servers, .slots_per_server = s.slots, .queue_capacity = 64},
                            [&](slot_id, int& r) {
                              gate.hold();
                              std::lock_guard lock(mutex);
                              handled.insert(r);
                            });
      const int total = static_cast<int>(slots) + 20;
      for (int i = 0; i < total; ++i) {
        REQUIRE(pool.submit(i));
      }
      gate.wait_until_all_held();
      std::vector<int> returned;
      std::thread([&] { returned = pool.shutdown_now(); }).join();
      CHECK(returned.size() == 20);
      CHECK(std::is_sorted(returned.begin(), returned.end()));  // oldest first
      CHECK_FALSE(pool.submit(1));
      CHECK(pool.unfinished() == slots);  // the running ones
      gate.release();
      pool.join();
      std::lock_guard lock(mutex);
      CHECK(handled.size() == slots);
      for (int r : returned) {
        CHECK(handled.count(r) == 0);  // a returned request was never started
      }
      CHECK(handled.size() + returned.size() == static_cast<std::size_t>(total));
    }
  }

  TEST_CASE("every (server, slot) pair runs a handler, and its thread is named <name>-<server>.<slot>" *
            doctest::timeout(30)) {
    for (const shape s : k_shapes) {
      CAPTURE(s.servers);
      CAPTURE(s.slots);
      const std::size_t slots = s.servers * s.slots;
      // All slots must be inside a handler at once to pass the barrier, so each of the `slots`
      // requests is taken by a different slot.
      std::barrier<> all_active(static_cast<std::ptrdiff_t>(slots));
      std::mutex mutex;
      std::set<std::pair<std::size_t, std::size_t>> ids;
      std::set<std::string> names;
      server_pool<int> pool(
          {.servers = s.servers, .slots_per_server = s.slots, .queue_capacity = 64, .name = "svc"},
          [&](slot_id id, int&) {
            char name[16] = {};
            REQUIRE(pthread_getname_np(pthread_self(), name, sizeof name) == 0);
            {
              std::lock_guard lock(mutex);
              ids.emplace(id.server, id.slot);
              CHECK(std::string(name) == "svc-" + std::to_string(id.server) + "." + std::to_string(id.slot));
              names.emplace(name);
            }
            all_active.arrive_and_wait();
          });
      CHECK(pool.thread_count() == slots);
      for (std::size_t i = 0; i < slots; ++i) {
        REQUIRE(pool.submit(static_cast<int>(i)));
      }
      pool.join();
      std::lock_guard lock(mutex);
      CHECK(ids.size() == slots);
      CHECK(names.size() == slots);
      for (std::size_t server = 0; server < s.servers; ++server) {
        for (std::size_t slot = 0; slot < s.slots; ++slot) {
          CHECK(ids.count({server, slot}) == 1);
        }
      }
    }
  }

  TEST_CASE("stats() sums slots into servers and accounts for every request" * doctest::timeout(30)) {
    const auto before = std::chrono::steady_clock::now();
    server_pool<int> pool({.servers = 2, .slots_per_server = 2, .queue_capacity = 64}, [](slot_id, int& r) {
      std::this_thread::sleep_for(1ms);  // a lower bound for busy time, not a speed assertion
      if (r % 4 == 0) {
        throw std::runtime_error("fail");
      }
    });
    constexpr int k_requests = 40;
    for (int i = 0; i < k_requests; ++i) {
      REQUIRE(pool.submit(i));
    }
    pool.join();
    const flowpool::server_pool_stats stats = pool.stats();
    const auto elapsed = std::chrono::steady_clock::now() - before;
    CHECK(stats.total_handled() == k_requests);
    CHECK(stats.total_failed() == k_requests / 4);
    CHECK(stats.queued == 0);
    CHECK(stats.unfinished == 0);
    CHECK(stats.queue_high_water_mark >= 1);
    CHECK(stats.queue_high_water_mark <= 64);
    REQUIRE(stats.servers.size() == 2);
    REQUIRE(stats.slots.size() == 4);
    std::chrono::nanoseconds slot_busy{0};
    for (std::size_t i = 0; i < stats.slots.size(); ++i) {
      const flowpool::slot_stats& slot = stats.slots[i];
      CHECK(slot.id == slot_id{i / 2, i % 2});
      CHECK(slot.failed <= slot.handled);
      CHECK(slot.busy >= std::chrono::milliseconds(slot.handled));  // each handler slept >= 1 ms
      CHECK(slot.idle >= 0ns);
      CHECK(slot.busy + slot.idle <= elapsed);  // the slot was never in two states at once
      slot_busy += slot.busy;
    }
    for (std::size_t server = 0; server < 2; ++server) {
      const flowpool::slot_stats& a = stats.slots[server * 2];
      const flowpool::slot_stats& b = stats.slots[server * 2 + 1];
      CHECK(stats.servers[server].handled == a.handled + b.handled);
      CHECK(stats.servers[server].failed == a.failed + b.failed);
      CHECK(stats.servers[server].busy == a.busy + b.busy);
    }
    CHECK(stats.total_busy() == slot_busy);
  }

  TEST_CASE("a waiting slot's idle time keeps growing and never goes backwards" * doctest::timeout(30)) {
    server_pool<int> pool({.servers = 1, .slots_per_server = 1, .queue_capacity = 1}, [](slot_id, int&) {});
    REQUIRE(pool.submit(1));
    pool.join();
    const std::chrono::nanoseconds first = pool.stats().slots[0].idle;
    CHECK(eventually([&] { return pool.stats().slots[0].idle > first; }));
    std::chrono::nanoseconds last = first;
    for (int i = 0; i < 100; ++i) {
      const std::chrono::nanoseconds now = pool.stats().slots[0].idle;
      CHECK(now >= last);
      last = now;
    }
  }

  TEST_CASE("bad options and an empty handler throw std::invalid_argument naming the field") {
    const auto noop = [](slot_id, int&) {};
    using flowpool::server_pool_options;
    CHECK_THROWS_WITH_AS(server_pool<int>({.servers = 0}, noop),
                         doctest::Contains("options.servers must be at least 1"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(server_pool<int>({.slots_per_server = 0}, noop),
                         doctest::Contains("options.slots_per_server must be at least 1"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(server_pool<int>({.queue_capacity = 0}, noop),
                         doctest::Contains("options.queue_capacity must be at least 1"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(server_pool<int>({.servers = 4097, .slots_per_server = 1}, noop),
                         doctest::Contains("(got 4097 * 1)"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(server_pool<int>({.servers = 2049, .slots_per_server = 2}, noop),
                         doctest::Contains("at most 4096 threads"), std::invalid_argument);
    // A product that overflows std::size_t must not wrap around to a small number.
    const std::size_t huge = (std::size_t{1} << (sizeof(std::size_t) * 4)) + 1;
    CHECK_THROWS_AS(server_pool<int>({.servers = huge, .slots_per_server = huge}, noop), std::invalid_argument);
    CHECK_THROWS_AS(server_pool<int>({.servers = SIZE_MAX, .slots_per_server = SIZE_MAX}, noop), std::invalid_argument);
    CHECK_THROWS_WITH_AS(server_pool<int>({}, nullptr), doctest::Contains("handler must not be empty"),
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(server_pool<int>({}, server_pool<int>::handler_type{}),
                         doctest::Contains("handler must not be empty"), std::invalid_argument);
    // The limit itself is allowed (not started here: 4096 threads is too many for a unit test).
    CHECK_NOTHROW(flowpool::detail::fleet(flowpool::server_pool_options{.servers = 4096, .slots_per_server = 1}));
  }

  TEST_CASE("a submit after shutdown returns false and leaves a move-only request untouched" * doctest::timeout(30)) {
    std::atomic<int> outcomes{0};
    server_pool<std::unique_ptr<int>>* self = nullptr;
    server_pool<std::unique_ptr<int>> pool(
        {.servers = 1, .slots_per_server = 1, .queue_capacity = 4}, [&](slot_id, std::unique_ptr<int>& r) {
          REQUIRE(r != nullptr);
          if (*r == 1) {
            self->shutdown();  // from inside a handler: a follow-up is refused as well
            auto follow_up = std::make_unique<int>(2);
            CHECK_FALSE(self->submit(std::move(follow_up)));
            CHECK_FALSE(self->try_submit(std::move(follow_up)));
            CHECK_FALSE(self->submit_for(std::move(follow_up), 1h));
            REQUIRE(follow_up != nullptr);
            CHECK(*follow_up == 2);
            outcomes.fetch_add(1);
          }
        });
    self = &pool;
    REQUIRE(pool.submit(std::make_unique<int>(1)));
    pool.join();
    CHECK(outcomes.load() == 1);

    auto request = std::make_unique<int>(3);
    CHECK_FALSE(pool.submit(std::move(request)));
    CHECK_FALSE(pool.try_submit(std::move(request)));
    CHECK_FALSE(pool.submit_for(std::move(request), 1h));
    REQUIRE(request != nullptr);
    CHECK(*request == 3);
    CHECK(pool.shutdown_now().empty());
    CHECK(pool.stats().total_handled() == 1);
  }

  TEST_CASE("outside submitters get backpressure: try_submit and submit_for refuse a full queue" *
            doctest::timeout(30)) {
    slot_gate gate(1);
    std::atomic<int> handled{0};
    server_pool<std::unique_ptr<int>> pool({.servers = 1, .slots_per_server = 1, .queue_capacity = 2},
                                           [&](slot_id, std::unique_ptr<int>&) {
                                             gate.hold();
                                             handled.fetch_add(1);
                                           });
    REQUIRE(pool.submit(std::make_unique<int>(0)));
    gate.wait_until_all_held();  // the only slot is busy
    REQUIRE(pool.submit(std::make_unique<int>(1)));
    REQUIRE(pool.submit(std::make_unique<int>(2)));  // the queue is now full
    auto request = std::make_unique<int>(3);
    CHECK_FALSE(pool.try_submit(std::move(request)));
    CHECK_FALSE(pool.submit_for(std::move(request), 1ms));
    CHECK_FALSE(pool.submit_for(std::move(request), -1s));  // a negative timeout is one try
    REQUIRE(request != nullptr);
    CHECK_FALSE(pool.join_for(0s));
    CHECK_FALSE(pool.join_for(-5s));
    CHECK_FALSE(pool.on_own_slot());
    // A submitter blocked on the full queue is let through once the slot drains it.
    std::thread blocked([&] { CHECK(pool.submit(std::move(request))); });
    gate.release();
    blocked.join();
    CHECK(pool.join_for(std::chrono::hours::max()));  // too large for a deadline: waits without one
    CHECK(handled.load() == 4);
  }

  TEST_CASE("join() and join_for() from a handler throw std::logic_error instead of waiting for themselves" *
            doctest::timeout(30)) {
    std::atomic<int> caught{0};
    server_pool<int>* self = nullptr;
    server_pool<int> pool({.servers = 1, .slots_per_server = 2}, [&](slot_id, int&) {
      CHECK(self->on_own_slot());
      try {
        self->join();
      } catch (const std::logic_error&) {
        caught.fetch_add(1);
      }
      CHECK_THROWS_AS((void)self->join_for(1s), std::logic_error);
    });
    self = &pool;
    REQUIRE(pool.submit(1));
    pool.join();
    CHECK(caught.load() == 1);
    CHECK(pool.stats().total_failed() == 0);
  }

  TEST_CASE("the destructor handles every accepted request before it returns" * doctest::timeout(30)) {
    std::atomic<int> handled{0};
    {
      server_pool<int> pool({.servers = 1, .slots_per_server = 2, .queue_capacity = 512},
                            [&](slot_id, int&) { handled.fetch_add(1); });
      for (int i = 0; i < 500; ++i) {
        REQUIRE(pool.submit(i));
      }
    }
    CHECK(handled.load() == 500);
  }

  TEST_CASE("the destructor refuses follow-ups of the requests it drains" * doctest::timeout(30)) {
    slot_gate gate(1);
    std::atomic<int> handled{0};
    std::atomic<int> refused{0};
    server_pool<int>* self = nullptr;
    std::thread destroyer;
    {
      auto pool = std::make_unique<server_pool<int>>(server_pool_options{.servers = 1, .slots_per_server = 1},
                                                     [&](slot_id, int& r) {
                                                       gate.hold();
                                                       handled.fetch_add(1);
                                                       if (r == 0 && !self->submit(1)) {
                                                         refused.fetch_add(1);
                                                       }
                                                     });
      self = pool.get();
      REQUIRE(pool->submit(0));
      gate.wait_until_all_held();
      destroyer = std::thread([p = std::move(pool)]() mutable { p.reset(); });
      // The destructor shuts the pool down before it joins; wait for that, then let the slot go.
      CHECK(eventually([&] { return self->is_shut_down(); }));
      gate.release();
      destroyer.join();
    }
    CHECK(handled.load() == 1);
    CHECK(refused.load() == 1);
  }

  TEST_CASE("options() and thread_count() report the configuration") {
    server_pool<int> pool({.servers = 3, .slots_per_server = 2, .queue_capacity = 7, .name = "x"},
                          [](slot_id, int&) {});
    CHECK(pool.thread_count() == 6);
    CHECK(pool.options().servers == 3);
    CHECK(pool.options().slots_per_server == 2);
    CHECK(pool.options().queue_capacity == 7);
    CHECK(pool.options().name == "x");
    CHECK_FALSE(pool.is_shut_down());
    CHECK(pool.unfinished() == 0);
  }
}
