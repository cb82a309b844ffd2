// Bad input, misuse and fault tests for flowpool::thread_pool, task_group and parallel_for
// (issue 6): each gets a clear, documented error and changes nothing.
#include "pool_test_util.hpp"

#include <doctest/doctest.h>

#include <flowpool/detail/thread_start.hpp>
#include <flowpool/parallel_for.hpp>
#include <flowpool/task_group.hpp>
#include <flowpool/thread_pool.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <future>
#include <latch>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

using flowpool::pool_options;
using flowpool::shut_down_error;
using flowpool::task_group;
using flowpool::thread_pool;
using flowpool_test::k_thread_counts;
using flowpool_test::worker_hold;

namespace {

// The message of the std::invalid_argument that constructing a pool with `options` throws, or
// "<no throw>" / "<other exception>".
std::string construction_error(pool_options options) {
  try {
    thread_pool pool{std::move(options)};
  } catch (const std::invalid_argument& e) {
    return e.what();
  } catch (...) {
    return "<other exception>";
  }
  return "<no throw>";
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A callable whose move constructor throws while `*armed` is set: submitting it must hand the
// exception to the caller and queue nothing.
struct throwing_move {
  std::shared_ptr<std::atomic<bool>> armed;
  std::atomic<int>* ran;
  throwing_move(std::shared_ptr<std::atomic<bool>> a, std::atomic<int>* r) : armed(std::move(a)), ran(r) {}
  throwing_move(const throwing_move& other) : armed(other.armed), ran(other.ran) {
    if (armed->load()) {
      throw std::runtime_error("copy failed");
    }
  }
  // Copies `armed` on purpose: a move that throws must leave the source intact.
  // NOLINTNEXTLINE(performance-move-constructor-init)
  throwing_move(throwing_move&& other) noexcept(false) : armed(other.armed), ran(other.ran) {
    if (armed->load()) {
      throw std::runtime_error("move failed");
    }
  }
  throwing_move& operator=(const throwing_move&) = delete;
  throwing_move& operator=(throwing_move&&) = delete;
  ~throwing_move() = default;
  void operator()() const { ran->fetch_add(1); }
};

}  // namespace

TEST_SUITE("thread_pool errors") {
  TEST_CASE("an absurd thread count is rejected with std::invalid_argument naming the field") {
    for (const std::size_t threads :
         {std::numeric_limits<std::size_t>::max(), std::size_t{1} << 40U, thread_pool::k_max_threads + 1}) {
      CAPTURE(threads);
      const std::string message = construction_error(pool_options{.threads = threads});
      CHECK(contains(message, "threads"));
      CHECK(contains(message, std::to_string(threads)));
      CHECK_THROWS_AS(thread_pool{threads}, std::invalid_argument);
    }
    // The documented limit itself is accepted in principle; 64 threads are certainly fine.
    CHECK(construction_error(pool_options{.threads = 64}) == "<no throw>");
  }

  TEST_CASE("queue_capacity 0 or above k_max_queue_capacity is rejected with std::invalid_argument naming the field") {
    for (const std::size_t capacity :
         {std::size_t{0}, thread_pool::k_max_queue_capacity + 1, std::numeric_limits<std::size_t>::max()}) {
      CAPTURE(capacity);
      const std::string message = construction_error(pool_options{.threads = 1, .queue_capacity = capacity});
      CHECK(contains(message, "queue_capacity"));
      CHECK(contains(message, std::to_string(capacity)));
    }
    CHECK(construction_error(pool_options{.threads = 1, .queue_capacity = 1}) == "<no throw>");
  }

  TEST_CASE("wait_idle_for accepts zero, negative, huge and floating-point timeouts" * doctest::timeout(30)) {
    thread_pool pool{pool_options{.threads = 2}};
    // Idle pool: every form returns true at once.
    CHECK(pool.wait_idle_for(std::chrono::nanoseconds(0)));
    CHECK(pool.wait_idle_for(std::chrono::seconds(-1)));
    CHECK(pool.wait_idle_for(std::chrono::nanoseconds::min()));
    CHECK(pool.wait_idle_for(std::chrono::nanoseconds::max()));
    CHECK(pool.wait_idle_for(std::chrono::hours::max()));
    CHECK(pool.wait_idle_for(std::chrono::duration<double>(1e300)));
    CHECK(pool.wait_idle_for(std::chrono::duration<double>(std::nan(""))));
    CHECK(pool.wait_idle_for(std::chrono::duration<double>(-std::numeric_limits<double>::infinity())));
    CHECK(pool.wait_idle_for(std::chrono::duration<double>(std::numeric_limits<double>::infinity())));
    // Busy pool: non-positive timeouts make one non-blocking check and return false.
    worker_hold hold(pool, 1);
    REQUIRE(hold.wait_started());
    CHECK_FALSE(pool.wait_idle_for(std::chrono::nanoseconds(0)));
    CHECK_FALSE(pool.wait_idle_for(std::chrono::seconds(-1)));
    CHECK_FALSE(pool.wait_idle_for(std::chrono::nanoseconds::min()));
    CHECK_FALSE(pool.wait_idle_for(std::chrono::hours::min()));
    CHECK_FALSE(pool.wait_idle_for(std::chrono::duration<double>(std::nan(""))));
    CHECK_FALSE(pool.wait_idle_for(std::chrono::duration<double>(-1e300)));
    CHECK_FALSE(pool.wait_idle_for(std::chrono::microseconds(100)));
    // Huge timeouts wait (without overflowing into the past) until the pool is idle.
    std::thread releaser([&hold] { hold.release(); });
    CHECK(pool.wait_idle_for(std::chrono::hours::max()));
    releaser.join();
    worker_hold hold2(pool, 1);
    REQUIRE(hold2.wait_started());
    std::thread releaser2([&hold2] { hold2.release(); });
    CHECK(pool.wait_idle_for(std::chrono::duration<double>(std::numeric_limits<double>::infinity())));
    releaser2.join();
  }

  TEST_CASE("wait_idle and wait_idle_for on a worker throw std::logic_error and change nothing" *
            doctest::timeout(30)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      std::future<int> outcome = pool.submit([&pool] {
        int logic_errors = 0;
        try {
          pool.wait_idle();
        } catch (const std::logic_error&) {
          ++logic_errors;
        }
        try {
          (void)pool.wait_idle_for(std::chrono::milliseconds(1));
        } catch (const std::logic_error&) {
          ++logic_errors;
        }
        // From a task nested in a task_group, too.
        task_group group(pool);
        group.run([&pool, &logic_errors] {
          try {
            pool.wait_idle();
          } catch (const std::logic_error&) {
            ++logic_errors;
          }
        });
        group.wait();
        return logic_errors;
      });
      CHECK(outcome.get() == 3);
      std::atomic<int> ran{0};
      for (int i = 0; i < 20; ++i) {
        pool.post([&ran] { ran.fetch_add(1); });
      }
      pool.wait_idle();
      CHECK(ran.load() == 20);
      const flowpool::pool_stats stats = pool.stats();
      CHECK(stats.failed == 0);
      CHECK(stats.completed == stats.submitted);
    }
  }

