// Contract tests for flowpool::parallel_for (issue 4): every index once, any integer index type,
// empty and edge ranges, nesting, exceptions; with 1, 2 and 8 worker threads.
#include "pool_test_util.hpp"

#include <doctest/doctest.h>

#include <flowpool/parallel_for.hpp>
#include <flowpool/thread_pool.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <future>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

using flowpool::parallel_for;
using flowpool::pool_options;
using flowpool::thread_pool;
using flowpool_test::k_thread_counts;

namespace {

// Distance from `first` to `i`, computed without overflow for any integer type.
template <class Index>
std::size_t offset(Index first, Index i) {
  if constexpr (std::is_signed_v<Index>) {
    return static_cast<std::size_t>(static_cast<std::intmax_t>(i) - static_cast<std::intmax_t>(first));
  } else {
    return static_cast<std::size_t>(static_cast<std::uintmax_t>(i) - static_cast<std::uintmax_t>(first));
  }
}

// Runs parallel_for over [first, last) and checks that every index was visited exactly once,
// with the index type the caller used, and nothing outside the range.
template <class Index>
void check_each_index_once(thread_pool& pool, Index first, Index last) {
  CAPTURE(first);
  CAPTURE(last);
  const std::size_t size = last > first ? offset(first, last) : 0;
  auto counts = std::make_unique<std::atomic<int>[]>(size);
  std::atomic<int> outside{0};
  parallel_for(pool, first, last, [&](auto i) {
    static_assert(std::is_same_v<decltype(i), Index>, "the body receives the caller's index type");
    if (i < first || !(i < last)) {
      outside.fetch_add(1, std::memory_order_relaxed);  // relaxed: read after parallel_for returns
      return;
    }
    counts[offset(first, i)].fetch_add(1, std::memory_order_relaxed);  // relaxed: as above
  });
  CHECK(outside.load() == 0);
  std::size_t wrong = 0;
  for (std::size_t k = 0; k < size; ++k) {
    if (counts[k].load() != 1) {
      ++wrong;
    }
  }
  CHECK(wrong == 0);
}

}  // namespace

