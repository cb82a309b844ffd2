// Issue 9: one stress case for every concurrency promise of thread_pool.hpp, task_group.hpp,
// parallel_for.hpp, pool_stats.hpp and version.hpp that no other test exercised with several
// threads (docs/guarantees.md maps every promise to its test). Each case runs rounds bounded in
// count and by flowpool_test::stress_duration(), checks conservation (every accepted task ran
// exactly once, or was dropped and counted by shutdown_now()), and has a no-progress watchdog.
#include "../unit/pool_test_util.hpp"
#include "promises_support.hpp"
#include "test_support.hpp"

#include <doctest/doctest.h>

#include <flowpool/parallel_for.hpp>
#include <flowpool/pool_stats.hpp>
#include <flowpool/task_group.hpp>
#include <flowpool/thread_pool.hpp>
#include <flowpool/version.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <future>
#include <latch>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using flowpool::pool_options;
using flowpool::shut_down_error;
using flowpool::task_group;
using flowpool::thread_pool;
using flowpool_test::mix;
using flowpool_test::progress_watchdog;
using flowpool_test::round_budget;

namespace {

constexpr std::array<std::size_t, 3> k_threads{1, 2, 4};
constexpr std::array<std::size_t, 3> k_capacities{1, 8, 64};

// Per-task bookkeeping of one round: `accepted[id]` is set by whoever submitted task `id` once the
// submission returned; `runs[id]` is raised by the task. Both are read only after the threads
// involved were joined (or after wait_idle()), which orders them; hence relaxed everywhere.
struct tally {
  explicit tally(std::size_t n) : accepted(n), runs(n) {}
  std::vector<std::atomic<std::uint8_t>> accepted;
  std::vector<std::atomic<std::uint8_t>> runs;
  std::atomic<std::size_t> next{0};

  std::optional<std::size_t> new_id() {
    const std::size_t id = next.fetch_add(1, std::memory_order_relaxed);  // relaxed: a ticket
    return id < runs.size() ? std::optional<std::size_t>(id) : std::nullopt;
  }
  void accept(std::size_t id) { accepted[id].store(1, std::memory_order_relaxed); }  // relaxed: see above
  void ran(std::size_t id) { runs[id].fetch_add(1, std::memory_order_relaxed); }     // relaxed: see above
  [[nodiscard]] std::size_t used() const { return std::min(next.load(), runs.size()); }
  // Every accepted task ran exactly once and no refused task ran. Returns the number of misfits.
  [[nodiscard]] std::size_t misfits() const {
    std::size_t bad = 0;
    for (std::size_t id = 0; id < used(); ++id) {
      bad += accepted[id].load() != runs[id].load() ? 1 : 0;
    }
    return bad;
  }
  [[nodiscard]] std::size_t ran_total() const {
    std::size_t n = 0;
    for (std::size_t id = 0; id < used(); ++id) {
      n += runs[id].load();
    }
    return n;
  }
  [[nodiscard]] std::size_t accepted_total() const {
    std::size_t n = 0;
    for (std::size_t id = 0; id < used(); ++id) {
      n += accepted[id].load();
    }
    return n;
  }
};

// A task that records its run and, while `depth` > 0, spawns a child from the worker with one of
// submit / post / try_post (chosen by its id). From a worker none of them may block or refuse
// before shutdown_now(); a refusal is recorded in `worker_refusals`.
struct spawning_task {
  thread_pool* pool;
  tally* t;
  std::atomic<std::size_t>* worker_refusals;
  progress_watchdog* dog;
  std::size_t id;
  int depth;

  void operator()() const {
    t->ran(id);
    dog->tick();
    if (depth <= 0) {
      return;
    }
    const std::optional<std::size_t> child = t->new_id();
    if (!child) {
      return;
    }
    const spawning_task next{pool, t, worker_refusals, dog, *child, depth - 1};
    bool ok = true;
    try {
      switch (mix(*child) % 3) {
        case 0:
          (void)pool->submit(next);  // the future is dropped: its shared state outlives it
          break;
        case 1:
          pool->post(next);
          break;
        default:
          ok = pool->try_post(next);
          break;
      }
    } catch (const shut_down_error&) {
      ok = false;
    }
    if (ok) {
      t->accept(*child);
    } else {
      worker_refusals->fetch_add(1, std::memory_order_relaxed);  // relaxed: read after the joins
    }
  }
};

}  // namespace

