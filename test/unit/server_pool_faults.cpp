// Fault tests for flowpool::server_pool (issue 6): thread start failure in the constructor,
// request copies that throw, handlers and error callbacks that throw, and a queue that stays full.
#include <doctest/doctest.h>

#include "test_support.hpp"

#include <flowpool/detail/thread_start.hpp>
#include <flowpool/server_pool.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <latch>
#include <memory>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace {

using flowpool_test::eventually;
using flowpool_test::process_thread_count;
using flowpool_test::thread_count_baseline;

using namespace std::chrono_literals;
using flowpool::server_pool;
using flowpool::slot_id;

// A request whose copy throws while `fail_copies` is set; its move never throws.
struct fragile {
  static inline std::atomic<bool> fail_copies{false};
  int value = 0;
  explicit fragile(int v) noexcept : value(v) {}
  fragile(const fragile& other) : value(other.value) {
    if (fail_copies.load()) {
      throw std::runtime_error("fragile: copy failed");
    }
  }
  fragile(fragile&& other) noexcept = default;
  fragile& operator=(const fragile&) = default;
  fragile& operator=(fragile&&) noexcept = default;
  ~fragile() = default;
};

}  // namespace

TEST_SUITE("server_pool faults") {
  TEST_CASE("a thread that fails to start makes the constructor join the started threads and rethrow" *
            doctest::timeout(30)) {
    const std::size_t baseline = thread_count_baseline();
    for (std::size_t failing = 1; failing <= 6; ++failing) {
      CAPTURE(failing);
      std::atomic<int> calls{0};
      flowpool::detail::fail_thread_start_after(failing);  // 2 x 3 = 6 threads: fail the failing-th
      CHECK_THROWS_AS(
          server_pool<int>({.servers = 2, .slots_per_server = 3}, [&](slot_id, int&) { calls.fetch_add(1); }),
          std::system_error);
      CHECK(calls.load() == 0);
      // Every started slot thread was joined (a joined thread can linger in /proc for a moment).
      CHECK(eventually([&] { return process_thread_count() == baseline; }));
    }
    // The injected failure fired and disarmed itself: the next pool starts normally.
    std::atomic<int> calls{0};
    {
      server_pool<int> pool({.servers = 2, .slots_per_server = 3}, [&](slot_id, int&) { calls.fetch_add(1); });
      CHECK(process_thread_count() == baseline + 6);
      REQUIRE(pool.submit(1));
    }
    CHECK(calls.load() == 1);
    CHECK(eventually([&] { return process_thread_count() == baseline; }));
  }

  TEST_CASE("a request copy that throws in submit reaches the submitter and queues nothing" * doctest::timeout(30)) {
    std::atomic<int> handled{0};
    server_pool<fragile> pool({.servers = 1, .slots_per_server = 1, .queue_capacity = 4},
                              [&](slot_id, fragile&) { handled.fetch_add(1); });
    const fragile request(1);
    fragile::fail_copies = true;
    CHECK_THROWS_WITH_AS((void)pool.submit(request), "fragile: copy failed", std::runtime_error);
    CHECK_THROWS_AS((void)pool.try_submit(request), std::runtime_error);
    CHECK_THROWS_AS((void)pool.submit_for(request, 1s), std::runtime_error);
    CHECK(pool.unfinished() == 0);
    CHECK(pool.submit(fragile(2)));  // moves still work, and the pool is intact
    fragile::fail_copies = false;
    CHECK(pool.submit(request));
    pool.join();
    CHECK(handled.load() == 2);
    CHECK(request.value == 1);
  }

  TEST_CASE("a follow-up copy that throws reaches the handler, which then counts as failed" * doctest::timeout(30)) {
    std::atomic<int> handled{0};
    std::atomic<int> caught{0};
    server_pool<fragile>* self = nullptr;
    server_pool<fragile> pool({.servers = 1, .slots_per_server = 2, .queue_capacity = 1}, [&](slot_id, fragile& r) {
      handled.fetch_add(1);
      if (r.value == 0) {
        try {
          (void)self->submit(r);  // a copy: throws
        } catch (const std::runtime_error&) {
          caught.fetch_add(1);
        }
        (void)self->try_submit(r);  // throws out of the handler
      }
    });
    self = &pool;
    fragile::fail_copies = true;
    REQUIRE(pool.submit(fragile(0)));
    pool.join();
    fragile::fail_copies = false;
    CHECK(handled.load() == 1);  // nothing was queued by the failed copies
    CHECK(caught.load() == 1);
    CHECK(pool.stats().total_failed() == 1);
  }

  TEST_CASE("an on_error callback that throws is contained and the slot keeps serving" * doctest::timeout(30)) {
    std::atomic<int> reports{0};
    std::atomic<int> handled{0};
    flowpool::server_pool_options options{.servers = 1, .slots_per_server = 1, .queue_capacity = 4};
    options.on_error = [&](slot_id, std::exception_ptr) {
      reports.fetch_add(1);
      throw std::runtime_error("on_error failed too");
    };
    server_pool<int> pool(std::move(options), [&](slot_id, int& r) {
      handled.fetch_add(1);
      if (r % 2 == 0) {
        throw std::out_of_range("even");
      }
    });
    for (int i = 0; i < 20; ++i) {
      REQUIRE(pool.submit(i));
    }
    pool.join();
    CHECK(handled.load() == 20);
    CHECK(reports.load() == 10);
    CHECK(pool.stats().total_failed() == 10);
  }

  TEST_CASE("a queue that stays full for a long time loses nothing, then shutdown_now frees blocked submitters" *
            doctest::timeout(60)) {
    // Large move-only payloads, so ASan sees any leak or double free on every path.
    using payload = std::unique_ptr<std::vector<char>>;
    constexpr std::size_t k_capacity = 4;
    constexpr int k_submitters = 4;
    constexpr int k_each = 16;
    std::latch slot_busy(1);
    std::latch release(1);
    std::atomic<int> handled{0};
    std::atomic<int> refused{0};
    std::atomic<int> intact_after_refusal{0};
    server_pool<payload> pool({.servers = 1, .slots_per_server = 1, .queue_capacity = k_capacity},
                              [&](slot_id, payload& p) {
                                if (handled.fetch_add(1) == 0) {
                                  slot_busy.count_down();
                                  release.wait();
                                }
                                CHECK(p->size() == 64 * 1024);
                              });
    REQUIRE(pool.submit(std::make_unique<std::vector<char>>(64 * 1024)));
    slot_busy.wait();
    std::vector<std::thread> submitters;
    for (int t = 0; t < k_submitters; ++t) {
      submitters.emplace_back([&] {
        for (int i = 0; i < k_each; ++i) {
          auto p = std::make_unique<std::vector<char>>(64 * 1024);
          if (!pool.submit(std::move(p))) {
            refused.fetch_add(1);
            if (p != nullptr && p->size() == 64 * 1024) {
              intact_after_refusal.fetch_add(1);
            }
          }
        }
      });
    }
    // The queue fills up and the submitters block on it; none of them gets past the capacity.
    REQUIRE(eventually([&] { return pool.stats().queued == k_capacity; }));
    std::vector<payload> returned;
    std::thread([&] { returned = pool.shutdown_now(); }).join();
    for (std::thread& t : submitters) {
      t.join();  // every blocked submitter was woken and refused
    }
    release.count_down();
    pool.join();
    CHECK(pool.stats().queue_high_water_mark == k_capacity);
    CHECK(refused.load() == intact_after_refusal.load());
    CHECK(static_cast<std::size_t>(handled.load()) + returned.size() + static_cast<std::size_t>(refused.load()) ==
          1 + k_submitters * k_each);
    CHECK(returned.size() == k_capacity);
    CHECK(handled.load() == 1);
  }
}