  TEST_CASE("shutdown on a worker stops outside acceptance and returns; running tasks may still spawn" *
            doctest::timeout(30)) {
    std::atomic<int> ran{0};
    {
      thread_pool pool{pool_options{.threads = 2}};
      std::future<bool> spawned = pool.submit([&pool, &ran] {
        pool.shutdown();  // documented: on a worker it only stops acceptance and returns
        try {
          pool.post([&ran] { ran.fetch_add(1); });  // graceful: a running task may still spawn
        } catch (const shut_down_error&) {
          return false;
        }
        return true;
      });
      CHECK(spawned.get());
      CHECK_THROWS_AS(pool.post([&ran] { ran.fetch_add(100); }), shut_down_error);
      CHECK_FALSE(pool.try_post([&ran] { ran.fetch_add(100); }));
    }  // the destructor joins
    CHECK(ran.load() == 1);
  }

  TEST_CASE("shutdown_now on a worker drops what has not started and refuses spawning even from workers" *
            doctest::timeout(30)) {
    std::atomic<int> ran{0};
    std::size_t dropped = 0;
    bool refused = false;
    {
      thread_pool pool{pool_options{.threads = 1}};
      std::future<void> first = pool.submit([&] {
        for (int i = 0; i < 5; ++i) {
          pool.post([&ran] { ran.fetch_add(1); });  // onto this worker's deque: not started
        }
        dropped = pool.shutdown_now();
        try {
          pool.post([&ran] { ran.fetch_add(100); });
        } catch (const shut_down_error&) {
          refused = true;
        }
      });
      first.get();
      CHECK_THROWS_AS(pool.post([] {}), shut_down_error);
    }
    CHECK(dropped == 5);
    CHECK(refused);
    CHECK(ran.load() == 0);
  }

