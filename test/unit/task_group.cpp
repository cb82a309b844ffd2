// Contract tests for flowpool::task_group (issue 4): fork-join on a thread_pool, from inside and
// outside the pool, with 1, 2 and 8 worker threads.
#include "pool_test_util.hpp"

#include <doctest/doctest.h>

#include <flowpool/task_group.hpp>
#include <flowpool/thread_pool.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <future>
#include <latch>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using flowpool::pool_options;
using flowpool::task_group;
using flowpool::thread_pool;
using flowpool_test::eventually;
using flowpool_test::k_thread_counts;
using flowpool_test::stays_false;
using flowpool_test::worker_hold;

namespace {

std::uint64_t serial_fib(int n) {
  return n < 2 ? static_cast<std::uint64_t>(n) : serial_fib(n - 1) + serial_fib(n - 2);
}

// One task_group per call: the classic fork-join benchmark shape. Plain (non-atomic) results:
// wait() must publish the child's write to the parent.
std::uint64_t group_fib(thread_pool& pool, int n) {
  if (n < 2) {
    return static_cast<std::uint64_t>(n);
  }
  std::uint64_t left = 0;
  task_group group(pool);
  group.run([&pool, &left, n] { left = group_fib(pool, n - 1); });
  const std::uint64_t right = group_fib(pool, n - 2);
  group.wait();
  return left + right;
}

// A chain of `depth` groups, each waiting for a single child that opens the next group.
int nest(thread_pool& pool, int depth) {
  if (depth == 0) {
    return 0;
  }
  int below = -1;
  task_group group(pool);
  group.run([&pool, &below, depth] { below = nest(pool, depth - 1); });
  group.wait();
  return below + 1;
}

}  // namespace

