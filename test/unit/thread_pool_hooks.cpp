// Contract tests for pool_options::on_thread_start and on_thread_stop (issue 14), with 1, 2 and 8
// worker threads.
#include "pool_test_util.hpp"

#include <doctest/doctest.h>

#include <flowpool/detail/thread_start.hpp>
#include <flowpool/thread_pool.hpp>

#include <atomic>
#include <cstddef>
#include <latch>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

using flowpool::pool_options;
using flowpool::shut_down_error;
using flowpool::thread_pool;
using flowpool_test::k_thread_counts;

namespace {

// What happened on each worker, in order, as seen from that worker's own thread.
enum class event { start, task, stop };

struct worker_log {
  std::vector<event> events;
  std::set<std::thread::id> threads;  // every thread that logged for this index
  std::optional<std::size_t> index_in_start;
  std::optional<std::size_t> index_in_stop;
};

class hook_log {
 public:
  explicit hook_log(std::size_t threads) : m_workers(threads) {}

  void record(std::size_t index, event e) {
    std::lock_guard lock(m_mutex);
    REQUIRE(index < m_workers.size());
    worker_log& w = m_workers[index];
    w.events.push_back(e);
    w.threads.insert(std::this_thread::get_id());
    if (e == event::start) {
      w.index_in_start = thread_pool::this_worker_index();
    } else if (e == event::stop) {
      w.index_in_stop = thread_pool::this_worker_index();
    }
  }

  // Call once the pool is joined (the join orders every record before this read).
  [[nodiscard]] std::vector<worker_log> snapshot() {
    std::lock_guard lock(m_mutex);
    return m_workers;
  }

  // Hooks that record into this log.
  void install(pool_options& options) {
    options.on_thread_start = [this](std::size_t index) { record(index, event::start); };
    options.on_thread_stop = [this](std::size_t index) { record(index, event::stop); };
  }

 private:
  std::mutex m_mutex;
  std::vector<worker_log> m_workers;
};

// Runs one task on every worker at once (each waits for all the others, so they are on distinct
// workers), each logging a task event under its worker index.
void run_one_task_per_worker(thread_pool& pool, hook_log& log, std::size_t threads) {
  std::latch all_running(static_cast<std::ptrdiff_t>(threads));
  std::latch done(static_cast<std::ptrdiff_t>(threads));
  for (std::size_t i = 0; i < threads; ++i) {
    pool.post([&] {
      log.record(*thread_pool::this_worker_index(), event::task);
      all_running.arrive_and_wait();
      done.count_down();
    });
  }
  done.wait();
}

// Each worker's events are: one start, then tasks, then one stop, all on one thread.
void check_worker_logs(const std::vector<worker_log>& logs, std::size_t tasks_per_worker) {
  std::set<std::thread::id> all_threads;
  for (std::size_t i = 0; i < logs.size(); ++i) {
    CAPTURE(i);
    const worker_log& w = logs[i];
    REQUIRE(w.events.size() == tasks_per_worker + 2);
    CHECK(w.events.front() == event::start);
    CHECK(w.events.back() == event::stop);
    for (std::size_t k = 1; k + 1 < w.events.size(); ++k) {
      CHECK(w.events[k] == event::task);
    }
    CHECK(w.threads.size() == 1);                             // start, tasks and stop on the same thread
    CHECK(w.threads.count(std::this_thread::get_id()) == 0);  // ... which is not the caller's
    CHECK(w.index_in_start == std::optional<std::size_t>(i));
    CHECK(w.index_in_stop == std::optional<std::size_t>(i));
    all_threads.insert(w.threads.begin(), w.threads.end());
  }
  CHECK(all_threads.size() == logs.size());  // one distinct thread per worker
}

// Counts thread exits: a thread_local of this type is touched by each start hook, and its
// destructor runs when that thread exits (before join() returns).
std::atomic<int> g_exited{0};
struct exit_counter {
  bool armed = false;
  exit_counter() = default;
  exit_counter(const exit_counter&) = delete;
  exit_counter& operator=(const exit_counter&) = delete;
  exit_counter(exit_counter&&) = delete;
  exit_counter& operator=(exit_counter&&) = delete;
  ~exit_counter() {
    if (armed) {
      g_exited.fetch_add(1);
    }
  }
};
thread_local exit_counter t_exit_counter;

}  // namespace

