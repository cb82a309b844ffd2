// Stress test for flowpool::server_pool (issue 6): outside submitters and handler follow-ups on a
// tiny (often full) queue, throwing handlers, and shutdown()/shutdown_now() from another thread at
// random points. Every request must end in exactly one way: handled, handed back by
// shutdown_now(), or refused (its submit returned false and the request was still intact).
// Runs rounds of random shapes until flowpool_test::stress_duration() has passed.
#include <doctest/doctest.h>

#include <flowpool/server_pool.hpp>

#include <test_support.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

namespace {

using flowpool::server_pool;
using flowpool::slot_id;

// Move-only, heap-owning: ASan catches a request that is lost, freed twice or used after a move.
using request = std::unique_ptr<std::uint32_t>;

enum class ending { shutdown, shutdown_now, shutdown_then_now, destructor };

struct round_config {
  std::size_t servers;
  std::size_t slots;
  std::size_t capacity;
  std::uint32_t budget;      // request ids available to this round, follow-ups included
  std::uint64_t stop_after;  // the controller acts once this many requests were handled
  ending end;
};

struct round_result {
  std::uint64_t attempted = 0;
  std::uint64_t handled = 0;
  std::uint64_t returned = 0;
  std::uint64_t refused = 0;
  bool each_exactly_once = true;
};

class round_runner {
 public:
  explicit round_runner(const round_config& config) : m_config(config), m_fates(config.budget) {}

  round_result run() {
    {
      auto pool = std::make_unique<server_pool<request>>(
          flowpool::server_pool_options{
              .servers = m_config.servers, .slots_per_server = m_config.slots, .queue_capacity = m_config.capacity},
          [this](slot_id id, request& r) { handle(id, r); });
      m_pool = pool.get();
      std::vector<std::thread> producers;
      for (int p = 0; p < 2; ++p) {
        producers.emplace_back([this, p] { produce(static_cast<unsigned>(p)); });
      }
      std::thread controller([this] { control(); });
      for (std::thread& t : producers) {
        t.join();
      }
      m_producers_done.store(true);
      controller.join();
      m_pool->join();  // nothing outside submits any more; this waits for the follow-up chains
      // With the pool quiet, its own counters must agree with the handler's.
      const flowpool::server_pool_stats stats = m_pool->stats();
      CHECK(stats.total_handled() == m_handled.load());
      CHECK(stats.total_failed() == m_thrown.load());
      CHECK(stats.unfinished == 0);
      m_pool = nullptr;
      pool.reset();  // graceful destructor: drains anything still queued (follow-ups are refused)
    }
    CHECK(m_violations.load() == 0);
    round_result result;
    result.attempted = std::min<std::uint64_t>(m_next_id.load(), m_config.budget);
    result.handled = m_handled.load();
    result.returned = m_returned.load();
    result.refused = m_refused.load();
    for (std::uint32_t id = 0; id < result.attempted; ++id) {
      if (m_fates[id].load() != 1) {
        result.each_exactly_once = false;
      }
    }
    return result;
  }

 private:
  // A new request with a fresh id, or null once the round's budget is used up.
  request make() {
    const std::uint32_t id = m_next_id.fetch_add(1);
    return id < m_config.budget ? std::make_unique<std::uint32_t>(id) : nullptr;
  }

  void settle(const request& r, std::atomic<std::uint64_t>& bucket) {
    m_fates[*r].fetch_add(1);
    bucket.fetch_add(1);
  }

  // A submit returned false: the request must still be there, intact, and it counts as refused.
  void refused(const request& r) {
    if (r == nullptr) {
      m_violations.fetch_add(1);
      return;
    }
    settle(r, m_refused);
  }

  void handle(slot_id id, request& r) {
    // Plain checks here, reported once per round: a doctest assertion per request would dominate.
    if (id.server >= m_config.servers || id.slot >= m_config.slots || r == nullptr) {
      m_violations.fetch_add(1);
      return;
    }
    settle(r, m_handled);
    std::minstd_rand rng(*r + 1);  // per-request randomness, reproducible for a given id
    const unsigned follow_ups = rng() % 3;
    for (unsigned i = 0; i < follow_ups; ++i) {
      request next = make();
      if (next == nullptr) {
        break;
      }
      // From a handler these never block and never fail for lack of room, only after shutdown.
      const bool accepted = (rng() % 2 == 0) ? m_pool->submit(std::move(next)) : m_pool->try_submit(std::move(next));
      if (!accepted) {
        if (!m_pool->is_shut_down()) {
          m_violations.fetch_add(1);  // a follow-up may be refused only after shutdown
        }
        refused(next);
      }
    }
    if (rng() % 16 == 0) {
      m_thrown.fetch_add(1);
      throw std::runtime_error("stress: handler failure");
    }
  }

