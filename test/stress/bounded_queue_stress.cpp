// Stress tests for flowpool::bounded_queue (issue 6). Rounds of random shapes run until
// flowpool_test::stress_duration() has passed (FLOWPOOL_STRESS_SECONDS, default 2 s):
//   * producers and consumers using every put/get flavour on small queues (capacity 1 included),
//     with shutdown()/shutdown_now() at random points: every item ends exactly once (delivered,
//     handed back by shutdown_now, or refused with the item still in the producer's hands),
//     counted and checksummed, the task_done()/join() accounting ends at zero, every thread ends;
//   * timed waiters racing untimed ones on the same condition: a waiter that times out never
//     swallows the wake-up that another, untimed, waiter needs (getters, putters, joiners).
//   * "wait until done, then destroy at once" (issue 9, item 6): join() (released by task_done()
//     or shutdown_now()) or a get() that saw shutdown(), then delete, while the releasing call may
//     still be returning; ThreadSanitizer reports it if that call touches the queue afterwards.
// Each round's seed is printed on failure.
#include <doctest/doctest.h>

#include <flowpool/bounded_queue.hpp>

#include <test_support.hpp>

#include <atomic>
#include <barrier>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using flowpool::bounded_queue;
using clock_type = std::chrono::steady_clock;

// Heap-owning and move-only: ASan reports an item that is lost, freed twice or used after a move.
using item = std::unique_ptr<std::uint32_t>;

// Detect hangs; never used to order threads. A round normally takes milliseconds.
constexpr auto k_hang_limit = 20s;
constexpr auto k_round_limit = 60s;

template <class Pred>
bool eventually(Pred done, std::chrono::seconds limit = k_hang_limit) {
  const auto give_up = clock_type::now() + limit;
  while (!done()) {
    if (clock_type::now() >= give_up) {
      return done();
    }
    std::this_thread::yield();
  }
  return true;
}

// For a failure that leaves threads blocked beyond rescue: the report is printed, then the
// process ends instead of hanging until CTest's timeout.
[[noreturn]] void abort_stuck(const char* what) {
  std::cout.flush();
  std::fprintf(stderr, "FATAL: %s; threads stay blocked, aborting\n", what);
  std::abort();
}

// Counts threads that have ended; lets the test thread wait for all of them with a limit.
class completion {
 public:
  void arrive() {
    {
      const std::lock_guard lock(m_mutex);
      ++m_count;
    }
    m_cv.notify_all();
  }
  [[nodiscard]] bool wait_for(std::size_t count, std::chrono::seconds limit) {
    std::unique_lock lock(m_mutex);
    return m_cv.wait_for(lock, limit, [&] { return m_count >= count; });
  }

 private:
  std::mutex m_mutex;
  std::condition_variable m_cv;
  std::size_t m_count = 0;
};

std::uint32_t random_below(std::mt19937& rng, std::uint32_t bound) {
  return std::uniform_int_distribution<std::uint32_t>(0, bound - 1)(rng);
}

// ------------------------------------------------------------------------------------------------
// Conservation under random shutdowns
// ------------------------------------------------------------------------------------------------

enum class ending {
  graceful,                 // shutdown() mid-stream; consumers drain the rest
  immediate,                // shutdown_now() mid-stream
  graceful_then_immediate,  // shutdown(), then shutdown_now() while consumers still drain
  racing_immediate,         // two threads call shutdown_now() at once
  after_producers,          // shutdown() once every producer has finished
};
constexpr std::uint32_t k_endings = 5;

enum class put_kind { put, try_put, try_put_for, force_put };
enum class get_kind { get, try_get, try_get_for };

struct round_config {
  std::uint32_t seed;
  std::size_t capacity;
  std::uint32_t producers;
  std::uint32_t consumers;
  std::uint32_t per_producer;
  std::uint32_t stop_after;  // the controller acts once this many items were delivered
  ending end;
  std::uint32_t consumer_lag;  // yields per delivered item: > 0 keeps the queue full at shutdown
};

struct round_totals {
  std::uint64_t made = 0;
  std::uint64_t delivered = 0;
  std::uint64_t returned = 0;
  std::uint64_t refused = 0;
};

class conservation_round {
 public:
  explicit conservation_round(const round_config& config)
      : m_config(config),
        m_queue(config.capacity),
        m_fates(static_cast<std::size_t>(config.producers) * config.per_producer),
        m_made(config.producers, 0) {}

