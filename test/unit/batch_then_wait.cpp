// The batch-then-wait baseline of bench/scenario (issue 3): its comparison with server_pool means
// something only if it is correct and really is batch-then-wait.
#include <doctest/doctest.h>

#include "batch_then_wait.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <thread>
#include <vector>

namespace {

using flowpool_bench::batch_slot;
using flowpool_bench::batch_then_wait;
using flowpool_bench::batch_then_wait_options;

struct item {
  std::size_t id = 0;
};

// What the handler saw for one request. Tickets come from one seq_cst counter, so their order is
// consistent with happens-before: a ticket taken after another thread's ticket became visible is
// larger. (No clock: a test must not depend on timing.)
struct trace {
  std::atomic<int> served{0};
  batch_slot where{};
  std::uint64_t start_ticket = 0;
  std::uint64_t end_ticket = 0;
  int in_flight_at_start = 0;
};

// Runs a stream of `budget` requests (an initial burst, then one follow-up per served request)
// through a batch_then_wait of servers x slots with a small queue, and records every request.
struct stream_run {
  std::size_t servers;
  std::size_t slots;
  std::size_t burst;
  std::size_t budget;
  std::vector<trace> traces;
  std::vector<std::atomic<int>> in_flight;
  std::atomic<std::uint64_t> ticket{0};
  std::atomic<std::size_t> next_id;
  std::atomic<int> refused{0};

  stream_run(std::size_t s, std::size_t k, std::size_t b, std::size_t n)
      : servers(s), slots(k), burst(b), budget(n), traces(n), in_flight(s), next_id(b) {}

  void run() {
    batch_then_wait<item>* self = nullptr;
    {
      batch_then_wait<item> pool{
          batch_then_wait_options{.servers = servers, .slots_per_server = slots, .queue_capacity = 4},
          [&](batch_slot where, item& r) {
            trace& t = traces.at(r.id);
            t.served.fetch_add(1);
            t.where = where;
            t.in_flight_at_start = in_flight[where.server].fetch_add(1) + 1;
            t.start_ticket = ticket.fetch_add(1);
            // Near-zero, uneven service times, so batch-mates finish apart.
            std::this_thread::sleep_for(std::chrono::microseconds(r.id % 4 * 20));
            const std::size_t next = next_id.fetch_add(1);
            if (next < budget && !self->submit(item{next})) {  // from a handler: never blocks
              refused.fetch_add(1);
            }
            t.end_ticket = ticket.fetch_add(1);
            in_flight[where.server].fetch_sub(1);
          }};
      self = &pool;
      for (std::size_t id = 0; id < burst; ++id) {
        REQUIRE(pool.submit(item{id}));  // capacity 4 < burst: the outside producer meets backpressure
      }
      pool.join();
      CHECK(pool.failed() == 0);
    }  // the destructor shuts the queue down and joins the slot threads
  }
};

}  // namespace