TEST_SUITE("thread_pool promises") {
  // thread_pool.hpp: submit(), post(), try_post(): "Any thread"; from a worker "never blocks".
  TEST_CASE(
      "submit, post and try_post from several outside threads and from workers at once: every accepted task runs once" *
      doctest::timeout(240)) {
    progress_watchdog dog("thread_pool promises / submit, post and try_post from several threads");
    round_budget budget;
    while (budget.next()) {
      const auto r = static_cast<std::uint64_t>(budget.rounds());
      const std::size_t threads = k_threads[mix(r) % 3];
      const std::size_t capacity = k_capacities[mix(r + 100) % 3];
      CAPTURE(threads);
      CAPTURE(capacity);
      constexpr int k_submitters = 3;
      constexpr int k_ops = 300;
      tally t(k_submitters * k_ops * 4);
      std::atomic<std::size_t> worker_refusals{0};
      std::atomic<std::size_t> wrong_values{0};
      thread_pool pool{pool_options{.threads = threads, .queue_capacity = capacity}};
      std::latch start(k_submitters);
      std::vector<std::thread> submitters;
      for (int s = 0; s < k_submitters; ++s) {
        submitters.emplace_back([&, s] {
          std::vector<std::pair<std::size_t, std::future<void>>> futures;
          start.arrive_and_wait();
          for (int op = 0; op < k_ops; ++op) {
            const std::optional<std::size_t> id = t.new_id();
            if (!id) {
              break;
            }
            const spawning_task task{&pool, &t, &worker_refusals, &dog, *id, 2};
            switch ((static_cast<std::size_t>(s) + static_cast<std::size_t>(op)) % 3) {
              case 0:
                futures.emplace_back(*id, pool.submit(task));
                t.accept(*id);
                break;
              case 1:
                pool.post(task);
                t.accept(*id);
                break;
              default:
                if (pool.try_post(task)) {  // may be refused: the queue may be full
                  t.accept(*id);
                }
                break;
            }
            dog.tick();
          }
          for (auto& [id, f] : futures) {
            f.get();  // a void task that does not throw: get() returns once it ran
            if (t.runs[id].load() != 1) {
              wrong_values.fetch_add(1);
            }
          }
        });
      }
      for (auto& th : submitters) {
        th.join();
      }
      pool.wait_idle();
      CHECK(t.misfits() == 0);
      CHECK(worker_refusals.load() == 0);
      CHECK(wrong_values.load() == 0);
      const flowpool::pool_stats stats = pool.stats();
      CHECK(stats.submitted == t.accepted_total());
      CHECK(stats.completed == t.ran_total());
    }
  }

  // thread_pool.hpp: wait_idle() "Any thread except the pool's own workers ... Reusable", covering
  // "every task accepted before the call, and every task those spawned (recursively)";
  // wait_idle_for() likewise.
  TEST_CASE(
      "wait_idle and wait_idle_for from several threads while others submit cover every task accepted before the call" *
      doctest::timeout(240)) {
    progress_watchdog dog("thread_pool promises / wait_idle from several threads while others submit");
    constexpr int k_submitters = 2;
    constexpr int k_waiters = 3;
    struct chain {
      thread_pool* pool;
      std::atomic<std::uint64_t>* finished;
      std::uint8_t* cell;  // plain: the waiters read it only for covered tasks (TSan checks the order)
      progress_watchdog* dog;
      int depth;
      void operator()() const {
        dog->tick();
        if (depth > 0) {
          pool->post(chain{pool, finished, cell, dog, depth - 1});  // from a worker: never blocks
        } else {
          *cell = 1;
          finished->fetch_add(1, std::memory_order_relaxed);  // relaxed: wait_idle() orders it
        }
      }
    };
    round_budget budget;
    while (budget.next()) {
      const auto r = static_cast<std::uint64_t>(budget.rounds());
      const std::size_t threads = k_threads[mix(r) % 3];
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads, .queue_capacity = 16}};
      std::array<std::atomic<std::uint64_t>, k_submitters> accepted{};
      std::array<std::atomic<std::uint64_t>, k_submitters> finished{};
      std::array<std::vector<std::uint8_t>, k_submitters> cells;
      for (auto& c : cells) {
        c.assign(512, 0);
      }
      std::atomic<int> submitters_done{0};
      std::atomic<std::size_t> uncovered{0};
      std::atomic<std::size_t> timed_out{0};
      std::latch start(k_submitters + k_waiters);
      std::vector<std::thread> threads_v;
      for (int s = 0; s < k_submitters; ++s) {
        threads_v.emplace_back([&, s] {
          start.arrive_and_wait();
          const int burst = 100 + static_cast<int>(mix(r * 7 + static_cast<std::uint64_t>(s)) % 400);
          for (int i = 0; i < burst; ++i) {
            pool.post(chain{&pool, &finished[s], &cells[s][static_cast<std::size_t>(i)], &dog, 2});
            // pairs with: the waiters' acquire load: this post returned before their wait_idle()
            accepted[s].store(static_cast<std::uint64_t>(i + 1), std::memory_order_release);
            dog.tick();
          }
          submitters_done.fetch_add(1);
        });
      }
      for (int w = 0; w < k_waiters; ++w) {
        threads_v.emplace_back([&, w] {
          start.arrive_and_wait();
          int calls = 0;
          bool last = false;
          while (!last && calls < 10000) {
            last = submitters_done.load() == k_submitters;  // one more call after the bursts ended
            std::array<std::uint64_t, k_submitters> before{};
            for (int s = 0; s < k_submitters; ++s) {
              before[s] = accepted[s].load(std::memory_order_acquire);  // pairs with: the submitters' store
            }
            if ((calls + w) % 2 == 0) {
              pool.wait_idle();
            } else if (!pool.wait_idle_for(std::chrono::seconds(60))) {
              timed_out.fetch_add(1);
            }
            for (int s = 0; s < k_submitters; ++s) {
              if (finished[s].load(std::memory_order_relaxed) < before[s]) {
                uncovered.fetch_add(1);
              }
              for (std::uint64_t i = 0; i < before[s]; ++i) {
                uncovered.fetch_add(cells[s][i] != 1 ? 1 : 0);  // the end of task i happens-before
              }
            }
            ++calls;
            dog.tick();
          }
        });
      }
      for (auto& th : threads_v) {
        th.join();
      }
      CHECK(uncovered.load() == 0);
      CHECK(timed_out.load() == 0);
      pool.wait_idle();  // the waiters may have used up their call budget before the bursts ended
      for (int s = 0; s < k_submitters; ++s) {
        CHECK(finished[s].load() == accepted[s].load());
      }
    }
  }

  // thread_pool.hpp: shutdown() "Any thread ... Idempotent"; "Tasks running on workers may still
  // spawn"; from outside "the end of every task happens-before the return".
  TEST_CASE(
      "shutdown from several outside threads and from workers at once: every call returns, every accepted task runs "
      "once" *
      doctest::timeout(240)) {
    progress_watchdog dog("thread_pool promises / shutdown from several threads and workers at once");
    round_budget budget;
    while (budget.next()) {
      const auto r = static_cast<std::uint64_t>(budget.rounds());
      const std::size_t threads = k_threads[mix(r) % 3];
      const std::size_t capacity = k_capacities[mix(r + 1) % 3];
      const int trigger = static_cast<int>(mix(r + 2) % 200);
      CAPTURE(threads);
      CAPTURE(capacity);
      CAPTURE(trigger);
      constexpr int k_submitters = 2;
      constexpr int k_closers = 3;
      constexpr int k_ops = 400;
      tally t(k_submitters * k_ops * 4);
      std::atomic<std::size_t> worker_refusals{0};
      std::atomic<std::size_t> accepted_after_close{0};
      std::atomic<std::size_t> incomplete_at_close{0};
      {
        thread_pool pool{pool_options{.threads = threads, .queue_capacity = capacity}};
        flowpool_test::gate go;
        std::vector<std::thread> all;
        for (int s = 0; s < k_submitters; ++s) {
          all.emplace_back([&, s] {
            for (int op = 0; op < k_ops; ++op) {
              if (s == 0 && op == trigger) {
                go.open();
              }
              const std::optional<std::size_t> id = t.new_id();
              if (!id) {
                break;
              }
              // Every 50th task also calls shutdown() from its worker: stops acceptance and returns.
              const bool closes = mix(*id) % 50 == 0;
              try {
                pool.post([&pool, &t, &worker_refusals, &dog, id = *id, closes] {
                  spawning_task{&pool, &t, &worker_refusals, &dog, id, 2}();
                  if (closes) {
                    pool.shutdown();
                  }
                });
                t.accept(*id);
              } catch (const shut_down_error&) {
                break;  // refused, nothing queued; stays refused (checked below)
              }
              dog.tick();
            }
            if (s == 0) {
              go.open();
            }
          });
        }
        for (int c = 0; c < k_closers; ++c) {
          all.emplace_back([&] {
            go.wait();
            pool.shutdown();
            // Every task accepted before the close has finished; nothing new is accepted.
            if (pool.stats().submitted != pool.stats().completed) {
              incomplete_at_close.fetch_add(1);
            }
            try {
              pool.post([] {});
              accepted_after_close.fetch_add(1);
            } catch (const shut_down_error&) {
            }
            if (pool.try_post([] {})) {
              accepted_after_close.fetch_add(1);
            }
            dog.tick();
          });
        }
        for (auto& th : all) {
          th.join();
        }
        pool.shutdown();  // idempotent: once more from here, then the destructor
      }
      CHECK(t.misfits() == 0);
      CHECK(worker_refusals.load() == 0);  // a graceful shutdown still lets running tasks spawn
      CHECK(accepted_after_close.load() == 0);
      CHECK(incomplete_at_close.load() == 0);
    }
  }

  // thread_pool.hpp: shutdown_now() "Any thread (on a worker: does not join ...)"; "@return how
  // many tasks were discarded by this call"; a discarded submit()'s future is broken, a discarded
  // group task makes wait() throw shut_down_error.
  TEST_CASE(
      "shutdown_now from several outside threads and from workers at once: every accepted task ran once or was "
      "dropped" *
      doctest::timeout(240)) {
    progress_watchdog dog("thread_pool promises / shutdown_now from several threads and workers at once");
    round_budget budget;
    while (budget.next()) {
      const auto r = static_cast<std::uint64_t>(budget.rounds());
      const std::size_t threads = k_threads[mix(r) % 3];
      const int trigger = static_cast<int>(mix(r + 3) % 300);
      CAPTURE(threads);
      CAPTURE(trigger);
      constexpr int k_submitters = 2;
      constexpr int k_closers = 3;
      constexpr int k_ops = 400;
      tally t(k_submitters * k_ops * 4);
      std::atomic<std::size_t> worker_refusals{0};  // expected here: shutdown_now() refuses workers too
      std::atomic<std::size_t> dropped_sum{0};      // sum of the counts the calls returned
      std::atomic<std::size_t> wrong_group_reports{0};
      std::array<std::vector<std::pair<std::size_t, std::future<void>>>, k_submitters> futures;
      thread_pool pool{pool_options{.threads = threads, .queue_capacity = 64}};
      flowpool_test::gate go;
      std::vector<std::thread> all;
      for (int s = 0; s < k_submitters; ++s) {
        all.emplace_back([&, s] {
          std::vector<std::size_t> group_ids;
          task_group group(pool);
          for (int op = 0; op < k_ops; ++op) {
            if (s == 0 && op == trigger) {
              go.open();
            }
            const std::optional<std::size_t> id = t.new_id();
            if (!id) {
              break;
            }
            const bool closes = mix(*id) % 97 == 0;  // this task also calls shutdown_now() on its worker
            auto task = [&pool, &t, &worker_refusals, &dropped_sum, &dog, id = *id, closes] {
              spawning_task{&pool, &t, &worker_refusals, &dog, id, 1}();
              if (closes) {
                dropped_sum.fetch_add(pool.shutdown_now());
              }
            };
            try {
              switch (op % 3) {
                case 0:
                  futures[s].emplace_back(*id, pool.submit(task));
                  break;
                case 1:
                  pool.post(task);
                  break;
                default:
                  group.run(task);
                  group_ids.push_back(*id);
                  break;
              }
              t.accept(*id);
            } catch (const shut_down_error&) {
              break;  // refused: nothing queued
            }
            dog.tick();
          }
          if (s == 0) {
            go.open();
          }
          bool threw = false;
          try {
            group.wait();
          } catch (const shut_down_error&) {
            threw = true;
          }
          std::size_t group_ran = 0;
          for (const std::size_t id : group_ids) {
            group_ran += t.runs[id].load();
          }
          if (threw != (group_ran != group_ids.size())) {
            wrong_group_reports.fetch_add(1);
          }
        });
      }
      for (int c = 0; c < k_closers; ++c) {
        all.emplace_back([&] {
          go.wait();
          dropped_sum.fetch_add(pool.shutdown_now());  // from outside: joins the workers
          dog.tick();
        });
      }
      for (auto& th : all) {
        th.join();
      }
      // Every outside shutdown_now() has returned, so the workers are joined: every task that
      // will ever run has run.
      // Each dropped task is counted by exactly one call, and the last outside call saw them all.
      CHECK(dropped_sum.load() == pool.stats().dropped);
      CHECK(t.accepted_total() == t.ran_total() + pool.stats().dropped);
      CHECK(wrong_group_reports.load() == 0);
      for (std::size_t id = 0; id < t.used(); ++id) {
        CHECK(t.runs[id].load() <= 1);
      }
      std::size_t wrong_futures = 0;
      for (auto& list : futures) {
        for (auto& [id, f] : list) {
          bool broken = false;
          try {
            f.get();
          } catch (const std::future_error& e) {
            broken = e.code() == std::future_errc::broken_promise;
          }
          wrong_futures += broken == (t.runs[id].load() == 1) ? 1 : 0;
        }
      }
      CHECK(wrong_futures == 0);
    }
  }

  // thread_pool.hpp, shutdown_now(): "@return how many tasks were discarded by this call";
  // concurrent calls split the count, each task counted by exactly one of them. (Before issue 9
  // each call returned the growth of the pool-wide count during the call, so overlapping calls
  // counted each other's drops.)
  TEST_CASE("the counts returned by concurrent shutdown_now calls add up to the tasks dropped" *
            doctest::timeout(240)) {
    progress_watchdog dog("thread_pool promises / counts returned by concurrent shutdown_now calls");
    round_budget budget(20, 2000);
    while (budget.next()) {
      const int round = budget.rounds();
      CAPTURE(round);
      // Enough queued tasks that the drain takes long enough for the calls to overlap.
      constexpr std::size_t k_queued = 2048;
      constexpr std::size_t k_callers = 3;
      thread_pool pool{pool_options{.threads = 2, .queue_capacity = k_queued}};
      flowpool_test::worker_hold hold(pool, 2);
      REQUIRE(hold.wait_started());
      for (std::size_t i = 0; i < k_queued; ++i) {
        pool.post([] {});  // fills the injection queue; no worker is free to take any
      }
      std::array<std::size_t, k_callers> returned{};
      std::latch start(k_callers + 1);
      std::vector<std::thread> callers;
      for (std::size_t c = 0; c < k_callers; ++c) {
        callers.emplace_back([&, c] {
          start.arrive_and_wait();
          returned[c] = pool.shutdown_now();  // from outside: waits for the held blockers
          dog.tick();
        });
      }
      start.arrive_and_wait();
      // Release the blockers once everything queued is dropped, so the calls can join the workers.
      REQUIRE(flowpool_test::eventually([&] { return pool.stats().dropped >= k_queued; }));
      hold.release();
      for (auto& th : callers) {
        th.join();
      }
      CHECK(pool.stats().dropped == k_queued);
      CHECK(returned[0] + returned[1] + returned[2] == k_queued);
    }
  }

  // pool_stats.hpp: queue_high_water is the most tasks ever waiting at once in the injection
  // queue, so it never goes back and never exceeds queue_capacity. (Before issue 9 it was
  // max(recorded mark, current size), and the size read the dequeue position first, so enqueues
  // between the two loads inflated it above the capacity and a later snapshot reported less.)
  TEST_CASE("queue_high_water never exceeds queue_capacity and never goes back while tasks run" *
            doctest::timeout(240)) {
    progress_watchdog dog("thread_pool promises / queue_high_water while tasks run");
    constexpr std::size_t k_capacity = 32;
    round_budget budget(4, 1000);
    while (budget.next()) {
      thread_pool pool{pool_options{.threads = 4, .queue_capacity = k_capacity}};
      std::atomic<bool> stop{false};
      std::atomic<int> went_back{0};
      std::atomic<int> above_capacity{0};
      std::thread reader([&] {
        std::size_t last = 0;
        while (!stop.load()) {
          const std::size_t now = pool.stats().queue_high_water;
          went_back.fetch_add(now < last ? 1 : 0);
          above_capacity.fetch_add(now > k_capacity ? 1 : 0);
          last = now;
        }
      });
      std::vector<std::thread> submitters;
      for (int s = 0; s < 3; ++s) {
        submitters.emplace_back([&] {
          for (int i = 0; i < 5000; ++i) {
            pool.post([] {});
            dog.tick();
          }
        });
      }
      for (auto& th : submitters) {
        th.join();
      }
      pool.wait_idle();
      stop.store(true);
      reader.join();
      CHECK(went_back.load() == 0);
      CHECK(above_capacity.load() == 0);
      CHECK(pool.stats().queue_high_water <= k_capacity);
    }
  }

  // thread_pool.hpp: submit()/post() from outside "blocks while the injection queue is full" and
  // shutdown()/shutdown_now() make a blocked submitter throw shut_down_error (the queue closes).
  // Here the shutdown comes from a worker, and every worker stays blocked until all submitters
  // have returned: only the wake-up by the close can release them.
  TEST_CASE("shutdown or shutdown_now on a worker wakes every outside submitter blocked on the full queue" *
            doctest::timeout(240)) {
    progress_watchdog dog("thread_pool promises / shutdown on a worker wakes every blocked submitter");
    round_budget budget;
    while (budget.next()) {
      const auto r = static_cast<std::uint64_t>(budget.rounds());
      const std::size_t threads = std::array<std::size_t, 2>{1, 2}[mix(r) % 2];
      const bool now = r % 2 == 0;
      CAPTURE(threads);
      CAPTURE(now);
      constexpr int k_submitters = 4;
      constexpr std::size_t k_capacity = 2;
      std::atomic<int> ran{0};
      std::atomic<std::size_t> dropped{0};
      std::atomic<int> accepted{0};
      std::atomic<int> refused{0};
      std::atomic<int> try_accepted{0};
      {
        thread_pool pool{pool_options{.threads = threads, .queue_capacity = k_capacity}};
        std::latch started(static_cast<std::ptrdiff_t>(threads));
        std::latch close(1);
        std::latch release(1);
        std::atomic<int> ticket{0};
        for (std::size_t i = 0; i < threads; ++i) {
          pool.post([&] {
            started.count_down();
            close.wait();
            if (ticket.fetch_add(1) == 0) {
              if (now) {
                dropped.store(pool.shutdown_now());
              } else {
                pool.shutdown();
              }
            }
            release.wait();
          });
        }
        started.wait();  // every worker is held: nothing leaves the injection queue
        for (std::size_t i = 0; i < k_capacity; ++i) {
          pool.post([&ran] { ran.fetch_add(1); });  // fills the queue
        }
        std::latch ready(k_submitters + 1);
        std::vector<std::thread> submitters;
        for (int s = 0; s < k_submitters; ++s) {
          submitters.emplace_back([&, s] {
            ready.arrive_and_wait();
            for (int i = 0; i < 5; ++i) {
              try {
                (s % 2 == 0) ? pool.post([&ran] { ran.fetch_add(1); })
                             : (void)pool.submit([&ran] { ran.fetch_add(1); });
                accepted.fetch_add(1);
              } catch (const shut_down_error&) {
                refused.fetch_add(1);
                break;
              }
            }
            dog.tick();
          });
        }
        ready.arrive_and_wait();
        close.count_down();  // a held worker shuts the pool down while the submitters block
        for (auto& th : submitters) {
          th.join();  // hangs (watchdog) unless the close woke every blocked submitter
        }
        if (pool.try_post([&ran] { ran.fetch_add(1); })) {
          try_accepted.fetch_add(1);
        }
        release.count_down();
      }
      CHECK(accepted.load() == 0);  // the queue stayed full until the close
      CHECK(refused.load() == k_submitters);
      CHECK(try_accepted.load() == 0);
      if (now) {
        CHECK(dropped.load() == k_capacity);
        CHECK(ran.load() == 0);
      } else {
        CHECK(ran.load() == static_cast<int>(k_capacity));
      }
    }
  }

  // thread_pool.hpp: shutdown() "on one of the pool's workers it only stops acceptance and
  // returns"; shutdown_now() "on a worker: does not join, and does not wait for tasks running
  // elsewhere". Task B holds a second worker until task A's call has returned: a call that waited
  // for B would never return (the watchdog names the case).
  TEST_CASE("shutdown and shutdown_now on a worker return while a task on another worker still runs" *
            doctest::timeout(240)) {
    progress_watchdog dog("thread_pool promises / shutdown on a worker does not wait for other workers");
    round_budget budget(6, 2000);
    while (budget.next()) {
      const bool now = budget.rounds() % 2 == 0;
      CAPTURE(now);
      std::atomic<bool> b_finished_before_a_returned{false};
      std::atomic<bool> a_returned{false};
      {
        thread_pool pool{pool_options{.threads = 2}};
        std::latch b_started(1);
        std::latch b_release(1);
        pool.post([&] {
          b_started.count_down();
          b_release.wait();
          b_finished_before_a_returned.store(!a_returned.load());
        });
        b_started.wait();  // B holds one worker; A can only run on the other
        pool.post([&] {
          if (now) {
            (void)pool.shutdown_now();
          } else {
            pool.shutdown();
          }
          a_returned.store(true);
          b_release.count_down();
          dog.tick();
        });
      }  // the destructor joins both workers
      CHECK(a_returned.load());
      CHECK_FALSE(b_finished_before_a_returned.load());
    }
  }

  // thread_pool.hpp, pool_options::on_error: "Never called concurrently with itself from the same
  // worker, but may run on several workers at once"; thread_pool::post(): an exception "never ends
  // a worker" and counts in pool_stats::failed.
  TEST_CASE("on_error runs on several workers at once but never twice at once on one worker" * doctest::timeout(240)) {
    progress_watchdog dog("thread_pool promises / on_error on several workers");
    round_budget budget;
    while (budget.next()) {
      const auto r = static_cast<std::uint64_t>(budget.rounds());
      const std::size_t threads = std::array<std::size_t, 2>{2, 4}[mix(r) % 2];
      CAPTURE(threads);
      std::vector<std::atomic<int>> inside(threads);
      std::atomic<int> overlaps_on_one_worker{0};
      std::atomic<int> calls{0};
      std::atomic<int> not_on_worker{0};
      constexpr int k_submitters = 2;
      constexpr int k_tasks = 300;
      thread_pool pool{pool_options{.threads = threads, .queue_capacity = 64, .on_error = [&](std::exception_ptr e) {
                                      const std::optional<std::size_t> w = thread_pool::this_worker_index();
                                      if (!w || e == nullptr) {
                                        not_on_worker.fetch_add(1);
                                        return;
                                      }
                                      if (inside[*w].fetch_add(1) != 0) {
                                        overlaps_on_one_worker.fetch_add(1);
                                      }
                                      std::this_thread::yield();  // widen the window for an overlap
                                      inside[*w].fetch_sub(1);
                                      calls.fetch_add(1);
                                      dog.tick();
                                    }}};
      std::vector<std::thread> submitters;
      for (int s = 0; s < k_submitters; ++s) {
        submitters.emplace_back([&] {
          for (int i = 0; i < k_tasks; ++i) {
            pool.post([] { throw std::runtime_error("promise test"); });
          }
        });
      }
      for (auto& th : submitters) {
        th.join();
      }
      pool.wait_idle();
      CHECK(overlaps_on_one_worker.load() == 0);
      CHECK(not_on_worker.load() == 0);
      CHECK(calls.load() == k_submitters * k_tasks);
      CHECK(pool.stats().failed == static_cast<std::uint64_t>(k_submitters * k_tasks));
    }
  }

  // thread_pool.hpp: stats(), thread_count(), this_worker_index() "Any thread; never blocks";
  // pool_stats.hpp: each counter "written only by its worker ... individually exact values"; "After
  // wait_idle() returns (and nothing new was submitted), submitted == completed + dropped".
  TEST_CASE("stats, thread_count and this_worker_index from several threads while tasks run: counters never go back" *
            doctest::timeout(240)) {
    progress_watchdog dog("thread_pool promises / stats from several threads while tasks run");
    round_budget budget;
    while (budget.next()) {
      const auto r = static_cast<std::uint64_t>(budget.rounds());
      const std::size_t threads = k_threads[mix(r) % 3];
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads, .queue_capacity = 32}};
      std::atomic<bool> stop{false};
      std::atomic<int> went_back{0};
      std::atomic<int> bad_index{0};
      std::atomic<int> bad_count{0};
      constexpr int k_readers = 2;
      constexpr int k_tasks = 2000;
      std::latch start(k_readers + 1);
      std::vector<std::thread> readers;
      for (int i = 0; i < k_readers; ++i) {
        readers.emplace_back([&] {
          start.arrive_and_wait();
          flowpool::pool_stats last = pool.stats();
          int reads = 0;
          while (!stop.load() && reads < 1000000) {
            const flowpool::pool_stats now = pool.stats();
            bool back =
                now.workers.size() != threads || now.submitted < last.submitted || now.completed < last.completed;
            back = back || now.queue_high_water < last.queue_high_water;
            for (std::size_t w = 0; !back && w < threads; ++w) {
              back = now.workers[w].executed < last.workers[w].executed ||
                     now.workers[w].stolen < last.workers[w].stolen ||
                     now.workers[w].steal_attempts < last.workers[w].steal_attempts ||
                     now.workers[w].parks < last.workers[w].parks ||
                     now.workers[w].busy_time < last.workers[w].busy_time;
            }
            went_back.fetch_add(back ? 1 : 0);
            bad_count.fetch_add(pool.thread_count() != threads ? 1 : 0);
            bad_index.fetch_add(thread_pool::this_worker_index().has_value() ? 1 : 0);
            last = now;
            ++reads;  // no tick: this loop spins until the end, so it proves no progress
          }
        });
      }
      start.arrive_and_wait();
      for (int i = 0; i < k_tasks; ++i) {
        pool.post([&, i] {
          const std::optional<std::size_t> w = thread_pool::this_worker_index();
          bad_index.fetch_add(!w || *w >= threads ? 1 : 0);
          if (i % 4 == 0) {
            (void)pool.stats();  // from a worker too
          }
        });
        dog.tick();
      }
      pool.wait_idle();
      const flowpool::pool_stats idle = pool.stats();
      stop.store(true);
      for (auto& th : readers) {
        th.join();
      }
      CHECK(went_back.load() == 0);
      CHECK(bad_index.load() == 0);
      CHECK(bad_count.load() == 0);
      CHECK(idle.submitted == static_cast<std::uint64_t>(k_tasks));
      CHECK(idle.submitted == idle.completed + idle.dropped);
      std::uint64_t executed = 0;
      for (const flowpool::worker_stats& w : idle.workers) {
        executed += w.executed;
      }
      CHECK(executed == idle.completed);
    }
  }
}

