// Issue 9: the "nothing busy-waits" promises. Every thread of the process is blocked (in a
// bounded_queue, a server_pool, a thread_pool or a task_group) while the main thread sleeps
// through a measurement window; the process's CPU time over that window must stay far below the
// window. A correct library can never fail this (blocked threads use no CPU, whatever the load on
// the machine); a thread that spins fails it unless the machine starves it of almost all CPU.
// The sleep here is the measured window itself, not a way to order threads: every hand-off uses a
// latch.
#include "promises_support.hpp"
#include "test_support.hpp"

#include <doctest/doctest.h>

#include <flowpool/bounded_queue.hpp>
#include <flowpool/server_pool.hpp>
#include <flowpool/task_group.hpp>
#include <flowpool/thread_pool.hpp>

#include <time.h>

#include <chrono>
#include <latch>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

std::chrono::nanoseconds process_cpu_time() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

constexpr auto k_settle = 200ms;  // lets every thread reach its blocking call (and a pool's spin phase end)
constexpr auto k_window = 400ms;  // the measured window

// CPU time the whole process used during a window in which it should be idle.
std::chrono::nanoseconds cpu_while_blocked() {
  std::this_thread::sleep_for(k_settle);
  const auto before = process_cpu_time();
  std::this_thread::sleep_for(k_window);
  return process_cpu_time() - before;
}

}  // namespace

TEST_SUITE("no busy wait promises") {
  // bounded_queue.hpp: "Blocked threads sleep on condition variables; nothing busy-waits."
  TEST_CASE("threads blocked in put, get and join of a bounded_queue use no CPU" * doctest::timeout(60)) {
    flowpool::bounded_queue<int> full(1);
    flowpool::bounded_queue<int> empty(1);
    REQUIRE(full.put(0));
    std::latch ready(7);
    std::vector<std::thread> threads;
    for (int i = 0; i < 2; ++i) {
      threads.emplace_back([&] {
        ready.arrive_and_wait();
        (void)full.put(1);  // blocks: full
      });
      threads.emplace_back([&] {
        ready.arrive_and_wait();
        (void)empty.get();  // blocks: empty
      });
      threads.emplace_back([&] {
        ready.arrive_and_wait();
        full.join();  // blocks: one item unfinished
      });
    }
    ready.arrive_and_wait();
    const auto used = cpu_while_blocked();
    MESSAGE("CPU used while blocked: " << std::chrono::duration_cast<std::chrono::milliseconds>(used).count() << " ms");
    (void)full.shutdown_now();
    empty.shutdown();
    for (auto& t : threads) {
      t.join();
    }
    CHECK(used < k_window / 4);
  }

  // server_pool.hpp: "Nothing busy-waits: an idle slot sleeps on its own condition variable"; join() blocks.
  TEST_CASE("idle server_pool slots and a thread blocked in join use no CPU" * doctest::timeout(60)) {
    std::latch started(1);
    std::latch release(1);
    flowpool::server_pool<int> pool({.servers = 2, .slots_per_server = 2, .queue_capacity = 4},
                                    [&](flowpool::slot_id, int&) {
                                      started.count_down();
                                      release.wait();  // one slot held; three idle
                                    });
    REQUIRE(pool.submit(1));
    started.wait();
    std::thread joiner([&] { pool.join(); });
    const auto used = cpu_while_blocked();
    MESSAGE("CPU used while blocked: " << std::chrono::duration_cast<std::chrono::milliseconds>(used).count() << " ms");
    release.count_down();
    joiner.join();
    CHECK(used < k_window / 4);
  }

  // server_pool.hpp: an ejected server's slots "sleep; they do not poll", during the ejection and
  // after it, while its probe waits for a request.
  TEST_CASE("an ejected server's slots use no CPU, during the ejection and after it with nothing queued" *
            doctest::timeout(60)) {
    flowpool::server_pool_options options;
    options.servers = 2;
    options.slots_per_server = 2;
    options.max_attempts = 2;
    options.eject_after = 1;
    options.eject_for = 50ms;  // ends inside the settle time: the window sees the probe-due state
    flowpool::server_pool<int> pool(options, [](flowpool::slot_id id, int&) {
      if (id.server == 0) {
        throw std::runtime_error("down");
      }
    });
    for (int i = 0; i < 1000 && pool.state(0) != flowpool::server_state::ejected; ++i) {
      REQUIRE(pool.submit(int{i}));
      pool.join();
    }
    REQUIRE(pool.state(0) == flowpool::server_state::ejected);
    const auto used = cpu_while_blocked();
    MESSAGE("CPU used while blocked: " << std::chrono::duration_cast<std::chrono::milliseconds>(used).count() << " ms");
    CHECK(pool.state(0) == flowpool::server_state::ejected);  // no request came to probe it
    CHECK(used < k_window / 4);
  }

  // thread_pool.hpp: "when it finds nothing it spins briefly and then sleeps, so an idle pool uses
  // no CPU"; wait_idle() "Blocks (sleeps; no busy wait)"; task_group.hpp: wait() "Outside the pool
  // it sleeps (no busy wait)".
  TEST_CASE("idle thread_pool workers, wait_idle and an outside task_group::wait use no CPU" * doctest::timeout(60)) {
    flowpool::thread_pool pool{flowpool::pool_options{.threads = 2}};
    std::latch started(1);
    std::latch release(1);
    flowpool::task_group group(pool);
    group.run([&] {
      started.count_down();
      release.wait();  // one worker held; the other idle
    });
    started.wait();
    std::thread idle_waiter([&] { pool.wait_idle(); });
    std::thread group_waiter([&] { group.wait(); });
    const auto used = cpu_while_blocked();
    MESSAGE("CPU used while blocked: " << std::chrono::duration_cast<std::chrono::milliseconds>(used).count() << " ms");
    release.count_down();
    idle_waiter.join();
    group_waiter.join();
    CHECK(used < k_window / 4);
  }
}