  TEST_CASE("use after shutdown is refused with shut_down_error, counts nothing, and leaves the callable intact" *
            doctest::timeout(30)) {
    thread_pool pool{pool_options{.threads = 2}};
    std::atomic<int> ran{0};
    pool.post([&ran] { ran.fetch_add(1); });
    pool.shutdown();
    const flowpool::pool_stats before = pool.stats();
    auto owned = std::make_unique<int>(7);
    auto callable = [&ran, p = std::move(owned)] { ran.fetch_add(*p); };
    CHECK_FALSE(pool.try_post(std::move(callable)));
    CHECK_THROWS_AS(pool.post([&ran] { ran.fetch_add(1); }), shut_down_error);
    CHECK_THROWS_AS((void)pool.submit([&ran] { ran.fetch_add(1); }), shut_down_error);
    try {
      pool.post([] {});
    } catch (const shut_down_error& e) {
      CHECK(contains(e.what(), "shut"));
    }
    const flowpool::pool_stats after = pool.stats();
    CHECK(after.submitted == before.submitted);
    CHECK(ran.load() == 1);
    // The refused callable still owns its state and can run elsewhere.
    callable();  // NOLINT(bugprone-use-after-move): try_post refused it, so it was not moved from
    CHECK(ran.load() == 8);
    // task_group and parallel_for on a shut-down pool report the refusal the same way.
    task_group group(pool);
    CHECK_THROWS_AS(group.run([] {}), shut_down_error);
    CHECK_NOTHROW(group.wait());
    CHECK_THROWS_AS(flowpool::parallel_for(pool, 0, 1000, [](int) {}), shut_down_error);
  }

  TEST_CASE("a thread that fails to start makes the constructor join the started ones and rethrow" *
            doctest::timeout(60)) {
    for (const std::size_t threads : {std::size_t{1}, std::size_t{2}, std::size_t{4}, std::size_t{8}}) {
      for (std::size_t failing = 1; failing <= threads; ++failing) {
        CAPTURE(threads);
        CAPTURE(failing);
        flowpool::detail::fail_thread_start_after(failing);
        bool threw = false;
        try {
          thread_pool pool{pool_options{.threads = threads}};
        } catch (const std::system_error& e) {
          threw = true;
          CHECK(e.code() == std::errc::resource_unavailable_try_again);
        }
        flowpool::detail::fail_thread_start_after(0);
        CHECK(threw);
      }
    }
    // The injection hook is off again: pools start normally.
    thread_pool pool{pool_options{.threads = 3}};
    CHECK(pool.submit([] { return 1; }).get() == 1);
  }

