// Stress test for server_pool's fleet features (issue 10): random handler failures (some
// permanent), retries, ejections and probes, servers added and drained while requests flow,
// requests with expired deadlines, and shutdown()/shutdown_now()/the destructor at random points.
// Conservation is checked by count and by checksum: every request id submitted ends in exactly one
// of succeeded, failed for good, expired, handed back by shutdown_now(), or refused (its submit
// returned false and the request was still the caller's), and the pool's own counters agree.
// Runs rounds of random shapes until flowpool_test::stress_duration() has passed.
#include <doctest/doctest.h>

#include <flowpool/server_pool.hpp>

#include <test_support.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using flowpool::server_pool;
using flowpool::slot_context;
using flowpool_test::mix;

// Move-only, heap-owning: ASan catches a request that is lost, freed twice or used after a move.
using request = std::unique_ptr<std::uint32_t>;

enum fate : int { none = 0, succeeded, failed, expired, returned, refused };
enum class ending { shutdown, shutdown_now, destructor };

struct round_config {
  std::size_t servers;
  std::size_t slots;
  std::size_t capacity;
  std::size_t max_attempts;
  std::size_t eject_after;
  std::chrono::milliseconds eject_for;
  bool budget;  // the default retry budget, or none
  std::uint32_t requests;
  std::uint64_t stop_after;  // the controller ends the round after this many attempts
  ending end;
  std::uint64_t seed;
};

class round_runner {
 public:
  explicit round_runner(const round_config& config) : m_config(config), m_fates(config.requests) {}

  void run() {
    flowpool::server_pool_options options;
    options.servers = m_config.servers;
    options.slots_per_server = m_config.slots;
    options.queue_capacity = m_config.capacity;
    options.max_attempts = m_config.max_attempts;
    options.eject_after = m_config.eject_after;
    options.eject_for = m_config.eject_for;
    if (!m_config.budget) {
      options.retry_budget_ratio = std::numeric_limits<double>::infinity();
    }
    flowpool::server_pool_callbacks<request> callbacks;
    callbacks.on_failure = [this](const flowpool::request_failure&, request& r) { settle(r, failed); };
    callbacks.on_expired = [this](request& r) { settle(r, expired); };
    {
      auto pool = std::make_unique<server_pool<request>>(
          options, [this](slot_context<request>& ctx, request& r) { handle(ctx, r); }, std::move(callbacks));
      m_pool = pool.get();
      std::vector<std::thread> threads;
      for (unsigned p = 0; p < 2; ++p) {
        threads.emplace_back([this, p] { produce(p); });
      }
      threads.emplace_back([this] { change_membership(); });
      for (unsigned p = 0; p < 2; ++p) {
        threads[p].join();
      }
      m_producers_done.store(true);
      if (m_config.end == ending::shutdown_now) {
        for (request& back : m_pool->shutdown_now()) {
          settle(back, returned);
        }
      } else if (m_config.end == ending::shutdown) {
        m_pool->shutdown();
      }
      m_pool->join();
      m_stop.store(true);
      threads[2].join();
      const flowpool::server_pool_stats stats = m_pool->stats();
      CHECK(stats.unfinished == 0);
      CHECK(stats.queued == 0);
      CHECK(stats.succeeded == count(succeeded));
      CHECK(stats.final_failures == count(failed));
      CHECK(stats.expired == count(expired));
      CHECK(stats.returned == count(returned));
      CHECK(stats.accepted == stats.succeeded + stats.final_failures + stats.expired + stats.returned);
      CHECK(stats.total_handled() == m_attempts.load());
      m_pool = nullptr;
      pool.reset();
    }
    // Every id that was used has exactly one fate; the sum of the ids checks the same from the other side.
    std::uint64_t used_sum = 0;
    std::uint64_t settled_sum = 0;
    for (std::uint32_t id = 0; id < m_next_id.load() && id < m_config.requests; ++id) {
      used_sum += id;
      const int f = m_fates[id].load();
      CHECK(f != none);
      settled_sum += f != none ? id : 0;
    }
    CHECK(used_sum == settled_sum);
    CHECK(m_violations.load() == 0);
  }

 private:
  void settle(request& r, fate f) {
    if (!r) {
      m_violations.fetch_add(1);  // a request that arrives empty was moved from: lost
      return;
    }
    int expected = none;
    if (!m_fates[*r].compare_exchange_strong(expected, f)) {
      m_violations.fetch_add(1);  // a second fate: handled twice, or handled and returned
    }
  }

  std::uint64_t count(fate f) const {
    std::uint64_t n = 0;
    for (const auto& x : m_fates) {
      n += x.load() == f ? 1 : 0;
    }
    return n;
  }

