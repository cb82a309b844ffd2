// Regression stress for issue 9, bug 1: task_group::wait() from an outside thread while other
// threads keep calling run() on the same group ("run() may be called concurrently from any
// thread"). Before the fix, a completer that saw the last-task-with-waiter state after a run()
// slipped in could wake a waiter that had already returned: a write into a dead stack frame, a
// segfault, or a wait() that returned before its own task finished. Under TSan the race on the
// waiter pointer was reported within seconds (../shared/repro/group_race.cpp).
//
// Each case runs for flowpool_test::stress_duration() (FLOWPOOL_STRESS_SECONDS); a watchdog
// (test/stress/promises_support.hpp) aborts with the case's name if no round completes for 60 s.
#include "promises_support.hpp"
#include "test_support.hpp"

#include <doctest/doctest.h>

#include <flowpool/task_group.hpp>
#include <flowpool/thread_pool.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <thread>
#include <vector>

using flowpool::pool_options;
using flowpool::task_group;
using flowpool::thread_pool;

namespace {

using clock_type = std::chrono::steady_clock;

struct race_setup {
  std::size_t workers;
  int feeders;
};

}  // namespace

TEST_SUITE("task_group") {
  TEST_CASE("wait() from an outside thread while other threads run() on the same group" * doctest::timeout(600)) {
    for (const race_setup setup : {race_setup{2, 1}, race_setup{4, 2}, race_setup{1, 2}}) {
      CAPTURE(setup.workers);
      CAPTURE(setup.feeders);
      thread_pool pool{pool_options{.threads = setup.workers, .queue_capacity = 64}};
      std::atomic<std::uint64_t> rounds{0};
      std::atomic<std::uint64_t> fed{0};
      std::atomic<std::uint64_t> fed_ran{0};
      std::uint64_t early = 0;
      {
        task_group group(pool);
        flowpool_test::progress_watchdog dog("wait() from an outside thread while other threads run()",
                                             std::chrono::seconds(60));
        std::atomic<bool> stop{false};
        std::vector<std::thread> feeders;
        for (int i = 0; i < setup.feeders; ++i) {
          feeders.emplace_back([&] {
            // Bounded by count as well as by the stop flag.
            for (int n = 0; n < 50'000'000 && !stop.load(std::memory_order_relaxed); ++n) {
              group.run([&fed_ran] { fed_ran.fetch_add(1, std::memory_order_relaxed); });
              fed.fetch_add(1, std::memory_order_relaxed);
            }
          });
        }
        const auto start = clock_type::now();
        const auto budget = flowpool_test::stress_duration() / 3;
        do {  // at least one round, however late this thread gets here: rounds > 0 is checked

          // The marker lives on this frame, like the waiter: a wait() that returns early is seen.
          std::atomic<bool> done{false};
          group.run([&done] {
            for (int i = 0; i < 200; ++i) {
              std::atomic_signal_fence(std::memory_order_seq_cst);
            }
            done.store(true, std::memory_order_release);
          });
          group.wait();
          if (!done.load(std::memory_order_acquire)) {
            ++early;
            while (!done.load(std::memory_order_acquire)) {  // keep `done` alive until the task ends
              std::this_thread::yield();
            }
          }
          rounds.fetch_add(1, std::memory_order_relaxed);
          dog.tick();
        } while (clock_type::now() - start < budget);
        stop.store(true, std::memory_order_relaxed);
        for (std::thread& t : feeders) {
          t.join();
        }
        group.wait();
      }
      CHECK(early == 0);
      CHECK(rounds.load() > 0);
      // Conservation: every task the feeders ran was executed once.
      CHECK(fed_ran.load() == fed.load());
    }
  }

  TEST_CASE("wait() rethrows a covered task's error while other threads run() throwing tasks" * doctest::timeout(600)) {
    thread_pool pool{pool_options{.threads = 2, .queue_capacity = 64}};
    std::atomic<std::uint64_t> rounds{0};
    std::uint64_t silent = 0;  // rounds whose marker threw but whose wait() did not
    std::uint64_t feeder_errors_seen = 0;
    {
      task_group group(pool);
      flowpool_test::progress_watchdog dog("wait() rethrows a covered task's error while other threads run()",
                                           std::chrono::seconds(60));
      std::atomic<bool> stop{false};
      std::thread feeder([&] {
        for (int n = 0; n < 50'000'000 && !stop.load(std::memory_order_relaxed); ++n) {
          group.run([n] {
            if (n % 7 == 0) {
              throw std::runtime_error("feeder");
            }
          });
        }
      });
      const auto start = clock_type::now();
      do {  // at least one round, however late this thread gets here: rounds > 0 is checked
        group.run([] { throw std::logic_error("marker"); });
        bool threw = false;
        try {
          group.wait();
        } catch (const std::logic_error&) {
          threw = true;
        } catch (const std::runtime_error&) {
          threw = true;  // a feeder task's error was first: also a correct report
          ++feeder_errors_seen;
        }
        if (!threw) {
          ++silent;
        }
        rounds.fetch_add(1, std::memory_order_relaxed);
        dog.tick();
      } while (clock_type::now() - start < flowpool_test::stress_duration() / 3);
      stop.store(true, std::memory_order_relaxed);
      feeder.join();
      try {
        group.wait();
      } catch (const std::exception&) {  // the feeder's last error, if any: reported, as it should be
      }
    }
    MESSAGE("rounds: " << rounds.load() << ", feeder errors reported first: " << feeder_errors_seen);
    CHECK(silent == 0);
    CHECK(rounds.load() > 0);
  }
}