  TEST_CASE("a callable whose move or copy throws: the caller gets the exception and nothing is queued" *
            doctest::timeout(30)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      std::atomic<int> ran{0};
      auto armed = std::make_shared<std::atomic<bool>>(true);
      throwing_move task(armed, &ran);
      // Every refused call below leaves `task` intact (its move threw), so reusing it is deliberate.
      // NOLINTBEGIN(bugprone-use-after-move)
      CHECK_THROWS_WITH(pool.post(std::move(task)), "move failed");
      CHECK_THROWS_WITH(pool.post(task), "copy failed");
      CHECK_THROWS_WITH((void)pool.try_post(std::move(task)), "move failed");
      CHECK_THROWS_WITH((void)pool.submit(std::move(task)), "move failed");
      // From a worker, too.
      std::future<int> nested = pool.submit([&pool, &task] {
        int thrown = 0;
        try {
          pool.post(task);
        } catch (const std::runtime_error&) {
          ++thrown;
        }
        return thrown;
      });
      CHECK(nested.get() == 1);
      // Nothing was counted as pending: wait_idle returns, and the pool still works.
      CHECK(pool.wait_idle_for(std::chrono::seconds(10)));
      CHECK(ran.load() == 0);
      armed->store(false);
      pool.post(std::move(task));
      (void)pool.submit(throwing_move(armed, &ran)).get();
      pool.wait_idle();
      CHECK(ran.load() == 2);
      // NOLINTEND(bugprone-use-after-move)
      const flowpool::pool_stats stats = pool.stats();
      CHECK(stats.submitted == stats.completed);
    }
  }

  TEST_CASE("a posted task that throws with no on_error handler is counted and the pool keeps working" *
            doctest::timeout(30)) {
    thread_pool pool{pool_options{.threads = 2}};
    for (int i = 0; i < 10; ++i) {
      pool.post([] { throw std::runtime_error("nobody listens"); });
    }
    pool.wait_idle();
    CHECK(pool.stats().failed == 10);
    CHECK(pool.submit([] { return 4; }).get() == 4);
  }

  TEST_CASE("an on_error handler that throws kills neither the worker nor the process" * doctest::timeout(30)) {
    std::atomic<int> calls{0};
    thread_pool pool{pool_options{.threads = 1, .on_error = [&calls](const std::exception_ptr&) {
                                    calls.fetch_add(1);
                                    throw std::logic_error("handler failed too");
                                  }}};
    for (int i = 0; i < 5; ++i) {
      pool.post([] { throw std::runtime_error("task failed"); });
    }
    pool.wait_idle();
    CHECK(calls.load() == 5);
    CHECK(pool.submit([] { return 9; }).get() == 9);
  }

  TEST_CASE("a task_group destroyed while a task of it is blocked waits instead of leaving a dangling task" *
            doctest::timeout(30)) {
    thread_pool pool{pool_options{.threads = 1}};
    std::atomic<int> stage{0};
    std::latch release(1);
    std::thread releaser;
    {
      task_group group(pool);
      group.run([&] {
        release.wait();
        stage.store(1);
      });
      releaser = std::thread([&release] { release.count_down(); });
    }
    CHECK(stage.load() == 1);
    releaser.join();
  }
}

TEST_SUITE("thread_pool") {
  TEST_CASE("destroying a pool from one of its own workers terminates with a message" * doctest::timeout(60)) {
    // A death test: the child process builds a pool and posts a task that deletes it. The child
    // must die of SIGABRT (std::terminate) with a message naming the cause, not hang in the
    // destructor (it used to wait for itself in wait_quiescent()).
    int err_pipe[2];
    REQUIRE(pipe(err_pipe) == 0);
    const pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      // Child: stderr into the pipe; a hang is cut short by SIGALRM (a different signal).
      dup2(err_pipe[1], STDERR_FILENO);
      close(err_pipe[0]);
      signal(SIGABRT, SIG_DFL);  // doctest's crash handler would report instead of dying
      alarm(30);
      auto* pool = new thread_pool(2);
      pool->post([pool] { delete pool; });
      for (;;) {
        pause();  // the worker's std::terminate() ends the process
      }
    }
    close(err_pipe[1]);
    std::string text;
    char buffer[512];
    for (;;) {  // until the child's end closes the pipe (bounded by the child's alarm)
      const ssize_t n = read(err_pipe[0], buffer, sizeof buffer);
      if (n <= 0) {
        break;
      }
      text.append(buffer, static_cast<std::size_t>(n));
    }
    close(err_pipe[0]);
    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child);
    INFO("child's stderr: " << text);
    INFO("exit status: " << (WIFEXITED(status) ? WEXITSTATUS(status) : -1));
    REQUIRE(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGABRT);
    CHECK(text.find("destroyed from one of its own worker threads") != std::string::npos);
  }
}