  void handle(slot_context<request>& ctx, request& r) {
    const std::uint64_t attempt = m_attempts.fetch_add(1) + 1;
    if (!r) {
      m_violations.fetch_add(1);
      return;
    }
    if (attempt == m_config.stop_after && m_config.end != ending::destructor) {
      // Sometimes the shutdown comes from a handler, mid-stream.
      if (mix(m_config.seed + 11) % 2 == 0) {
        for (request& back : ctx.pool().shutdown_now()) {
          settle(back, returned);
        }
      } else {
        ctx.pool().shutdown();
      }
    }
    const std::uint64_t h = mix(m_config.seed ^ (std::uint64_t{*r} << 8) ^ ctx.attempt());
    // Server 0 is flaky in most rounds (so it is ejected); everyone fails now and then.
    const bool flaky = ctx.slot().server == 0 && mix(m_config.seed) % 3 != 0;
    if (h % 23 == 0) {
      throw flowpool::permanent_error("bad request");
    }
    if ((flaky && h % 2 == 0) || h % 7 == 0) {
      throw std::runtime_error("attempt failed");
    }
    settle(r, succeeded);
  }

  void produce(unsigned producer) {
    for (;;) {
      const std::uint32_t id = m_next_id.fetch_add(1);
      if (id >= m_config.requests) {
        return;
      }
      auto r = std::make_unique<std::uint32_t>(id);
      const std::uint64_t h = mix(m_config.seed + id * 2 + producer);
      flowpool::queue_deadline deadline;
      if (h % 17 == 0) {
        deadline.at = std::chrono::steady_clock::now();  // expires unless a slot takes it at once
      }
      bool ok = false;
      switch (h % 3) {
        case 0:
          ok = m_pool->submit(std::move(r), deadline);
          break;
        case 1:
          ok = m_pool->submit_for(std::move(r), 1ms, deadline);
          break;
        default:
          ok = m_pool->try_submit(std::move(r), deadline);
          break;
      }
      if (!ok) {
        if (!r || *r != id) {
          m_violations.fetch_add(1);  // a refused submit must leave the request with the caller
          continue;
        }
        settle(r, refused);
      }
    }
  }

  void change_membership() {
    std::uint64_t step = 0;
    while (!m_stop.load() && step < 40) {
      const std::uint64_t h = mix(m_config.seed + 1000 + step++);
      try {
        if (h % 2 == 0) {
          (void)m_pool->add_server(1 + h % 2);
        } else {
          m_pool->drain_server(static_cast<std::size_t>(h >> 8) % m_pool->server_count());
        }
      } catch (const std::logic_error&) {  // after shutdown, or the last server: refused, nothing changed
      }
      for (int i = 0; i < 100 && !m_stop.load(); ++i) {
        std::this_thread::yield();  // spaces the changes out; not a synchronisation
      }
    }
  }

  const round_config m_config;
  std::vector<std::atomic<int>> m_fates;
  server_pool<request>* m_pool = nullptr;
  std::atomic<std::uint32_t> m_next_id{0};
  std::atomic<std::uint64_t> m_attempts{0};
  std::atomic<int> m_violations{0};
  std::atomic<bool> m_producers_done{false};
  std::atomic<bool> m_stop{false};
};

}  // namespace

TEST_SUITE("server_pool fleet stress") {
  TEST_CASE("random failures, ejections, add/drain and shutdowns: every request ends exactly once" *
            doctest::timeout(600)) {
    const auto until = std::chrono::steady_clock::now() + flowpool_test::stress_duration();
    std::uint64_t round = 0;
    do {
      const std::uint64_t seed = mix(round + 77);
      const round_config config{
          .servers = 1 + seed % 3,
          .slots = 1 + (seed >> 4) % 3,
          .capacity = std::array<std::size_t, 3>{1, 4, 64}[(seed >> 8) % 3],
          .max_attempts = 1 + (seed >> 12) % 4,
          .eject_after = (seed >> 16) % 4,
          .eject_for = std::chrono::milliseconds(1 + (seed >> 20) % 4),
          .budget = (seed >> 24) % 2 == 0,
          .requests = 300 + static_cast<std::uint32_t>((seed >> 28) % 700),
          .stop_after = 1 + (seed >> 40) % 1500,
          .end = static_cast<ending>((seed >> 50) % 3),
          .seed = seed,
      };
      CAPTURE(round);
      CAPTURE(config.servers);
      CAPTURE(config.slots);
      CAPTURE(config.capacity);
      CAPTURE(config.max_attempts);
      CAPTURE(config.eject_after);
      CAPTURE(config.requests);
      CAPTURE(config.stop_after);
      round_runner(config).run();
      ++round;
    } while (std::chrono::steady_clock::now() < until);
    MESSAGE("rounds: " << round);
  }
}