  round_totals run() {
    std::vector<std::thread> threads;
    threads.reserve(m_config.consumers + m_config.producers + 2);
    for (std::uint32_t c = 0; c < m_config.consumers; ++c) {
      threads.emplace_back([this, c] {
        consume(c);
        m_finished.arrive();
      });
    }
    for (std::uint32_t p = 0; p < m_config.producers; ++p) {
      threads.emplace_back([this, p] {
        produce(p);
        m_producers_finished.fetch_add(1);
        m_finished.arrive();
      });
    }
    threads.emplace_back([this] {
      control();
      m_finished.arrive();
    });
    threads.emplace_back([this] {
      join_once();
      m_finished.arrive();
    });
    if (!m_finished.wait_for(threads.size(), k_round_limit)) {
      std::cout << "round stuck: seed " << m_config.seed << ", capacity " << m_config.capacity << ", "
                << m_config.producers << " producers, " << m_config.consumers << " consumers, " << m_config.per_producer
                << " items each, ending " << static_cast<int>(m_config.end) << ", " << m_delivered.load()
                << " delivered, size " << m_queue.size() << ", unfinished " << m_queue.unfinished() << ", shut down "
                << m_queue.is_shut_down() << '\n';
      abort_stuck("a conservation round did not end");
    }
    for (std::thread& t : threads) {
      t.join();
    }
    return check();
  }

 private:
  [[nodiscard]] bool producers_done() const noexcept { return m_producers_finished.load() == m_config.producers; }

  void produce(std::uint32_t p) {
    std::mt19937 rng(m_config.seed * 31U + p);
    for (std::uint32_t i = 0; i < m_config.per_producer; ++i) {
      const std::uint32_t id = p * m_config.per_producer + i;
      item it = std::make_unique<std::uint32_t>(id);
      ++m_made[p];
      const auto kind = static_cast<put_kind>(random_below(rng, 20) == 0 ? 3 : random_below(rng, 3));
      bool accepted = false;
      while (true) {
        switch (kind) {
          case put_kind::put:
            accepted = m_queue.put(std::move(it));
            break;
          case put_kind::try_put:
            accepted = m_queue.try_put(std::move(it));
            break;
          case put_kind::try_put_for:
            accepted = m_queue.try_put_for(std::move(it), std::chrono::microseconds(random_below(rng, 200)));
            break;
          case put_kind::force_put:
            m_forced.store(true);
            accepted = m_queue.force_put(std::move(it));
            break;
        }
        if (accepted) {
          break;
        }
        // A failed put must leave the item with the caller, not moved from.
        if (it == nullptr || *it != id) {  // NOLINT(bugprone-use-after-move)
          m_violations.fetch_add(1);
          return;
        }
        if (m_queue.is_shut_down()) {
          break;  // refused
        }
        std::this_thread::yield();  // full: try again
      }
      if (!accepted) {
        end_of(id);
        m_refused.fetch_add(1);
        return;  // every later put would be refused too
      }
    }
  }

  void consume(std::uint32_t c) {
    std::mt19937 rng(m_config.seed * 17U + c);
    const auto kind = static_cast<get_kind>(random_below(rng, 3));
    const auto timeout = std::chrono::microseconds(random_below(rng, 100));
    while (true) {
      std::optional<item> got;
      switch (kind) {
        case get_kind::get:
          got = m_queue.get();
          if (!got) {
            return;  // only once shut down and empty
          }
          break;
        case get_kind::try_get:
          got = m_queue.try_get();
          break;
        case get_kind::try_get_for:
          got = m_queue.try_get_for(timeout);
          break;
      }
      if (got) {
        deliver(std::move(*got));
      } else if (m_queue.is_shut_down() && m_queue.empty()) {
        return;  // after shutdown no put succeeds, so empty stays empty
      } else if (kind == get_kind::try_get) {
        std::this_thread::yield();
      }
    }
  }

  void deliver(item it) {
    if (it == nullptr || *it >= m_fates.size()) {
      m_violations.fetch_add(1);
      return;
    }
    end_of(*it);
    for (std::uint32_t i = 0; i < m_config.consumer_lag; ++i) {
      std::this_thread::yield();
    }
    m_delivered.fetch_add(1);
    try {
      m_queue.task_done();
    } catch (const std::logic_error&) {
      m_violations.fetch_add(1);  // more task_done() than puts: the accounting is broken
    }
  }

