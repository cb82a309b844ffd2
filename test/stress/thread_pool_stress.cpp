// Stress tests for flowpool::thread_pool and task_group (issue 6). Each runs rounds until
// flowpool_test::stress_duration() has passed (FLOWPOOL_STRESS_SECONDS, default 2 s) and checks
// conservation after every round: every task ran exactly once, or was dropped and counted by
// shutdown_now(), or its submission was refused; nothing twice, nothing lost, every thread ends.
#include "../unit/pool_test_util.hpp"
#include "test_support.hpp"

#include <doctest/doctest.h>

#include <flowpool/task_group.hpp>
#include <flowpool/thread_pool.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <future>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using flowpool::pool_options;
using flowpool::shut_down_error;
using flowpool::task_group;
using flowpool::thread_pool;
using flowpool_test::mix;

namespace {

using clock_type = std::chrono::steady_clock;

bool time_left(clock_type::time_point start) {
  return clock_type::now() - start < flowpool_test::stress_duration();
}

// ---------------------------------------------------------------------------------------------
// Nested task_groups with random throws.

struct node_error {
  std::uint64_t id;
};

struct tree_shape {
  std::uint64_t seed;
  int max_children;
  int throw_one_in;  // a node throws with probability 1/throw_one_in

  [[nodiscard]] int children(std::uint64_t id, int depth) const {
    return depth <= 0 ? 0 : static_cast<int>(mix(seed ^ id) % static_cast<std::uint64_t>(max_children + 1));
  }
  [[nodiscard]] bool throws(std::uint64_t id) const {
    return (mix(seed ^ id) >> 17U) % static_cast<std::uint64_t>(throw_one_in) == 0;
  }
  [[nodiscard]] static std::uint64_t child_id(std::uint64_t id, int c) {
    return id * 8 + static_cast<std::uint64_t>(c) + 1;
  }
  // Nodes in the subtree of `id`, counted serially.
  [[nodiscard]] std::uint64_t size(std::uint64_t id, int depth) const {
    std::uint64_t total = 1;
    for (int c = 0; c < children(id, depth); ++c) {
      total += size(child_id(id, c), depth - 1);
    }
    return total;
  }
};

struct tree_run {
  thread_pool* pool;
  tree_shape shape;
  std::atomic<std::uint64_t> executed{0};
  std::atomic<std::uint64_t> wrong{0};  // a wait() that threw when it should not, or the reverse, or a foreign id
};

// Each node runs its children in its own group, waits, checks what wait() reported against the
// serially known shape, then throws if its own id says so.
void tree_node(tree_run& run, std::uint64_t id, int depth) {
  run.executed.fetch_add(1, std::memory_order_relaxed);  // relaxed: read after the root's wait
  const int children = run.shape.children(id, depth);
  if (children > 0) {
    bool any_child_throws = false;
    task_group group(*run.pool);
    for (int c = 0; c < children; ++c) {
      const std::uint64_t child = tree_shape::child_id(id, c);
      any_child_throws = any_child_throws || run.shape.throws(child);
      group.run([&run, child, depth] { tree_node(run, child, depth - 1); });
    }
    bool caught = false;
    try {
      group.wait();
    } catch (const node_error& e) {
      caught = true;
      // The reported exception must come from one of this node's own throwing children.
      bool ours = false;
      for (int c = 0; c < children; ++c) {
        ours = ours || (e.id == tree_shape::child_id(id, c) && run.shape.throws(e.id));
      }
      if (!ours) {
        run.wrong.fetch_add(1, std::memory_order_relaxed);  // relaxed: read after the root's wait
      }
    } catch (...) {
      run.wrong.fetch_add(1, std::memory_order_relaxed);  // relaxed: as above
    }
    if (caught != any_child_throws) {
      run.wrong.fetch_add(1, std::memory_order_relaxed);  // relaxed: as above
    }
  }
  if (run.shape.throws(id)) {
    throw node_error{id};
  }
}

// ---------------------------------------------------------------------------------------------
// Submitters racing shutdown(), shutdown_now() and destruction.

enum class status : std::uint8_t { unused, accepted, refused, try_refused };

constexpr std::size_t k_max_ids = 1U << 14U;

struct race_round {
  std::vector<std::atomic<std::uint8_t>> status_of = std::vector<std::atomic<std::uint8_t>>(k_max_ids);
  std::vector<std::atomic<std::uint8_t>> runs = std::vector<std::atomic<std::uint8_t>>(k_max_ids);
  std::atomic<std::size_t> next_id{0};
  std::atomic<std::size_t> accepted{0};
  std::atomic<std::size_t> posted_throwers_ran{0};
  std::atomic<std::size_t> on_error_calls{0};
  std::atomic<std::size_t> wrong_exceptions{0};