TEST_SUITE("task_group") {
  TEST_CASE("wait returns after every task run in the group has finished" * doctest::timeout(30)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      constexpr std::size_t k_tasks = 500;
      std::vector<int> done(k_tasks, 0);  // plain ints: wait() must publish them
      task_group group(pool);
      group.wait();  // nothing run yet: returns at once
      for (std::size_t i = 0; i < k_tasks; ++i) {
        group.run([&done, i] { done[i] = static_cast<int>(i) + 1; });
      }
      group.wait();
      for (std::size_t i = 0; i < k_tasks; ++i) {
        CHECK(done[i] == static_cast<int>(i) + 1);
      }
    }
  }

  TEST_CASE("wait does not return while a task of the group is still running" * doctest::timeout(30)) {
    thread_pool pool{pool_options{.threads = 2}};
    task_group group(pool);
    std::latch release(1);
    std::atomic<int> finished{0};
    group.run([&] {
      release.wait();
      finished.fetch_add(1);
    });
    group.run([&] { finished.fetch_add(1); });
    std::atomic<bool> returned{false};
    std::thread waiter([&] {
      group.wait();
      returned.store(true);
    });
    CHECK(stays_false([&] { return returned.load(); }));
    release.count_down();
    waiter.join();
    CHECK(finished.load() == 2);
  }

  TEST_CASE("a group can be reused after wait" * doctest::timeout(30)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      task_group group(pool);
      std::atomic<int> ran{0};
      for (int round = 1; round <= 5; ++round) {
        for (int i = 0; i < 40; ++i) {
          group.run([&ran] { ran.fetch_add(1); });
        }
        group.wait();
        CHECK(ran.load() == 40 * round);
      }
    }
  }

  TEST_CASE("tasks may run more tasks into their own group while it is being waited for" * doctest::timeout(30)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      task_group group(pool);
      std::atomic<int> nodes{0};
      struct walker {
        task_group* group;
        std::atomic<int>* nodes;
        int depth;
        void operator()() const {
          nodes->fetch_add(1);
          if (depth > 0) {
            group->run(walker{group, nodes, depth - 1});
            group->run(walker{group, nodes, depth - 1});
          }
        }
      };
      group.run(walker{&group, &nodes, 9});
      group.wait();
      CHECK(nodes.load() == 1023);
    }
  }

  TEST_CASE("wait rethrows the first exception, and only after every task of the group has finished" *
            doctest::timeout(30)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      task_group group(pool);
      std::atomic<int> finished{0};
      constexpr int k_tasks = 200;
      for (int i = 0; i < k_tasks; ++i) {
        group.run([&finished, i] {
          finished.fetch_add(1);
          if (i == 13 || i == 150) {
            throw std::runtime_error(std::to_string(i));
          }
        });
      }
      std::string message;
      try {
        group.wait();
        FAIL("wait did not rethrow");
      } catch (const std::runtime_error& e) {
        message = e.what();
      }
      CHECK((message == "13" || message == "150"));
      CHECK(finished.load() == k_tasks);
      // The error was reported once; the group is usable again and its next wait is clean.
      group.run([&finished] { finished.fetch_add(1); });
      CHECK_NOTHROW(group.wait());
      CHECK(finished.load() == k_tasks + 1);
      // A non-std exception type passes through unchanged.
      group.run([] { throw 42; });
      CHECK_THROWS_AS(group.wait(), int);
    }
  }

  TEST_CASE("after a task threw, wait still blocks until the slow tasks of the group finish" * doctest::timeout(30)) {
    thread_pool pool{pool_options{.threads = 2}};
    task_group group(pool);
    std::latch release(1);
    std::atomic<bool> slow_done{false};
    std::latch thrower_done(1);
    group.run([&] {
      release.wait();
      slow_done.store(true);
    });
    group.run([&] {
      thrower_done.count_down();
      throw std::runtime_error("fast failure");
    });
    thrower_done.wait();
    std::atomic<int> outcome{0};  // 0 waiting, 1 returned normally, 2 threw with slow task done, 3 threw early
    std::thread waiter([&] {
      try {
        group.wait();
        outcome.store(1);
      } catch (const std::runtime_error&) {
        outcome.store(slow_done.load() ? 2 : 3);
      }
    });
    CHECK(stays_false([&] { return outcome.load() != 0; }));
    release.count_down();
    waiter.join();
    CHECK(outcome.load() == 2);
  }

  TEST_CASE("the destructor waits for the group's tasks" * doctest::timeout(30)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      std::atomic<int> finished{0};
      std::latch release(1);
      std::thread releaser;
      {
        task_group group(pool);
        for (int i = 0; i < 50; ++i) {
          group.run([&] {
            release.wait();
            finished.fetch_add(1);
          });
        }
        releaser = std::thread([&] { release.count_down(); });
      }  // ~task_group
      CHECK(finished.load() == 50);
      releaser.join();
    }
  }

  TEST_CASE("the destructor of a group whose task threw, never waited for, neither throws nor terminates" *
            doctest::timeout(30)) {
    thread_pool pool{pool_options{.threads = 2}};
    std::atomic<int> finished{0};
    {
      task_group group(pool);
      group.run([] { throw std::runtime_error("unobserved"); });
      group.run([&finished] { finished.fetch_add(1); });
    }
    CHECK(finished.load() == 1);
    CHECK(pool.submit([] { return 5; }).get() == 5);
  }

  TEST_CASE("tasks of a group discarded by shutdown_now make wait throw shut_down_error" * doctest::timeout(30)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      worker_hold hold(pool, threads);
      REQUIRE(hold.wait_started());
      std::atomic<int> ran{0};
      task_group group(pool);
      for (int i = 0; i < 5; ++i) {
        group.run([&ran] { ran.fetch_add(1); });
      }
      std::atomic<std::size_t> dropped{0};
      std::thread stopper([&] { dropped.store(pool.shutdown_now()); });
      // Release the workers only once shutdown_now has dropped the group's tasks (the first five in
      // the FIFO injection queue). Waiting for try_post to be refused was racy: a refusal can also
      // mean the queue is full, and filling it before the stopper started let the tasks run.
      CHECK(eventually([&] { return pool.stats().dropped >= 5; }));
      hold.release();
      stopper.join();
      CHECK(dropped.load() >= 5);
      CHECK_THROWS_AS(group.wait(), flowpool::shut_down_error);
      CHECK(ran.load() == 0);
    }
  }

  TEST_CASE("wait on a worker runs other tasks: a chain of 25 nested groups finishes on one thread" *
            doctest::timeout(30)) {
    thread_pool pool{pool_options{.threads = 1}};
    CHECK(pool.submit([&pool] { return nest(pool, 25); }).get() == 25);
    CHECK(pool.submit([&pool] { return nest(pool, 100); }).get() == 100);
    CHECK(nest(pool, 25) == 25);  // the outermost wait on an external thread
  }

  TEST_CASE("nested fork-join computes fib(18) with 1, 2 and 8 threads" * doctest::timeout(60)) {
    const std::uint64_t expected = serial_fib(18);
    REQUIRE(expected == 2584);
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      CHECK(group_fib(pool, 18) == expected);                                         // root on an external thread
      CHECK(pool.submit([&pool] { return group_fib(pool, 18); }).get() == expected);  // root on a worker
      pool.wait_idle();
    }
  }

  TEST_CASE("several external threads use their own groups on one pool at once" * doctest::timeout(30)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads, .queue_capacity = 8}};
      constexpr int k_users = 4;
      constexpr int k_tasks = 300;
      std::vector<int> sums(k_users, 0);
      std::vector<std::thread> users;
      users.reserve(k_users);
      for (int u = 0; u < k_users; ++u) {
        users.emplace_back([&pool, &sums, u] {
          std::vector<int> values(k_tasks, 0);
          task_group group(pool);
          for (int i = 0; i < k_tasks; ++i) {
            group.run([&values, i] { values[static_cast<std::size_t>(i)] = i; });
          }
          group.wait();
          int sum = 0;
          for (const int v : values) {
            sum += v;
          }
          sums[static_cast<std::size_t>(u)] = sum;
        });
      }
      for (auto& user : users) {
        user.join();
      }
      for (const int sum : sums) {
        CHECK(sum == k_tasks * (k_tasks - 1) / 2);
      }
    }
  }

  TEST_CASE("a group created on a worker and waited there sees the writes of its tasks" * doctest::timeout(30)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      std::future<long> total = pool.submit([&pool] {
        std::vector<long> parts(64, 0);
        task_group group(pool);
        for (std::size_t i = 0; i < parts.size(); ++i) {
          group.run([&parts, i] { parts[i] = static_cast<long>(i) * 2; });
        }
        group.wait();
        long sum = 0;
        for (const long p : parts) {
          sum += p;
        }
        return sum;
      });
      CHECK(total.get() == 63L * 64L);
    }
  }

  TEST_CASE("waiting workers help: more simultaneously waiting groups than threads still finish" *
            doctest::timeout(30)) {
    // Each of 16 outer tasks waits for its own inner group; with 2 workers, progress depends on
    // waiting workers running other tasks.
    thread_pool pool{pool_options{.threads = 2}};
    std::atomic<int> inner_done{0};
    task_group outer(pool);
    for (int i = 0; i < 16; ++i) {
      outer.run([&pool, &inner_done] {
        task_group inner(pool);
        for (int j = 0; j < 8; ++j) {
          inner.run([&inner_done] { inner_done.fetch_add(1); });
        }
        inner.wait();
      });
    }
    outer.wait();
    CHECK(inner_done.load() == 16 * 8);
    CHECK(eventually([&] { return pool.wait_idle_for(std::chrono::milliseconds(10)); }));
  }
}