  void take_back(const std::vector<item>& removed) {
    for (const item& it : removed) {
      if (it == nullptr || *it >= m_fates.size()) {
        m_violations.fetch_add(1);
        continue;
      }
      end_of(*it);
      m_returned.fetch_add(1);
    }
  }

  void end_of(std::uint32_t id) { m_fates[id].fetch_add(1, std::memory_order_relaxed); }  // read after join()

  void control() {
    if (!eventually([this] { return m_delivered.load() >= m_config.stop_after || producers_done(); })) {
      m_stalls.fetch_add(1);
    }
    switch (m_config.end) {
      case ending::graceful:
        m_queue.shutdown();
        break;
      case ending::immediate:
        take_back(m_queue.shutdown_now());
        break;
      case ending::graceful_then_immediate: {
        m_queue.shutdown();
        const std::uint64_t seen = m_delivered.load();
        (void)eventually([&] { return m_delivered.load() > seen + 2 || m_queue.empty(); });
        take_back(m_queue.shutdown_now());
        break;
      }
      case ending::racing_immediate: {
        std::thread other([this] { take_back(m_queue.shutdown_now()); });
        take_back(m_queue.shutdown_now());
        other.join();
        break;
      }
      case ending::after_producers:
        if (!eventually([this] { return producers_done(); })) {
          m_stalls.fetch_add(1);
        }
        m_queue.shutdown();
        break;
    }
  }

  // A joiner must always come back: consumers mark every delivered item done and shutdown_now
  // counts every removed item as done, so the count reaches zero at the latest when the round ends.
  void join_once() {
    (void)eventually([this] { return m_delivered.load() > 0 || producers_done(); });
    m_queue.join();
  }

  round_totals check() {
    INFO("seed " << m_config.seed << ", capacity " << m_config.capacity << ", " << m_config.producers << " producers, "
                 << m_config.consumers << " consumers, " << m_config.per_producer << " items each, ending "
                 << static_cast<int>(m_config.end) << ", consumer lag " << m_config.consumer_lag);
    round_totals totals;
    std::uint64_t wrong = 0;
    for (std::uint32_t p = 0; p < m_config.producers; ++p) {
      totals.made += m_made[p];
      for (std::uint32_t i = 0; i < m_config.per_producer; ++i) {
        const int expected = i < m_made[p] ? 1 : 0;
        wrong += m_fates[p * m_config.per_producer + i].load() != expected ? 1U : 0U;
      }
    }
    totals.delivered = m_delivered.load();
    totals.returned = m_returned.load();
    totals.refused = m_refused.load();
    CHECK(m_violations.load() == 0);
    CHECK(m_stalls.load() == 0);
    CHECK(wrong == 0);  // each made item ended exactly once; nothing invented
    CHECK(totals.delivered + totals.returned + totals.refused == totals.made);
    CHECK(m_queue.is_shut_down());
    CHECK(m_queue.empty());
    CHECK(m_queue.unfinished() == 0);
    CHECK(m_queue.join_for(0s));
    CHECK(m_queue.get() == std::nullopt);
    if (!m_forced.load()) {
      CHECK(m_queue.high_water_mark() <= m_config.capacity);  // blocked producers never overfill it
    }
    return totals;
  }

  const round_config m_config;
  bounded_queue<item> m_queue;
  std::vector<std::atomic<std::uint8_t>> m_fates;  // how many ways each item ended
  std::vector<std::uint32_t> m_made;               // items each producer created (written by it only)
  std::atomic<std::uint64_t> m_delivered{0};
  std::atomic<std::uint64_t> m_returned{0};
  std::atomic<std::uint64_t> m_refused{0};
  std::atomic<std::uint64_t> m_violations{0};
  std::atomic<std::uint64_t> m_stalls{0};
  std::atomic<std::uint32_t> m_producers_finished{0};
  std::atomic<bool> m_forced{false};  // some producer used force_put, which may exceed the capacity
  completion m_finished;              // threads of this round that have ended
};

round_config random_round(std::mt19937& rng) {
  static constexpr std::size_t k_small[] = {1, 1, 2, 3, 4, 7, 16};
  round_config config{};
  config.seed = static_cast<std::uint32_t>(rng());
  config.capacity = random_below(rng, 4) == 0 ? 1 + random_below(rng, 256) : k_small[random_below(rng, 7)];
  config.producers = 1 + random_below(rng, 4);
  config.consumers = 1 + random_below(rng, 4);
  config.per_producer = 1 + random_below(rng, 1500);
  config.stop_after = random_below(rng, config.producers * config.per_producer + 1);
  config.end = static_cast<ending>(random_below(rng, k_endings));
  config.consumer_lag = random_below(rng, 2) == 0 ? 0 : 1 + random_below(rng, 20);
  return config;
}