  std::optional<std::size_t> new_id() {
    const std::size_t id = next_id.fetch_add(1, std::memory_order_relaxed);  // relaxed: a ticket, no data
    return id < k_max_ids ? std::optional<std::size_t>(id) : std::nullopt;
  }
  void mark(std::size_t id, status s) {
    // relaxed: read only after every thread has been joined (join orders it)
    status_of[id].store(static_cast<std::uint8_t>(s), std::memory_order_relaxed);
    if (s == status::accepted) {
      accepted.fetch_add(1, std::memory_order_relaxed);  // relaxed: a trigger count, orders nothing
    }
  }
};

// A task of the race: records that it ran; sometimes spawns a child from inside the pool (which
// must never block); sometimes throws (posted: to on_error; submitted: to its future).
struct race_task {
  race_round* round;
  thread_pool* pool;
  std::size_t id;
  int spawn_depth;
  bool throws;
  bool posted;

  int operator()() const {
    round->runs[id].fetch_add(1, std::memory_order_relaxed);  // relaxed: read after the joins
    if (spawn_depth > 0 && mix(id) % 3 == 0) {
      if (const std::optional<std::size_t> child = round->new_id()) {
        const bool child_throws = mix(*child) % 7 == 0;
        try {
          pool->post(race_task{round, pool, *child, spawn_depth - 1, child_throws, true});
          round->mark(*child, status::accepted);
        } catch (const shut_down_error&) {
          round->mark(*child, status::refused);
        }
      }
    }
    if (throws) {
      if (posted) {
        round->posted_throwers_ran.fetch_add(1, std::memory_order_relaxed);  // relaxed: read after the joins
      }
      throw std::runtime_error("race task");
    }
    return static_cast<int>(id);
  }
};

}  // namespace

