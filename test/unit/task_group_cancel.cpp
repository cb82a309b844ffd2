// task_group::cancel() and is_canceling() (issue 14): tasks that have not started are skipped,
// running ones finish, wait() returns normally, the group is reusable, nested groups see their
// parent's cancellation, and skipped tasks are counted in stats().
#include "pool_test_util.hpp"
#include "test_support.hpp"

#include <doctest/doctest.h>

#include <flowpool/parallel_for.hpp>
#include <flowpool/parallel_reduce.hpp>
#include <flowpool/task_group.hpp>
#include <flowpool/thread_pool.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <latch>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using flowpool::pool_options;
using flowpool::task_group;
using flowpool::thread_pool;
using flowpool_test::k_thread_counts;

TEST_SUITE("task_group") {
  TEST_CASE("tasks run into a cancelled group are skipped, wait returns normally, and the group is reusable" *
            doctest::timeout(60)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool(threads);
      std::atomic<int> ran{0};
      task_group group(pool);
      CHECK_FALSE(group.is_canceling());
      group.cancel();
      CHECK(group.is_canceling());
      group.cancel();  // idempotent
      for (int i = 0; i < 100; ++i) {
        group.run([&ran] { ran.fetch_add(1); });
      }
      CHECK_NOTHROW(group.wait());
      CHECK(ran.load() == 0);
      CHECK_FALSE(group.is_canceling());  // the cancellation ended with the wait
      for (int i = 0; i < 100; ++i) {
        group.run([&ran] { ran.fetch_add(1); });
      }
      group.wait();
      CHECK(ran.load() == 100);
      pool.wait_idle();
      const flowpool::pool_stats stats = pool.stats();
      CHECK(stats.skipped == 100);
      CHECK(stats.submitted == stats.completed + stats.dropped);
      std::uint64_t per_worker = 0;
      for (const auto& w : stats.workers) {
        per_worker += w.skipped;
      }
      CHECK(per_worker == 100);
    }
  }

  TEST_CASE("a task that cancels its own group stops its siblings that have not started" * doctest::timeout(60)) {
    // One worker, held until every task is queued: the first task cancels, so with one thread
    // exactly that one runs. With more threads some siblings may already be running; every task
    // still ends once, run or skipped.
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads, .queue_capacity = 1024}};
      constexpr int k_tasks = 500;
      std::atomic<int> ran{0};
      std::latch queued(1);
      {
        task_group group(pool);
        group.run([&] {
          queued.wait();
          ran.fetch_add(1);
          group.cancel();
        });
        for (int i = 1; i < k_tasks; ++i) {
          group.run([&ran] { ran.fetch_add(1); });
        }
        queued.count_down();
        CHECK_NOTHROW(group.wait());
      }
      pool.wait_idle();
      const flowpool::pool_stats stats = pool.stats();
      CHECK(static_cast<std::uint64_t>(ran.load()) + stats.skipped == k_tasks);
      if (threads == 1) {
        CHECK(ran.load() == 1);
      }
      CHECK(stats.submitted == stats.completed + stats.dropped);
    }
  }

  TEST_CASE("a group created inside a cancelled group's task sees the cancellation, at any depth" *
            doctest::timeout(60)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool(threads);
      std::atomic<int> inner_ran{0};
      std::atomic<int> saw_cancel{0};
      std::latch outer_started(1);
      std::latch canceled(1);
      task_group outer(pool);
      outer.run([&] {
        outer_started.count_down();
        canceled.wait();  // the parent is cancelled while this task runs
        task_group child(pool);
        saw_cancel.fetch_add(child.is_canceling() ? 1 : 0);
        for (int i = 0; i < 50; ++i) {
          child.run([&] {
            task_group grandchild(pool);  // never runs: its parent's tasks are skipped
            grandchild.run([&inner_ran] { inner_ran.fetch_add(1); });
            inner_ran.fetch_add(1);
          });
        }
        child.wait();
        saw_cancel.fetch_add(child.is_canceling() ? 1 : 0);  // still: the parent's wait has not ended
      });
      outer_started.wait();
      outer.cancel();
      canceled.count_down();
      outer.wait();
      CHECK(saw_cancel.load() == 2);
      CHECK(inner_ran.load() == 0);
      CHECK_FALSE(outer.is_canceling());
    }
  }

  TEST_CASE("a parallel_for inside a task of a cancelled group skips pieces and returns normally" *
            doctest::timeout(60)) {
    // Documented in limitations.md: the algorithm's own group is a child of the cancelled one.
    thread_pool pool(2);
    constexpr int k_indices = 100'000;
    std::atomic<int> visited{0};
    bool saw_cancel = false;
    task_group outer(pool);
    std::latch started(1);
    std::latch canceled(1);
    outer.run([&] {
      started.count_down();
      canceled.wait();
      saw_cancel = outer.is_canceling();
      flowpool::parallel_for(pool, 0, k_indices, [&visited](int) { visited.fetch_add(1); });
    });
    started.wait();
    outer.cancel();
    canceled.count_down();
    CHECK_NOTHROW(outer.wait());
    CHECK(saw_cancel);
    CHECK(visited.load() > 0);  // the piece on the calling worker runs
    CHECK(visited.load() < k_indices);
  }

  TEST_CASE("a parallel_reduce inside a task of a cancelled group returns without touching skipped pieces" *
            doctest::timeout(60)) {
    // The skipped pieces leave no result; the reduction must not read them (it once dereferenced
    // the empty ones: undefined behaviour, a crash for std::string under ASan). The value is
    // unspecified (documented), but it is made only of pieces that ran.
    thread_pool pool(2);
    constexpr int k_indices = 10'000;
    std::string result;
    task_group outer(pool);
    std::latch started(1);
    std::latch canceled(1);
    outer.run([&] {
      started.count_down();
      canceled.wait();
      result = flowpool::parallel_reduce(
          pool, 0, k_indices, std::string{}, [](int) { return std::string("x"); },
          [](std::string a, const std::string& b) { return a + b; });
    });
    started.wait();
    outer.cancel();
    canceled.count_down();
    CHECK_NOTHROW(outer.wait());
    CHECK(result.size() < static_cast<std::size_t>(k_indices));
    CHECK(result.find_first_not_of('x') == std::string::npos);
  }

  TEST_CASE("cancelling a child group does not cancel its parent or siblings" * doctest::timeout(60)) {
    thread_pool pool(2);
    std::atomic<int> ran{0};
    task_group parent(pool);
    for (int c = 0; c < 4; ++c) {
      parent.run([&, c] {
        task_group child(pool);
        if (c == 0) {
          child.cancel();
        }
        for (int i = 0; i < 10; ++i) {
          child.run([&ran] { ran.fetch_add(1); });
        }
        child.wait();
      });
    }
    parent.wait();
    CHECK(ran.load() == 30);
  }

  TEST_CASE("an error thrown by a running task is still rethrown by wait after cancel" * doctest::timeout(60)) {
    thread_pool pool(2);
    task_group group(pool);
    std::latch started(1);
    std::latch release(1);
    group.run([&] {
      started.count_down();
      release.wait();
      throw std::runtime_error("running task failed");
    });
    started.wait();
    group.cancel();
    release.count_down();
    CHECK_THROWS_AS(group.wait(), std::runtime_error);
    CHECK_FALSE(group.is_canceling());
  }

  TEST_CASE("cancel racing with running and queued tasks from several threads: every task ends once" *
            doctest::timeout(300)) {
    // Submitters run tasks into one group while a canceller cancels at a pseudo-random point;
    // every round checks conservation (ran + skipped == submitted) and that the group and the pool
    // are reusable. 1, 2 and 8 threads.
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads, .queue_capacity = 256}};
      const auto start = std::chrono::steady_clock::now();
      std::uint64_t rounds = 0;
      std::uint64_t total_skipped = 0;
      while (rounds < 10'000 &&
             (rounds < 5 || std::chrono::steady_clock::now() - start < flowpool_test::stress_duration() / 3)) {
        ++rounds;
        const std::uint64_t skipped_before = pool.stats().skipped;
        std::atomic<std::uint64_t> ran{0};
        std::atomic<std::uint64_t> submitted{0};
        task_group group(pool);
        std::latch go(3);
        std::vector<std::thread> threads_here;
        for (int s = 0; s < 2; ++s) {
          threads_here.emplace_back([&, s] {
            go.arrive_and_wait();
            for (int i = 0; i < 200; ++i) {
              group.run([&ran, &group, s, i] {
                ran.fetch_add(1);
                if (s == 1 && i == 50) {
                  group.cancel();  // a task cancels too
                }
              });
              submitted.fetch_add(1);
            }
          });
        }
        threads_here.emplace_back([&] {
          go.arrive_and_wait();
          for (std::uint64_t spin = 0; spin < (rounds * 7919) % 200000; ++spin) {
            std::atomic_signal_fence(std::memory_order_seq_cst);
          }
          group.cancel();
        });
        for (std::thread& t : threads_here) {
          t.join();
        }
        group.wait();
        pool.wait_idle();
        const std::uint64_t skipped = pool.stats().skipped - skipped_before;
        total_skipped += skipped;
        REQUIRE(ran.load() + skipped == submitted.load());
        CHECK_FALSE(group.is_canceling());
        // Reusable: a new round in the same group runs everything.
        std::atomic<int> after{0};
        for (int i = 0; i < 10; ++i) {
          group.run([&after] { after.fetch_add(1); });
        }
        group.wait();
        REQUIRE(after.load() == 10);
      }
      MESSAGE("rounds: " << rounds << ", tasks skipped: " << total_skipped);
      const flowpool::pool_stats stats = pool.stats();
      CHECK(stats.submitted == stats.completed + stats.dropped);
    }
  }
}