TEST_SUITE("parallel_for") {
  TEST_CASE("every index in [first, last) is visited exactly once" * doctest::timeout(60)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      for (const int size : {1, 2, 3, 7, 64, 1000, 100003}) {
        check_each_index_once(pool, 0, size);
        check_each_index_once(pool, 5, 5 + size);
      }
    }
  }

  TEST_CASE("an empty range calls the body zero times" * doctest::timeout(30)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      std::atomic<int> calls{0};
      parallel_for(pool, 0, 0, [&calls](int) { calls.fetch_add(1); });
      parallel_for(pool, 17, 17, [&calls](int) { calls.fetch_add(1); });
      parallel_for(pool, std::size_t{0}, std::size_t{0}, [&calls](std::size_t) { calls.fetch_add(1); });
      CHECK(calls.load() == 0);
    }
  }

  TEST_CASE("a reversed range (first > last) is empty and calls the body zero times" * doctest::timeout(30)) {
    thread_pool pool{pool_options{.threads = 2}};
    std::atomic<int> calls{0};
    parallel_for(pool, 10, 0, [&calls](int) { calls.fetch_add(1); });
    parallel_for(pool, 5, -5, [&calls](int) { calls.fetch_add(1); });
    parallel_for(pool, std::size_t{100}, std::size_t{1}, [&calls](std::size_t) { calls.fetch_add(1); });
    parallel_for(pool, std::numeric_limits<int>::max(), std::numeric_limits<int>::min(),
                 [&calls](int) { calls.fetch_add(1); });
    CHECK(calls.load() == 0);
  }

  TEST_CASE("signed, unsigned and size_t indices, including negative ranges, work" * doctest::timeout(30)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      check_each_index_once(pool, -500, 500);
      check_each_index_once(pool, -1000L, -10L);
      check_each_index_once(pool, 3U, 2000U);
      check_each_index_once(pool, std::size_t{0}, std::size_t{4097});
      check_each_index_once(pool, std::int64_t{-3000}, std::int64_t{3000});
      check_each_index_once(pool, std::uint16_t{10}, std::uint16_t{60000});
      check_each_index_once(pool, std::int8_t{-128}, std::int8_t{127});
      check_each_index_once(pool, std::uint8_t{0}, std::uint8_t{255});
      check_each_index_once(pool, static_cast<short>(-300), static_cast<short>(300));
    }
  }

  TEST_CASE("ranges at the edges of the index type neither overflow nor miss an index" * doctest::timeout(30)) {
    thread_pool pool{pool_options{.threads = 2}};
    constexpr int k_int_max = std::numeric_limits<int>::max();
    constexpr int k_int_min = std::numeric_limits<int>::min();
    check_each_index_once(pool, k_int_max - 5000, k_int_max);
    check_each_index_once(pool, k_int_min, k_int_min + 5000);
    check_each_index_once(pool, std::numeric_limits<unsigned>::max() - 5000U, std::numeric_limits<unsigned>::max());
    check_each_index_once(pool, std::numeric_limits<std::size_t>::max() - 5000,
                          std::numeric_limits<std::size_t>::max());
    check_each_index_once(pool, std::numeric_limits<std::int64_t>::min(),
                          std::numeric_limits<std::int64_t>::min() + 5000);
    check_each_index_once(pool, std::numeric_limits<std::int64_t>::max() - 5000,
                          std::numeric_limits<std::int64_t>::max());
  }

  TEST_CASE("a large range is covered exactly, and the body's plain writes are visible after return" *
            doctest::timeout(60)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      constexpr std::size_t k_size = std::size_t{1} << 21U;
      std::vector<std::uint8_t> seen(k_size, 0);  // non-atomic: each index written once by the body
      parallel_for(pool, std::size_t{0}, k_size,
                   [&seen](std::size_t i) { seen[i] = static_cast<std::uint8_t>(seen[i] + 1); });
      std::size_t wrong = 0;
      for (const std::uint8_t s : seen) {
        wrong += s != 1 ? 1 : 0;
      }
      CHECK(wrong == 0);
    }
  }

  TEST_CASE("parallel_for nests inside a task and inside another parallel_for" * doctest::timeout(60)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      constexpr int k_outer = 40;
      constexpr int k_inner = 50;
      std::vector<std::atomic<int>> counts(static_cast<std::size_t>(k_outer * k_inner));
      auto nested = [&] {
        parallel_for(pool, 0, k_outer, [&](int i) {
          parallel_for(pool, 0, k_inner, [&](int j) {
            counts[static_cast<std::size_t>(i) * k_inner + static_cast<std::size_t>(j)].fetch_add(1);
          });
        });
      };
      pool.submit(nested).get();  // from a worker
      nested();                   // from outside the pool
      std::size_t wrong = 0;
      for (auto& c : counts) {
        wrong += c.load() != 2 ? 1 : 0;
      }
      CHECK(wrong == 0);
    }
  }

  TEST_CASE("several external threads run parallel_for on one pool at once" * doctest::timeout(60)) {
    thread_pool pool{pool_options{.threads = 2, .queue_capacity = 4}};
    constexpr int k_callers = 4;
    std::vector<long long> sums(k_callers, 0);
    std::vector<std::thread> callers;
    callers.reserve(k_callers);
    for (int c = 0; c < k_callers; ++c) {
      callers.emplace_back([&pool, &sums, c] {
        std::vector<long long> values(20000, 0);
        parallel_for(pool, 0, 20000, [&values, c](int i) { values[static_cast<std::size_t>(i)] = i + c; });
        long long sum = 0;
        for (const long long v : values) {
          sum += v;
        }
        sums[static_cast<std::size_t>(c)] = sum;
      });
    }
    for (auto& t : callers) {
      t.join();
    }
    for (int c = 0; c < k_callers; ++c) {
      CHECK(sums[static_cast<std::size_t>(c)] == 19999LL * 20000LL / 2 + 20000LL * c);
    }
  }

  TEST_CASE("an exception thrown by the body is rethrown by parallel_for, and the pool keeps working" *
            doctest::timeout(30)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      CHECK_THROWS_WITH_AS(parallel_for(pool, 0, 10000,
                                        [](int i) {
                                          if (i == 777) {
                                            throw std::runtime_error("index 777");
                                          }
                                        }),
                           "index 777", std::runtime_error);
      // Every index throws: still exactly one exception comes out, and nothing hangs.
      CHECK_THROWS_AS(parallel_for(pool, 0, 1000, [](int i) { throw i; }), int);
      // From a worker, too.
      std::future<bool> from_worker = pool.submit([&pool] {
        try {
          parallel_for(pool, 0, 500, [](int i) {
            if (i == 499) {
              throw std::logic_error("last");
            }
          });
        } catch (const std::logic_error&) {
          return true;
        }
        return false;
      });
      CHECK(from_worker.get());
      std::atomic<int> after{0};
      parallel_for(pool, 0, 100, [&after](int) { after.fetch_add(1); });
      CHECK(after.load() == 100);
      CHECK(pool.wait_idle_for(std::chrono::seconds(10)));
    }
  }

  TEST_CASE("parallel_for accepts lvalue, const and move-only bodies" * doctest::timeout(30)) {
    thread_pool pool{pool_options{.threads = 2}};
    std::atomic<int> calls{0};
    const auto const_body = [&calls](int) { calls.fetch_add(1); };
    parallel_for(pool, 0, 100, const_body);
    auto lvalue_body = [&calls](int) { calls.fetch_add(1); };
    parallel_for(pool, 0, 100, lvalue_body);
    parallel_for(pool, 0, 100, [&calls, owned = std::make_unique<int>(1)](int) { calls.fetch_add(*owned); });
    CHECK(calls.load() == 300);
  }
}