// ------------------------------------------------------------------------------------------------
// Timed waiters beside untimed ones
// ------------------------------------------------------------------------------------------------

// One round: `timed` threads each make one timed call per step, with a tiny timeout that expires
// around the moment the test thread changes the state; an untimed thread waits for the same
// change. The change must reach the untimed thread (or be consumed by a timed one): a timed-out
// waiter that swallowed the notify would leave it asleep, and the step's wait fails.
enum class waiter_side { getters, putters, joiners };

struct lost_wakeup_round {
  waiter_side side;
  std::uint32_t timed;
  std::uint32_t steps;
  std::uint32_t max_timeout_us;
  std::uint32_t max_jitter;
  std::uint32_t seed;
};

bool run_lost_wakeup_round(const lost_wakeup_round& round) {
  INFO("seed " << round.seed << ", side " << static_cast<int>(round.side) << ", " << round.timed << " timed waiters");
  const std::uint32_t capacity = round.side == waiter_side::putters ? 1 : 1024;
  bounded_queue<std::uint32_t> q(capacity);
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> progress{0};  // items received / puts completed / joins returned
  const std::ptrdiff_t start_parties =
      static_cast<std::ptrdiff_t>(round.timed) + 1 + (round.side == waiter_side::joiners ? 1 : 0);
  std::barrier step_start(start_parties);
  std::barrier step_end(static_cast<std::ptrdiff_t>(round.timed) + 1);

  if (round.side == waiter_side::putters) {
    REQUIRE(q.put(0));  // full from the start: the untimed putter blocks at once
  }
  std::atomic<bool> untimed_done{false};
  std::thread untimed([&] {
    switch (round.side) {
      case waiter_side::getters:
        while (q.get()) {
          progress.fetch_add(1);
        }
        break;
      case waiter_side::putters:
        for (std::uint32_t next = 1; q.put(next); ++next) {
          progress.fetch_add(1);
        }
        break;
      case waiter_side::joiners:
        while (true) {
          step_start.arrive_and_wait();
          if (stop.load()) {
            return;
          }
          q.join();
          progress.fetch_add(1);
        }
    }
    untimed_done.store(true);
  });
  std::vector<std::thread> timed;
  timed.reserve(round.timed);
  for (std::uint32_t t = 0; t < round.timed; ++t) {
    timed.emplace_back([&, t] {
      std::mt19937 rng(round.seed + t);
      while (true) {
        step_start.arrive_and_wait();
        if (stop.load()) {
          return;
        }
        const auto timeout = std::chrono::microseconds(random_below(rng, round.max_timeout_us + 1));
        switch (round.side) {
          case waiter_side::getters:
            if (q.try_get_for(timeout)) {
              progress.fetch_add(1);
            }
            break;
          case waiter_side::putters:
            if (q.try_put_for(1000000U + t, timeout)) {
              progress.fetch_add(1);
            }
            break;
          case waiter_side::joiners:
            (void)q.join_for(timeout);
            break;
        }
        step_end.arrive_and_wait();
      }
    });
  }

  std::mt19937 rng(round.seed);
  bool ok = true;
  for (std::uint32_t step = 0; step < round.steps && ok; ++step) {
    if (round.side == waiter_side::joiners) {
      REQUIRE(q.put(step));  // one unfinished item for the joiners to wait on
      REQUIRE(q.get().has_value());
    }
    const std::uint64_t before = progress.load();
    step_start.arrive_and_wait();
    for (std::uint32_t spin = random_below(rng, round.max_jitter + 1); spin != 0; --spin) {
      std::this_thread::yield();  // vary where the change lands relative to the timeouts
    }
    switch (round.side) {
      case waiter_side::getters:
        REQUIRE(q.put(step));
        break;
      case waiter_side::putters:
        REQUIRE(q.get().has_value());  // makes room for exactly one put
        break;
      case waiter_side::joiners:
        q.task_done();
        break;
    }
    step_end.arrive_and_wait();
    switch (round.side) {
      case waiter_side::getters:
        ok = eventually([&] { return progress.load() == before + 1; });
        break;
      case waiter_side::putters:
        ok = eventually([&] { return q.full(); });  // someone filled the room again
        break;
      case waiter_side::joiners:
        ok = eventually([&] { return progress.load() == before + 1; });  // the untimed joiner returned
        break;
    }
    if (!ok) {
      FAIL_CHECK("step " << step << ": the change never reached the untimed waiter (size " << q.size()
                         << ", unfinished " << q.unfinished() << ")");
    }
  }
  stop.store(true);
  q.shutdown();
  if (!ok && (round.side == waiter_side::joiners || !eventually([&] { return untimed_done.load(); }))) {
    abort_stuck("lost wake-up: the untimed waiter cannot be released");
  }
  step_start.arrive_and_wait();  // releases the timed threads (and the joiner) to see `stop`
  for (std::thread& t : timed) {
    t.join();
  }
  untimed.join();
  return ok;
}