TEST_SUITE("thread_pool stress") {
  TEST_CASE("nested task_groups with random throws: every node runs once and every wait reports its children" *
            doctest::timeout(120)) {
    const auto start = clock_type::now();
    std::mt19937_64 rng(20261127);
    std::size_t rounds = 0;
    std::uint64_t nodes = 0;
    while (time_left(start) || rounds < 4) {
      const std::size_t threads = std::array<std::size_t, 4>{1, 2, 4, 8}[rng() % 4];
      const tree_shape shape{rng(), static_cast<int>(2 + rng() % 3), static_cast<int>(3 + rng() % 6)};
      const int depth = static_cast<int>(3 + rng() % 5);
      const std::uint64_t expected = shape.size(0, depth);
      if (expected > 30000) {
        continue;  // keep a round short under sanitizers
      }
      CAPTURE(threads);
      CAPTURE(depth);
      CAPTURE(shape.seed);
      const flowpool_test::round_watchdog watchdog("nested groups: threads=" + std::to_string(threads) + " depth=" +
                                                       std::to_string(depth) + " seed=" + std::to_string(shape.seed),
                                                   std::chrono::seconds(60));
      thread_pool pool{pool_options{.threads = threads}};
      tree_run run{&pool, shape};
      bool root_threw = false;
      if (rng() % 2 == 0) {
        // Root on an external thread.
        try {
          tree_node(run, 0, depth);
        } catch (const node_error& e) {
          root_threw = e.id == 0;
        }
      } else {
        // Root on a worker.
        std::future<void> root = pool.submit([&run, depth] { tree_node(run, 0, depth); });
        // The worker drops its promise before get(): see the note on exceptions and TSan in
        // test/unit/thread_pool.cpp ("an exception thrown by a submitted task ...").
        pool.wait_idle();
        try {
          root.get();
        } catch (const node_error& e) {
          root_threw = e.id == 0;
        }
      }
      CHECK(root_threw == shape.throws(0));
      CHECK(run.executed.load() == expected);
      CHECK(run.wrong.load() == 0);
      CHECK(pool.wait_idle_for(std::chrono::seconds(30)));
      nodes += expected;
      ++rounds;
    }
    MESSAGE("rounds: " << rounds << ", nodes: " << nodes);
  }

  TEST_CASE(
      "submitters racing shutdown, shutdown_now and destruction: each task ran once, was dropped, or was refused" *
      doctest::timeout(180)) {
    const auto start = clock_type::now();
    std::mt19937_64 rng(77);
    std::size_t rounds = 0;
    std::size_t total_accepted = 0;
    std::size_t total_dropped = 0;
    std::size_t total_refused = 0;
    std::array<std::size_t, 3> endings{};
    while (time_left(start) || rounds < 6) {
      const std::size_t threads = std::array<std::size_t, 3>{1, 2, 4}[rng() % 3];
      const std::size_t capacity = std::array<std::size_t, 3>{1, 4, 64}[rng() % 3];
      const int ending = static_cast<int>(rounds % 3);  // 0 shutdown, 1 shutdown_now, 2 destructor only
      const std::size_t trigger = rng() % 400;
      constexpr int k_submitters = 3;
      constexpr int k_budget = 600;  // operations per submitter
      CAPTURE(threads);
      CAPTURE(capacity);
      CAPTURE(ending);
      CAPTURE(trigger);

      const flowpool_test::round_watchdog watchdog(
          "race: threads=" + std::to_string(threads) + " capacity=" + std::to_string(capacity) +
              " ending=" + std::to_string(ending) + " trigger=" + std::to_string(trigger),
          std::chrono::seconds(60));
      auto round = std::make_unique<race_round>();
      std::vector<std::vector<std::pair<std::size_t, std::future<int>>>> futures(k_submitters);
      std::size_t dropped = 0;
      std::optional<flowpool::pool_stats> final_stats;
      {
        thread_pool pool{
            pool_options{.threads = threads,
                         .queue_capacity = capacity,
                         .on_error = [r = round.get()](const std::exception_ptr& error) {
                           r->on_error_calls.fetch_add(1, std::memory_order_relaxed);  // relaxed: read after the joins
                           try {
                             std::rethrow_exception(error);
                           } catch (const std::runtime_error&) {
                           } catch (...) {
                             r->wrong_exceptions.fetch_add(1, std::memory_order_relaxed);  // relaxed: as above
                           }
                         }}};
        std::vector<std::thread> submitters;
        submitters.reserve(k_submitters);
        for (int s = 0; s < k_submitters; ++s) {
          submitters.emplace_back([&, s, seed = rng()] {
            std::mt19937_64 local(seed);
            for (int op = 0; op < k_budget; ++op) {
              const std::optional<std::size_t> id = round->new_id();
              if (!id) {
                return;
              }
              const bool throws = local() % 11 == 0;
              const int kind = static_cast<int>(local() % 3);
              try {
                if (kind == 0) {
                  futures[static_cast<std::size_t>(s)].emplace_back(
                      *id, pool.submit(race_task{round.get(), &pool, *id, 2, throws, false}));
                  round->mark(*id, status::accepted);
                } else if (kind == 1) {
                  pool.post(race_task{round.get(), &pool, *id, 2, throws, true});
                  round->mark(*id, status::accepted);
                } else if (pool.try_post(race_task{round.get(), &pool, *id, 2, throws, true})) {
                  round->mark(*id, status::accepted);
                } else {
                  round->mark(*id, status::try_refused);
                }
              } catch (const shut_down_error&) {
                round->mark(*id, status::refused);
                return;  // the pool is closed for good
              }
            }
          });
        }
        if (ending != 2) {
          // Not a sleep: a trigger point. If the submitters finish first, shut down anyway.
          flowpool_test::eventually([&] { return round->accepted.load() >= trigger; }, std::chrono::seconds(5));
          if (ending == 0) {
            pool.shutdown();
          } else {
            dropped = pool.shutdown_now();
          }
        }
        for (auto& t : submitters) {
          t.join();
        }
        if (ending != 2) {
          final_stats = pool.stats();  // shut down and joined: the counters are final
        }
      }  // ~thread_pool: runs everything accepted, joins every worker
      ++endings[static_cast<std::size_t>(ending)];

      std::size_t accepted = 0;
      std::size_t refused = 0;
      std::size_t ran = 0;
      std::size_t ran_twice = 0;
      std::size_t refused_but_ran = 0;
      std::size_t accepted_not_run = 0;
      const std::size_t ids = std::min(round->next_id.load(), k_max_ids);
      for (std::size_t id = 0; id < ids; ++id) {
        const auto st = static_cast<status>(round->status_of[id].load());
        const std::uint8_t runs = round->runs[id].load();
        ran += runs;
        ran_twice += runs > 1 ? 1 : 0;
        if (st == status::accepted) {
          ++accepted;
          accepted_not_run += runs == 0 ? 1 : 0;
        } else {
          refused += st == status::refused ? 1 : 0;
          refused_but_ran += runs != 0 ? 1 : 0;
        }
      }
      CHECK(ran_twice == 0);
      CHECK(refused_but_ran == 0);
      CHECK(ran + dropped == accepted);
      CHECK(accepted_not_run == dropped);
      if (final_stats) {
        CHECK(final_stats->submitted == accepted);
        CHECK(final_stats->completed == ran);
        CHECK(final_stats->dropped == dropped);
        CHECK(final_stats->failed == round->posted_throwers_ran.load());
      }
      if (ending != 1) {
        CHECK(dropped == 0);
      }
      CHECK(round->on_error_calls.load() == round->posted_throwers_ran.load());
      CHECK(round->wrong_exceptions.load() == 0);
      // Every submitted future is ready: a value, the task's exception, or broken_promise if dropped.
      std::size_t bad_futures = 0;
      for (auto& list : futures) {
        for (auto& [id, future] : list) {
          if (future.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
            ++bad_futures;
            continue;
          }
          const bool did_run = round->runs[id].load() == 1;
          try {
            const int value = future.get();
            bad_futures += (!did_run || value != static_cast<int>(id)) ? 1 : 0;
          } catch (const std::future_error& e) {
            bad_futures += (did_run || e.code() != std::future_errc::broken_promise) ? 1 : 0;
          } catch (const std::runtime_error&) {
            bad_futures += did_run ? 0 : 1;
          }
        }
      }
      CHECK(bad_futures == 0);
      total_accepted += accepted;
      total_dropped += dropped;
      total_refused += refused;
      ++rounds;
    }
    MESSAGE("rounds: " << rounds << " (shutdown " << endings[0] << ", shutdown_now " << endings[1] << ", destructor "
                       << endings[2] << "), accepted: " << total_accepted << ", dropped: " << total_dropped
                       << ", refused: " << total_refused);
  }

  TEST_CASE("a queue that stays full for a long time: blocked submitters lose nothing" * doctest::timeout(120)) {
    const auto start = clock_type::now();
    std::size_t rounds = 0;
    std::size_t moved = 0;
    while (time_left(start) || rounds < 2) {
      const std::size_t threads = rounds % 2 == 0 ? 1 : 2;
      const flowpool_test::round_watchdog watchdog("full queue: threads=" + std::to_string(threads) + " capacity=1",
                                                   std::chrono::seconds(60));
      thread_pool pool{pool_options{.threads = threads, .queue_capacity = 1}};
      constexpr int k_submitters = 4;
      constexpr int k_each = 500;
      std::atomic<std::uint64_t> executed_sum{0};
      std::vector<std::thread> submitters;
      submitters.reserve(k_submitters);
      for (int s = 0; s < k_submitters; ++s) {
        submitters.emplace_back([&pool, &executed_sum, s] {
          for (int i = 0; i < k_each; ++i) {
            const std::uint64_t value = static_cast<std::uint64_t>(s) * 100000 + static_cast<std::uint64_t>(i);
            if (i % 2 == 0) {
              pool.post([&executed_sum, value] { executed_sum.fetch_add(value, std::memory_order_relaxed); });
            } else {
              // Tasks that spawn from inside the pool while the injection queue is full.
              pool.post([&pool, &executed_sum, value] {
                pool.post([&executed_sum, value] { executed_sum.fetch_add(value, std::memory_order_relaxed); });
              });
            }
          }
        });
      }
      for (auto& t : submitters) {
        t.join();
      }
      pool.wait_idle();
      std::uint64_t expected = 0;
      for (int s = 0; s < k_submitters; ++s) {
        for (int i = 0; i < k_each; ++i) {
          expected += static_cast<std::uint64_t>(s) * 100000 + static_cast<std::uint64_t>(i);
        }
      }
      CHECK(executed_sum.load() == expected);
      const flowpool::pool_stats stats = pool.stats();
      CHECK(stats.queue_high_water <= 1);
      CHECK(stats.completed == static_cast<std::size_t>(k_submitters * k_each + k_submitters * k_each / 2));
      moved += static_cast<std::size_t>(k_submitters * k_each);
      ++rounds;
    }
    MESSAGE("rounds: " << rounds << ", tasks moved through a capacity-1 queue: " << moved);
  }
}