TEST_SUITE("batch_then_wait") {
  TEST_CASE("every request, follow-ups included, is handled exactly once and the run ends" * doctest::timeout(60)) {
    stream_run r(3, 2, 10, 400);
    r.run();
    CHECK(r.refused.load() == 0);
    for (std::size_t id = 0; id < r.budget; ++id) {
      CHECK_MESSAGE(r.traces[id].served.load() == 1, "request ", id);
    }
    CHECK(r.next_id.load() >= r.budget);
  }

  TEST_CASE("never more than K requests of one server are in flight" * doctest::timeout(60)) {
    stream_run r(2, 3, 12, 300);
    r.run();
    for (const trace& t : r.traces) {
      REQUIRE(t.served.load() == 1);
      CHECK(t.in_flight_at_start >= 1);
      CHECK(t.in_flight_at_start <= 3);
      CHECK(t.where.server < 2);
      CHECK(t.where.slot < 3);
    }
  }

  TEST_CASE("a server starts a batch only after every request of its previous batch finished" * doctest::timeout(60)) {
    constexpr std::size_t k_servers = 3;
    constexpr std::size_t k_slots = 2;
    stream_run r(k_servers, k_slots, 8, 400);
    r.run();
    // server -> batch number -> (first start, last end, slots used)
    struct batch_span {
      std::uint64_t first_start = UINT64_MAX;
      std::uint64_t last_end = 0;
      std::vector<std::size_t> slots;
    };
    std::vector<std::map<std::uint64_t, batch_span>> batches(k_servers);
    for (const trace& t : r.traces) {
      REQUIRE(t.served.load() == 1);
      batch_span& b = batches[t.where.server][t.where.batch];
      b.first_start = std::min(b.first_start, t.start_ticket);
      b.last_end = std::max(b.last_end, t.end_ticket);
      b.slots.push_back(t.where.slot);
    }
    for (std::size_t s = 0; s < k_servers; ++s) {
      std::uint64_t expected_number = 1;
      const batch_span* previous = nullptr;
      for (auto& entry : batches[s]) {
        const std::uint64_t number = entry.first;
        batch_span& b = entry.second;
        CHECK(number == expected_number);  // batches of a server are numbered 1, 2, 3, ...
        ++expected_number;
        CHECK(b.slots.size() <= k_slots);
        std::sort(b.slots.begin(), b.slots.end());
        CHECK(std::adjacent_find(b.slots.begin(), b.slots.end()) == b.slots.end());  // one request per slot
        if (previous != nullptr) {
          CHECK_MESSAGE(previous->last_end < b.first_start, "server ", s, " batch ", number);
        }
        previous = &b;
      }
    }
  }

  TEST_CASE("a partial batch runs when the queue holds fewer than K requests" * doctest::timeout(30)) {
    std::atomic<int> handled{0};
    batch_then_wait<item> pool{batch_then_wait_options{.servers = 1, .slots_per_server = 4},
                               [&](batch_slot, item&) { handled.fetch_add(1); }};
    REQUIRE(pool.submit(item{0}));
    pool.join();
    CHECK(handled.load() == 1);
  }

  TEST_CASE("a throwing handler counts as failed and its slot keeps serving" * doctest::timeout(30)) {
    std::atomic<int> handled{0};
    batch_then_wait<item> pool{batch_then_wait_options{.servers = 1, .slots_per_server = 2}, [&](batch_slot, item& r) {
                                 handled.fetch_add(1);
                                 if (r.id % 2 == 0) {
                                   throw std::runtime_error("boom");
                                 }
                               }};
    for (std::size_t id = 0; id < 20; ++id) {
      REQUIRE(pool.submit(item{id}));
    }
    pool.join();
    CHECK(handled.load() == 20);
    CHECK(pool.failed() == 10);
  }

  TEST_CASE("destruction serves what was accepted; submit after shutdown is refused" * doctest::timeout(30)) {
    std::atomic<int> handled{0};
    {
      batch_then_wait<item> pool{batch_then_wait_options{.servers = 2, .slots_per_server = 2},
                                 [&](batch_slot, item&) { handled.fetch_add(1); }};
      for (std::size_t id = 0; id < 50; ++id) {
        REQUIRE(pool.submit(item{id}));
      }
      pool.shutdown();
      CHECK_FALSE(pool.submit(item{99}));
    }
    CHECK(handled.load() == 50);
  }

  TEST_CASE("zero servers, slots or capacity are rejected with std::invalid_argument") {
    auto noop = [](batch_slot, item&) {};
    CHECK_THROWS_AS(batch_then_wait<item>(batch_then_wait_options{.servers = 0}, noop), std::invalid_argument);
    CHECK_THROWS_AS(batch_then_wait<item>(batch_then_wait_options{.slots_per_server = 0}, noop), std::invalid_argument);
    CHECK_THROWS_AS(batch_then_wait<item>(batch_then_wait_options{.queue_capacity = 0}, noop), std::invalid_argument);
  }
}