// ------------------------------------------------------------------------------------------------
// Wait until done, then destroy at once (issue 9, item 6)
// ------------------------------------------------------------------------------------------------

// How the waiter in one round learns that it may destroy the queue.
enum class release_by {
  task_done,     // main puts, consumer threads get + task_done; main's join() returns
  shutdown_now,  // a holder thread keeps one item; a closer's shutdown_now() removes the rest; main's join() returns
  shutdown,      // a consumer thread drains until get() returns nullopt after a closer's shutdown()
};

void yield_times(std::uint32_t n) {
  for (std::uint32_t i = 0; i < n; ++i) {
    std::this_thread::yield();
  }
}

// One round: a heap queue, the threads of `kind`, and a waiter that deletes the queue the moment
// its wait ends, while the thread whose task_done(), shutdown_now() or shutdown() ended the wait
// may not have returned from that call yet. Every other thread's calls have returned by then (the
// contract: see bounded_queue's Lifetime paragraph): consumers claim their gets first, so exactly
// `items` gets are made and join() can return only after the last of them. Before the fix the
// releaser notified after its unlock and so touched the freed condition variable:
// ThreadSanitizer reports that race. Returns the number of items the consumers received.
std::uint64_t run_destroy_round(release_by kind, std::mt19937& rng) {
  // At least 2 for shutdown_now: the holder keeps one, so join() cannot return before
  // shutdown_now() has removed the rest (the closer's call has started by then).
  const std::uint32_t items = (kind == release_by::shutdown_now ? 2 : 1) + random_below(rng, 8);
  const std::uint32_t consumers = 1 + random_below(rng, 3);
  const std::uint32_t lag = random_below(rng, 20);  // consumer yields per item: main often sleeps in join()
  const std::uint32_t closer_yields = random_below(rng, 50);
  std::atomic<std::uint64_t> received{0};
  std::atomic<std::uint32_t> claimed{0};
  std::atomic<bool> holding{false};
  std::atomic<bool> drained{false};
  std::vector<std::thread> threads;
  auto q = std::make_unique<bounded_queue<item>>(kind == release_by::task_done ? 1 + random_below(rng, 4) : items);
  bounded_queue<item>* queue = q.get();
  switch (kind) {
    case release_by::task_done:
      for (std::uint32_t c = 0; c < consumers; ++c) {
        threads.emplace_back([&, queue] {
          while (claimed.fetch_add(1) < items) {  // after the last task_done(), no more calls
            const item got = queue->get().value_or(nullptr);
            if (got == nullptr) {
              FAIL_CHECK("a claimed get() returned nothing");
              return;
            }
            received.fetch_add(*got);
            yield_times(lag);
            queue->task_done();
          }
        });
      }
      for (std::uint32_t i = 0; i < items; ++i) {
        CHECK(queue->put(std::make_unique<std::uint32_t>(1)));  // blocks while full (capacity 1-4)
      }
      queue->join();
      break;
    case release_by::shutdown_now:
      for (std::uint32_t i = 0; i < items; ++i) {
        CHECK(queue->put(std::make_unique<std::uint32_t>(1)));
      }
      threads.emplace_back([&, queue] {
        const item got = queue->get().value_or(nullptr);
        if (got == nullptr) {
          FAIL_CHECK("the holder's get() returned nothing");
          return;  // then main reports that the holder never got its item
        }
        received.fetch_add(*got);
        holding.store(true, std::memory_order_release);  // pairs with: the acquire load below
        yield_times(lag);
        queue->task_done();  // before or after shutdown_now(): either may be what releases join()
      });
      // The holder's get() has returned before the closer starts (so it gets an item, and before
      // the delete); only its task_done() may still be running when join() returns.
      if (!eventually([&] { return holding.load(std::memory_order_acquire); })) {
        abort_stuck("the holder never got its item");
      }
      threads.emplace_back([queue, closer_yields] {
        yield_times(closer_yields);
        (void)queue->shutdown_now();
      });
      queue->join();
      break;
    case release_by::shutdown:
      for (std::uint32_t i = 0; i < items; ++i) {
        CHECK(queue->put(std::make_unique<std::uint32_t>(1)));
      }
      threads.emplace_back([&, queue] {
        while (const item got = queue->get().value_or(nullptr)) {
          received.fetch_add(*got);
        }
        drained.store(true, std::memory_order_release);  // pairs with: the acquire load below
      });
      threads.emplace_back([queue, closer_yields] {
        yield_times(closer_yields);
        queue->shutdown();
      });
      if (!eventually([&] { return drained.load(std::memory_order_acquire); })) {
        abort_stuck("the consumer never saw the shutdown");
      }
      break;
  }
  q.reset();  // at once: the releasing thread may not have returned from its call yet
  for (std::thread& t : threads) {
    t.join();
  }
  CHECK(received.load() == (kind == release_by::shutdown_now ? 1 : items));
  return received.load();
}