TEST_SUITE("task_group promises") {
  // task_group.hpp: "It is reusable: after wait() returns, run() may add new tasks"; "run() may be
  // called concurrently from any thread, including from the group's own tasks"; wait() on a worker
  // "runs other tasks meanwhile". The wait alternates between an outside thread and a worker.
  TEST_CASE("a group is reused for many rounds while its own tasks run() into it from several workers" *
            doctest::timeout(240)) {
    progress_watchdog dog("task_group promises / a group reused while its own tasks run() into it");
    struct node {
      task_group* group;
      std::atomic<int>* count;
      progress_watchdog* dog;
      int depth;
      void operator()() const {
        count->fetch_add(1, std::memory_order_relaxed);  // relaxed: wait() orders it
        dog->tick();
        for (int c = 0; depth > 0 && c < 3; ++c) {
          group->run(node{group, count, dog, depth - 1});
        }
      }
    };
    constexpr int k_depth = 4;  // 1 + 3 + 9 + 27 + 81 = 121 nodes per tree
    constexpr int k_tree = 121;
    for (const std::size_t threads : k_threads) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      thread_pool helper{pool_options{.threads = 1}};  // waits "outside" from a worker of another pool
      task_group group(pool);
      round_budget budget(20, 20000);
      while (budget.next()) {
        const int round = budget.rounds();
        CAPTURE(round);
        std::atomic<int> count{0};
        const int trees = 1 + round % 3;
        switch (round % 3) {
          case 0:  // outside thread runs and waits
            for (int i = 0; i < trees; ++i) {
              group.run(node{&group, &count, &dog, k_depth});
            }
            group.wait();
            break;
          case 1:  // a worker of the pool runs and waits (helping meanwhile)
            pool.submit([&] {
                  for (int i = 0; i < trees; ++i) {
                    group.run(node{&group, &count, &dog, k_depth});
                  }
                  group.wait();
                })
                .get();
            break;
          default:  // a worker of another pool runs and waits: it is outside this pool
            helper
                .submit([&] {
                  for (int i = 0; i < trees; ++i) {
                    group.run(node{&group, &count, &dog, k_depth});
                  }
                  group.wait();
                })
                .get();
            break;
        }
        REQUIRE(count.load(std::memory_order_relaxed) == trees * k_tree);
      }
    }
  }

  // task_group.hpp: "If tasks of the group throw, wait() rethrows the first exception captured; the
  // others are dropped"; wait() "@throws the first exception ...; the group is reusable afterwards";
  // the end of every task happens-before wait() returns (or rethrows).
  TEST_CASE("tasks of one group throwing on several workers at once: wait rethrows one of them after all finished" *
            doctest::timeout(240)) {
    progress_watchdog dog("task_group promises / tasks throwing on several workers at once");
    struct numbered_error {
      int id;
    };
    for (const std::size_t threads : k_threads) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      task_group group(pool);
      round_budget budget(10, 5000);
      while (budget.next()) {
        const auto r = static_cast<std::uint64_t>(budget.rounds());
        constexpr int k_tasks = 64;
        std::array<int, k_tasks> finished{};  // plain: wait() must order every write before it returns
        std::vector<bool> throws(k_tasks);
        int throwers = 0;
        for (int i = 0; i < k_tasks; ++i) {
          throws[i] = mix(r * 131 + static_cast<std::uint64_t>(i)) % 5 == 0;
          throwers += throws[i] ? 1 : 0;
        }
        std::latch all_in(std::min<std::ptrdiff_t>(static_cast<std::ptrdiff_t>(threads), k_tasks));
        std::atomic<int> entered{0};
        for (int i = 0; i < k_tasks; ++i) {
          const bool t_throws = throws[i];
          group.run([&finished, &all_in, &entered, &dog, i, t_throws, threads] {
            // The first `threads` tasks meet, so several workers throw at about the same time.
            if (entered.fetch_add(1) < static_cast<int>(threads)) {
              all_in.arrive_and_wait();
            }
            finished[i] = 1;
            dog.tick();
            if (t_throws) {
              throw numbered_error{i};
            }
          });
        }
        int caught = -1;
        try {
          group.wait();
        } catch (const numbered_error& e) {
          caught = e.id;
        }
        int done = 0;
        for (const int f : finished) {
          done += f;
        }
        CHECK(done == k_tasks);
        if (throwers == 0) {
          CHECK(caught == -1);
        } else {
          REQUIRE(caught >= 0);
          const bool from_a_thrower = throws[static_cast<std::size_t>(caught)];
          CHECK(from_a_thrower);
        }
        // Reusable afterwards, with no stale exception.
        std::atomic<int> again{0};
        group.run([&again] { again.fetch_add(1); });
        CHECK_NOTHROW(group.wait());
        CHECK(again.load() == 1);
      }
    }
  }
}