TEST_SUITE("thread_pool hooks") {
  TEST_CASE("on_thread_start and on_thread_stop run once per worker on its own thread with its index" *
            doctest::timeout(60)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      hook_log log(threads);
      {
        pool_options options{.threads = threads};
        log.install(options);
        thread_pool pool{std::move(options)};
        run_one_task_per_worker(pool, log, threads);
      }  // the destructor joins: every stop hook has returned
      check_worker_logs(log.snapshot(), 1);
    }
  }

  TEST_CASE("every on_thread_start has returned when the constructor returns" * doctest::timeout(60)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      std::atomic<std::size_t> started{0};
      pool_options options{.threads = threads};
      options.on_thread_start = [&started](std::size_t) { started.fetch_add(1); };
      thread_pool pool{std::move(options)};
      CHECK(started.load() == threads);
    }
  }

  TEST_CASE("on_thread_stop runs after the last task on shutdown, on shutdown_now and on destruction" *
            doctest::timeout(60)) {
    for (const std::size_t threads : k_thread_counts) {
      for (const std::string ending : {"shutdown", "shutdown_now", "destructor"}) {
        CAPTURE(threads);
        CAPTURE(ending);
        hook_log log(threads);
        {
          pool_options options{.threads = threads};
          log.install(options);
          thread_pool pool{std::move(options)};
          run_one_task_per_worker(pool, log, threads);
          run_one_task_per_worker(pool, log, threads);
          if (ending == "shutdown") {
            pool.shutdown();
            check_worker_logs(log.snapshot(), 2);  // shutdown() from outside joined the workers
          } else if (ending == "shutdown_now") {
            (void)pool.shutdown_now();
            check_worker_logs(log.snapshot(), 2);
          }
        }
        check_worker_logs(log.snapshot(), 2);  // exactly once, even after an explicit shutdown
      }
    }
  }

  TEST_CASE("a throwing on_thread_start makes the constructor rethrow it after joining every worker" *
            doctest::timeout(60)) {
    for (const std::size_t threads : k_thread_counts) {
      for (const std::size_t failing : {std::size_t{0}, threads - 1}) {
        CAPTURE(threads);
        CAPTURE(failing);
        g_exited.store(0);
        std::atomic<std::size_t> starts{0};
        std::atomic<std::size_t> stops{0};
        std::atomic<std::size_t> stopped_failing{0};
        pool_options options{.threads = threads};
        options.on_thread_start = [&, failing](std::size_t index) {
          t_exit_counter.armed = true;
          starts.fetch_add(1);
          if (index == failing) {
            throw std::runtime_error("start hook " + std::to_string(index) + " failed");
          }
        };
        options.on_thread_stop = [&, failing](std::size_t index) {
          stops.fetch_add(1);
          if (index == failing) {
            stopped_failing.fetch_add(1);
          }
        };
        bool threw = false;
        try {
          const thread_pool pool{std::move(options)};
        } catch (const std::runtime_error& e) {
          threw = true;
          CHECK(std::string(e.what()) == "start hook " + std::to_string(failing) + " failed");
        }
        CHECK(threw);
        // The constructor joined before rethrowing: these counts are final.
        CHECK(starts.load() == threads);
        CHECK(stops.load() == threads - 1);                   // the workers whose start hook returned
        CHECK(stopped_failing.load() == 0);                   // the failed worker's start never completed
        CHECK(g_exited.load() == static_cast<int>(threads));  // every worker thread has exited
      }
    }
  }

  TEST_CASE("a thread that fails to start stops the workers whose on_thread_start ran" * doctest::timeout(60)) {
    for (const std::size_t threads : k_thread_counts) {
      for (std::size_t failing = 1; failing <= threads; ++failing) {
        CAPTURE(threads);
        CAPTURE(failing);
        g_exited.store(0);
        std::atomic<std::size_t> starts{0};
        std::atomic<std::size_t> stops{0};
        pool_options options{.threads = threads};
        options.on_thread_start = [&](std::size_t) {
          t_exit_counter.armed = true;
          starts.fetch_add(1);
        };
        options.on_thread_stop = [&](std::size_t) { stops.fetch_add(1); };
        flowpool::detail::fail_thread_start_after(failing);
        CHECK_THROWS_AS(thread_pool{std::move(options)}, std::system_error);
        flowpool::detail::fail_thread_start_after(0);
        const std::size_t started = failing - 1;  // threads started before the failing one
        CHECK(starts.load() == started);
        CHECK(stops.load() == started);
        CHECK(g_exited.load() == static_cast<int>(started));
      }
    }
  }

  TEST_CASE("submitting from on_thread_stop throws shut_down_error and try_post returns false" * doctest::timeout(60)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      std::atomic<thread_pool*> target{nullptr};
      std::atomic<std::size_t> refused{0};
      std::atomic<std::size_t> ran{0};
      pool_options options{.threads = threads};
      options.on_thread_stop = [&](std::size_t) {
        thread_pool* pool = target.load(std::memory_order_acquire);  // pairs with: the store below
        REQUIRE(pool != nullptr);
        try {
          pool->post([&ran] { ran.fetch_add(1); });
        } catch (const shut_down_error&) {
          refused.fetch_add(1);
        }
        if (!pool->try_post([&ran] { ran.fetch_add(1); })) {
          refused.fetch_add(1);
        }
      };
      thread_pool pool{std::move(options)};
      target.store(&pool, std::memory_order_release);
      pool.shutdown();
      CHECK(refused.load() == 2 * threads);
      CHECK(ran.load() == 0);
    }
  }

  TEST_CASE("an exception thrown by on_thread_stop is dropped and the pool still joins" * doctest::timeout(60)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      std::atomic<std::size_t> stops{0};
      {
        pool_options options{.threads = threads};
        options.on_thread_stop = [&stops](std::size_t) {
          stops.fetch_add(1);
          throw std::runtime_error("stop hook failed");
        };
        thread_pool pool{std::move(options)};
        CHECK(pool.submit([] { return 7; }).get() == 7);
      }
      CHECK(stops.load() == threads);
    }
  }
}