// Issue 9, item 6: rounds of run_destroy_round until a round count or stress_duration() is reached.
void run_destroy_rounds(release_by kind) {
  constexpr std::uint64_t k_max_rounds = 20000;
  const auto until = clock_type::now() + flowpool_test::stress_duration();
  std::mt19937 rng(std::random_device{}());
  std::uint64_t rounds = 0;
  std::uint64_t received = 0;
  do {
    received += run_destroy_round(kind, rng);
    ++rounds;
  } while (rounds < k_max_rounds && clock_type::now() < until);
  MESSAGE(rounds << " rounds, " << received << " items received");
}

}  // namespace

TEST_SUITE("bounded_queue stress") {
  TEST_CASE("random producers, consumers and shutdown points: every item ends exactly once" * doctest::timeout(600)) {
    const auto until = clock_type::now() + flowpool_test::stress_duration();
    std::mt19937 rng(std::random_device{}());
    round_totals all;
    std::uint64_t rounds = 0;
    std::uint64_t capacity_one = 0;
    do {
      round_config config = random_round(rng);
      capacity_one += config.capacity == 1 ? 1U : 0U;
      conservation_round round(config);
      const round_totals totals = round.run();
      all.made += totals.made;
      all.delivered += totals.delivered;
      all.returned += totals.returned;
      all.refused += totals.refused;
      ++rounds;
    } while (clock_type::now() < until);
    MESSAGE(rounds << " rounds (" << capacity_one << " with capacity 1): " << all.made << " items made, "
                   << all.delivered << " delivered, " << all.returned << " returned by shutdown_now, " << all.refused
                   << " refused");
    CHECK(all.delivered + all.returned + all.refused == all.made);
  }

  TEST_CASE("timed waiters never swallow the wake-up an untimed waiter needs" * doctest::timeout(600)) {
    const auto until = clock_type::now() + flowpool_test::stress_duration();
    std::mt19937 rng(std::random_device{}());
    std::uint64_t rounds = 0;
    std::uint64_t steps = 0;
    bool ok = true;
    do {
      lost_wakeup_round round{};
      round.side = static_cast<waiter_side>(random_below(rng, 3));
      round.timed = 1 + random_below(rng, 4);
      round.steps = 20 + random_below(rng, 80);
      round.max_timeout_us = 1 + random_below(rng, 100);
      round.max_jitter = random_below(rng, 60);
      round.seed = static_cast<std::uint32_t>(rng());
      ok = run_lost_wakeup_round(round);
      ++rounds;
      steps += round.steps;
    } while (ok && clock_type::now() < until);
    MESSAGE(rounds << " rounds, " << steps << " steps");
    CHECK(ok);
  }

  TEST_CASE("join() then delete at once is safe while the last task_done() is still returning" *
            doctest::timeout(600)) {
    run_destroy_rounds(release_by::task_done);
  }

  TEST_CASE("join() then delete at once is safe while the releasing shutdown_now() is still returning" *
            doctest::timeout(600)) {
    run_destroy_rounds(release_by::shutdown_now);
  }

  TEST_CASE("get() sees the shutdown, then delete at once is safe while shutdown() is still returning" *
            doctest::timeout(600)) {
    run_destroy_rounds(release_by::shutdown);
  }
}