TEST_SUITE("parallel_for promises") {
  // parallel_for.hpp: "Any thread. On one of the pool's workers it takes part in the work (nested
  // use is fine); from outside the pool it sleeps"; every body(i) happens-before the return.
  TEST_CASE("parallel_for from several outside threads and from workers at once visits every index exactly once" *
            doctest::timeout(240)) {
    progress_watchdog dog("parallel_for promises / several outside threads and workers at once");
    constexpr int k_outside = 3;
    constexpr int k_inside = 2;
    constexpr int k_n = 3000;
    round_budget budget(3, 2000);
    for (const std::size_t threads : k_threads) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      while (budget.next()) {
        std::vector<std::vector<int>> hits(k_outside + k_inside, std::vector<int>(k_n, 0));
        std::vector<std::thread> outside;
        std::vector<std::future<void>> inside;
        std::latch start(k_outside);
        for (int c = 0; c < k_inside; ++c) {
          inside.push_back(pool.submit([&pool, &hits, &dog, c] {
            flowpool::parallel_for(pool, 0, k_n, [&](int i) {
              hits[k_outside + c][i] += 1;  // plain: each index once, ordered by the return
              dog.tick();
            });
          }));
        }
        for (int c = 0; c < k_outside; ++c) {
          outside.emplace_back([&pool, &hits, &dog, &start, c] {
            start.arrive_and_wait();
            flowpool::parallel_for(pool, std::size_t{0}, std::size_t{k_n}, [&](std::size_t i) {
              hits[c][i] += 1;
              dog.tick();
            });
          });
        }
        for (auto& th : outside) {
          th.join();
        }
        for (auto& f : inside) {
          f.get();
        }
        std::size_t wrong = 0;
        for (const auto& h : hits) {
          for (const int v : h) {
            wrong += v != 1 ? 1 : 0;
          }
        }
        CHECK(wrong == 0);
      }
      budget = round_budget(3, 2000);
    }
  }
}

TEST_SUITE("version promises") {
  // version.hpp: version() "Thread-safe; never blocks; never allocates; never throws".
  TEST_CASE("version() from several threads at once returns the same string" * doctest::timeout(60)) {
    constexpr int k_threads_n = 4;
    const std::string expected = std::to_string(FLOWPOOL_VERSION_MAJOR) + "." + std::to_string(FLOWPOOL_VERSION_MINOR) +
                                 "." + std::to_string(FLOWPOOL_VERSION_PATCH);
    std::atomic<int> wrong{0};
    std::latch start(k_threads_n);
    std::vector<std::thread> all;
    for (int i = 0; i < k_threads_n; ++i) {
      all.emplace_back([&] {
        start.arrive_and_wait();
        for (int k = 0; k < 10000; ++k) {
          wrong.fetch_add(std::strcmp(flowpool::version(), expected.c_str()) != 0 ? 1 : 0);
        }
      });
    }
    for (auto& th : all) {
      th.join();
    }
    CHECK(wrong.load() == 0);
  }
}