  void produce(unsigned seed) {
    std::minstd_rand rng(seed + 1);
    for (;;) {
      request r = make();
      if (r == nullptr) {
        return;
      }
      bool accepted = false;
      switch (rng() % 3) {
        case 0:
          accepted = m_pool->submit(std::move(r));
          break;
        case 1:
          accepted = m_pool->try_submit(std::move(r));  // may be refused because the queue is full
          break;
        default:
          accepted = m_pool->submit_for(std::move(r), std::chrono::microseconds(50));
          break;
      }
      if (!accepted) {
        refused(r);
        if (m_pool->is_shut_down()) {
          return;
        }
      }
    }
  }

  void control() {
    // Waits (politely) for the chosen point in the stream; it only decides *when* to act, the
    // result may not depend on it.
    while (m_handled.load() < m_config.stop_after && !(m_producers_done.load() && m_pool->unfinished() == 0)) {
      std::this_thread::yield();
    }
    switch (m_config.end) {
      case ending::shutdown:
        m_pool->shutdown();
        break;
      case ending::shutdown_now:
        take_back(m_pool->shutdown_now());
        break;
      case ending::shutdown_then_now:
        m_pool->shutdown();
        take_back(m_pool->shutdown_now());
        break;
      case ending::destructor:
        break;  // run() destroys the pool once the producers are done
    }
  }

  void take_back(const std::vector<request>& back) {
    for (const request& r : back) {
      REQUIRE(r != nullptr);
      settle(r, m_returned);
    }
  }

  const round_config m_config;
  server_pool<request>* m_pool = nullptr;
  std::vector<std::atomic<std::uint8_t>> m_fates;  // per id: how many times it was settled
  std::atomic<std::uint32_t> m_next_id{0};
  std::atomic<std::uint64_t> m_handled{0};
  std::atomic<std::uint64_t> m_returned{0};
  std::atomic<std::uint64_t> m_refused{0};
  std::atomic<std::uint64_t> m_thrown{0};
  std::atomic<std::uint64_t> m_violations{0};  // broken expectations seen on pool threads
  std::atomic<bool> m_producers_done{false};
};

}  // namespace

TEST_SUITE("server_pool stress") {
  TEST_CASE("follow-ups, a full queue and random shutdowns: every request handled, returned or refused, once" *
            doctest::timeout(300)) {
    const auto deadline = std::chrono::steady_clock::now() + flowpool_test::stress_duration();
    const std::uint32_t seed = std::random_device{}();
    INFO("seed = " << seed);
    std::mt19937 rng(seed);
    std::uint64_t rounds = 0;
    std::uint64_t moved = 0;
    std::uint64_t returned = 0;
    std::uint64_t refused = 0;
    do {
      round_config config{};
      config.servers = 1 + rng() % 3;
      config.slots = 1 + rng() % 3;
      config.capacity = 1 + rng() % 4;
      config.budget = 500 + rng() % 3000;
      config.stop_after = rng() % config.budget;
      config.end = static_cast<ending>(rng() % 4);
      CAPTURE(rounds);
      CAPTURE(config.servers);
      CAPTURE(config.slots);
      CAPTURE(config.capacity);
      CAPTURE(config.budget);
      CAPTURE(static_cast<int>(config.end));
      round_runner runner(config);
      const round_result r = runner.run();
      REQUIRE(r.each_exactly_once);
      REQUIRE(r.handled + r.returned + r.refused == r.attempted);
      ++rounds;
      moved += r.handled;
      returned += r.returned;
      refused += r.refused;
    } while (std::chrono::steady_clock::now() < deadline);
    MESSAGE("rounds " << rounds << ", handled " << moved << ", returned " << returned << ", refused " << refused);
  }
}
