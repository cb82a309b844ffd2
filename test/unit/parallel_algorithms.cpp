// Contract tests for parallel_for_blocked, parallel_reduce and parallel_invoke (issue 14), and
// for the mixed index types all the loops accept: empty, one-element and edge ranges, signed,
// unsigned and mixed indices, determinism of parallel_reduce, nesting, exceptions (first
// rethrown, the rest skipped), bad input; with 1, 2 and 8 worker threads.
#include "pool_test_util.hpp"

#include <doctest/doctest.h>

#include <flowpool/flowpool.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <future>
#include <latch>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

using flowpool::parallel_for;
using flowpool::parallel_for_blocked;
using flowpool::parallel_invoke;
using flowpool::parallel_reduce;
using flowpool::pool_options;
using flowpool::thread_pool;
using flowpool_test::k_thread_counts;

namespace {

// ---- Compile-time checks: which (first, last) pairs the loops accept. ----

struct any_index_body {
  template <class I>
  void operator()(I /*i*/) const {}
};
struct any_range_body {
  template <class I>
  void operator()(I /*b*/, I /*e*/) const {}
};
struct any_map {
  template <class I>
  int operator()(I /*i*/) const {
    return 1;
  }
};
struct int_plus {
  int operator()(int a, int b) const { return a + b; }
};

template <class First, class Last>
concept for_accepts = requires(thread_pool& pool, First first, Last last) {
  parallel_for(pool, first, last, any_index_body{});
  parallel_for_blocked(pool, first, last, any_range_body{});
  parallel_reduce(pool, first, last, 0, any_map{}, int_plus{});
};

// Same-type and mixed pairs compile; the loop runs in their common type.
static_assert(for_accepts<int, int>);
static_assert(for_accepts<int, std::size_t>);  // parallel_for(pool, 0, v.size(), body)
static_assert(for_accepts<std::size_t, int>);
static_assert(for_accepts<std::int8_t, int>);  // the whole int8 range: [-128, 128)
static_assert(for_accepts<std::uint8_t, std::int64_t>);
static_assert(for_accepts<char, unsigned>);
// bool and non-integral ends are rejected (constraint detail::loop_index_pair).
static_assert(!for_accepts<bool, int>);
static_assert(!for_accepts<int, bool>);
static_assert(!for_accepts<double, int>);
static_assert(!for_accepts<int, float>);
static_assert(!for_accepts<int*, int*>);

template <class... F>
concept invoke_accepts = requires(thread_pool& pool, F... f) {
  parallel_invoke(pool, f...);
};
static_assert(invoke_accepts<>);
static_assert(invoke_accepts<void (*)(), int (*)()>);
static_assert(!invoke_accepts<void (*)(int)>);  // needs an argument
static_assert(!invoke_accepts<int>);

// Distance from `first` to `i` for any integer types, without overflow.
template <class A, class B>
std::size_t distance(A first, B i) {
  if constexpr (std::is_signed_v<A> || std::is_signed_v<B>) {
    return static_cast<std::size_t>(static_cast<std::intmax_t>(i) - static_cast<std::intmax_t>(first));
  } else {
    return static_cast<std::size_t>(static_cast<std::uintmax_t>(i) - static_cast<std::uintmax_t>(first));
  }
}

// Runs parallel_for_blocked over [first, last) and checks that the pieces are non-empty, at most
// `grain` long (if non-zero), inside the range, and cover every index exactly once.
template <class First, class Last>
void check_blocked(thread_pool& pool, First first, Last last, std::common_type_t<First, Last> grain = 0) {
  using index = std::common_type_t<First, Last>;
  CAPTURE(first);
  CAPTURE(last);
  const std::size_t size = std::cmp_less(first, last) ? distance(first, last) : 0;
  auto counts = std::make_unique<std::atomic<int>[]>(size);
  std::atomic<int> bad_pieces{0};
  parallel_for_blocked(
      pool, first, last,
      [&](auto b, auto e) {
        static_assert(std::is_same_v<decltype(b), index>, "the body receives the common index type");
        // relaxed: every counter is read after parallel_for_blocked returned
        if (!(b < e) || std::cmp_less(b, first) || std::cmp_greater(e, last) ||
            (grain != 0 && distance(b, e) > static_cast<std::size_t>(grain))) {
          bad_pieces.fetch_add(1, std::memory_order_relaxed);
          return;
        }
        for (index i = b; i != e; ++i) {
          counts[distance(first, i)].fetch_add(1, std::memory_order_relaxed);
        }
      },
      grain);
  CHECK(bad_pieces.load() == 0);
  std::size_t wrong = 0;
  for (std::size_t k = 0; k < size; ++k) {
    wrong += counts[k].load() != 1 ? 1 : 0;
  }
  CHECK(wrong == 0);
}

// parallel_reduce of the offsets i - first over [first, last): n (n - 1) / 2, and every index
// inside the range.
template <class First, class Last>
void check_reduce_sum(thread_pool& pool, First first, Last last) {
  using index = std::common_type_t<First, Last>;
  CAPTURE(first);
  CAPTURE(last);
  const std::uint64_t n = std::cmp_less(first, last) ? distance(first, last) : 0;
  std::atomic<int> outside{0};
  const std::uint64_t sum = parallel_reduce(
      pool, first, last, std::uint64_t{0},
      [&](auto i) {
        static_assert(std::is_same_v<decltype(i), index>, "map receives the common index type");
        if (std::cmp_less(i, first) || !std::cmp_less(i, last)) {
          outside.fetch_add(1, std::memory_order_relaxed);  // relaxed: read after the return
        }
        return static_cast<std::uint64_t>(distance(first, i));
      },
      [](std::uint64_t a, std::uint64_t b) { return a + b; });
  CHECK(outside.load() == 0);
  CHECK(sum == (n == 0 ? 0 : n * (n - 1) / 2));
}

// A 2x2 matrix over the integers mod 2^64: the product is associative, not commutative.
struct mat2 {
  std::uint64_t a, b, c, d;
  friend bool operator==(const mat2&, const mat2&) = default;
};
mat2 operator*(const mat2& x, const mat2& y) {
  return {x.a * y.a + x.b * y.c, x.a * y.b + x.b * y.d, x.c * y.a + x.d * y.c, x.c * y.b + x.d * y.d};
}
mat2 matrix_for(std::uint64_t i) {
  return {1, i % 7, (i * 3) % 5, 1 + i % 3};
}
constexpr mat2 k_mat_identity{1, 0, 0, 1};

}  // namespace

TEST_SUITE("mixed index types") {
  TEST_CASE("parallel_for(pool, 0, v.size(), body) runs in std::size_t over the whole vector" * doctest::timeout(30)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      std::vector<std::atomic<int>> seen(5000);
      parallel_for(pool, 0, seen.size(), [&seen](auto i) {
        static_assert(std::is_same_v<decltype(i), std::size_t>);
        seen[i].fetch_add(1, std::memory_order_relaxed);  // relaxed: read after the return
      });
      std::size_t wrong = 0;
      for (auto& s : seen) {
        wrong += s.load() != 1 ? 1 : 0;
      }
      CHECK(wrong == 0);
    }
  }

  TEST_CASE("the whole int8 and uint8 ranges are covered with a wider last" * doctest::timeout(30)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      check_blocked(pool, std::int8_t{-128}, 128);
      check_blocked(pool, std::uint8_t{0}, 256);
      check_blocked(pool, std::int8_t{-128}, std::int8_t{127});
      check_blocked(pool, std::uint8_t{0}, std::uint8_t{255});
      check_reduce_sum(pool, std::int8_t{-128}, 128);
      check_reduce_sum(pool, std::uint8_t{0}, std::uint8_t{255});
      std::atomic<int> calls{0};
      parallel_for(pool, std::int8_t{-128}, 128, [&calls](int) { calls.fetch_add(1); });
      CHECK(calls.load() == 256);
    }
  }

  TEST_CASE("character types are accepted as indices" * doctest::timeout(30)) {
    thread_pool pool{pool_options{.threads = 2}};
    std::atomic<int> calls{0};
    parallel_for(pool, 'a', 'z' + 1, [&calls](int) { calls.fetch_add(1); });  // char with int: int
    parallel_for(pool, 'a', 'k', [&calls](char) { calls.fetch_add(1); });
    parallel_for_blocked(pool, L'a', L'k',
                         [&calls](wchar_t b, wchar_t e) { calls.fetch_add(static_cast<int>(e - b)); });
    CHECK(calls.load() == 26 + 10 + 10);
    CHECK(parallel_reduce(
              pool, u8'0', u8'9', std::string{}, [](char8_t c) { return std::string(1, static_cast<char>(c)); },
              [](std::string a, const std::string& b) { return a + b; }) == "012345678");
  }

  TEST_CASE("a negative signed end with an unsigned common type throws std::invalid_argument" * doctest::timeout(30)) {
    thread_pool pool{pool_options{.threads = 2}};
    std::atomic<int> calls{0};
    CHECK_THROWS_AS(parallel_for(pool, -1, std::size_t{10}, [&calls](std::size_t) { calls.fetch_add(1); }),
                    std::invalid_argument);
    CHECK_THROWS_AS(parallel_for_blocked(pool, -5, 10U, [&calls](unsigned, unsigned) { calls.fetch_add(1); }),
                    std::invalid_argument);
    CHECK_THROWS_AS(
        (void)parallel_reduce(
            pool, -5LL, std::uint64_t{10}, 0, [](std::uint64_t) { return 1; }, [](int a, int b) { return a + b; }),
        std::invalid_argument);
    // A reversed mixed range is simply empty (compared as mathematical integers).
    parallel_for(pool, std::size_t{5}, -1, [&calls](std::size_t) { calls.fetch_add(1); });
    CHECK(calls.load() == 0);
  }
}

TEST_SUITE("parallel_for_blocked") {
  TEST_CASE("pieces are non-empty and cover [first, last) exactly once for any index type" * doctest::timeout(60)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      for (const int size : {1, 2, 3, 7, 64, 1000, 100003}) {
        check_blocked(pool, 0, size);
        check_blocked(pool, -size, size);
      }
      check_blocked(pool, std::size_t{3}, std::size_t{70001});
      check_blocked(pool, std::int64_t{-3000}, std::int64_t{3000});
      check_blocked(pool, static_cast<short>(-300), static_cast<short>(300));
    }
  }

  TEST_CASE("ranges at the edges of 64-bit index types neither overflow nor miss an index" * doctest::timeout(30)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      constexpr std::int64_t k_max = std::numeric_limits<std::int64_t>::max();
      constexpr std::int64_t k_min = std::numeric_limits<std::int64_t>::min();
      constexpr std::uint64_t k_umax = std::numeric_limits<std::uint64_t>::max();
      check_blocked(pool, k_max - 1000, k_max);
      check_blocked(pool, k_min, k_min + 1000);
      check_blocked(pool, k_umax - 1000, k_umax);
      check_blocked(pool, k_umax - 1000, k_umax, std::uint64_t{7});
    }
  }

  TEST_CASE("an empty or reversed range calls the body zero times" * doctest::timeout(30)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      std::atomic<int> calls{0};
      auto body = [&calls](auto, auto) { calls.fetch_add(1); };
      parallel_for_blocked(pool, 0, 0, body);
      parallel_for_blocked(pool, 10, 0, body);
      parallel_for_blocked(pool, std::size_t{100}, std::size_t{1}, body, std::size_t{1});
      parallel_for_blocked(pool, std::numeric_limits<int>::max(), std::numeric_limits<int>::min(), body);
      CHECK(calls.load() == 0);
    }
  }

  TEST_CASE("an explicit grain bounds every piece; a grain longer than the range gives one call here" *
            doctest::timeout(30)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      check_blocked(pool, 0, 10000, 1);
      check_blocked(pool, 0, 10000, 333);
      check_blocked(pool, 5U, 6U, 1U);  // one element
      int calls = 0;                    // plain: the one call runs on this thread
      parallel_for_blocked(
          pool, 0, 1000,
          [&calls](int b, int e) {
            CHECK(b == 0);
            CHECK(e == 1000);
            ++calls;
          },
          5000);
      CHECK(calls == 1);
    }
  }

  TEST_CASE("a negative grain throws std::invalid_argument and calls nothing" * doctest::timeout(30)) {
    thread_pool pool{pool_options{.threads = 2}};
    std::atomic<int> calls{0};
    CHECK_THROWS_AS(parallel_for_blocked(
                        pool, 0, 100, [&calls](int, int) { calls.fetch_add(1); }, -1),
                    std::invalid_argument);
    CHECK(calls.load() == 0);
  }

  TEST_CASE("a throwing body skips the pieces not yet started and its first exception is rethrown" *
            doctest::timeout(30)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      // Every piece throws: each started piece makes one call, and no more pieces start than exist.
      std::atomic<int> calls{0};
      CHECK_THROWS_AS(parallel_for_blocked(
                          pool, 0, 1000000,
                          [&calls](int b, int) {
                            calls.fetch_add(1);
                            throw b;
                          },
                          1),
                      int);
      CHECK(calls.load() >= 1);
      CHECK(calls.load() < 1000000);  // grain 1: a run that skipped nothing would make 10^6 calls
      CHECK_THROWS_WITH_AS(parallel_for_blocked(pool, 0, 10000,
                                                [](int b, int e) {
                                                  if (b <= 777 && 777 < e) {
                                                    throw std::runtime_error("piece with 777");
                                                  }
                                                }),
                           "piece with 777", std::runtime_error);
      std::atomic<int> after{0};
      parallel_for_blocked(pool, 0, 100, [&after](int b, int e) { after.fetch_add(e - b); });
      CHECK(after.load() == 100);
    }
  }

  TEST_CASE("parallel_for stops the pieces not yet started after a throw" * doctest::timeout(30)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      std::atomic<int> calls{0};
      // Every index throws: a started piece stops at its first index, so at most one call per
      // piece (32 per worker), far fewer than the 10^6 indices.
      CHECK_THROWS_AS(parallel_for(pool, 0, 1000000,
                                   [&calls](int i) {
                                     calls.fetch_add(1);
                                     throw i;
                                   }),
                      int);
      CHECK(calls.load() >= 1);
      CHECK(calls.load() <= static_cast<int>(32 * threads));
    }
  }
}

TEST_SUITE("parallel_reduce") {
  TEST_CASE("an empty or reversed range returns identity and calls neither map nor reduce" * doctest::timeout(30)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      std::atomic<int> calls{0};
      auto map = [&calls](auto) {
        calls.fetch_add(1);
        return std::string("x");
      };
      auto concat = [&calls](std::string a, const std::string& b) {
        calls.fetch_add(1);
        return a + b;
      };
      CHECK(parallel_reduce(pool, 0, 0, std::string("id"), map, concat) == "id");
      CHECK(parallel_reduce(pool, 10, -10, std::string("id"), map, concat) == "id");
      CHECK(parallel_reduce(pool, std::size_t{9}, std::size_t{3}, std::string("id"), map, concat) == "id");
      CHECK(calls.load() == 0);
    }
  }

  TEST_CASE("a one-element range returns reduce(identity, map(first))" * doctest::timeout(30)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      const std::string r = parallel_reduce(
          pool, 41, 42, std::string{}, [](int i) { return std::to_string(i); },
          [](std::string a, const std::string& b) { return a + b; });
      CHECK(r == "41");
    }
  }

  TEST_CASE("every index is mapped exactly once for signed, unsigned, mixed and edge ranges" * doctest::timeout(60)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      for (const int size : {1, 2, 3, 7, 64, 1000, 100003}) {
        check_reduce_sum(pool, 0, size);
        check_reduce_sum(pool, -size, 0);
      }
      check_reduce_sum(pool, 3U, 2000U);
      check_reduce_sum(pool, 0, std::size_t{4097});
      check_reduce_sum(pool, std::int64_t{-3000}, 3000);
      constexpr std::int64_t k_max = std::numeric_limits<std::int64_t>::max();
      constexpr std::uint64_t k_umax = std::numeric_limits<std::uint64_t>::max();
      check_reduce_sum(pool, k_max - 1000, k_max);
      check_reduce_sum(pool, std::numeric_limits<std::int64_t>::min(), std::numeric_limits<std::int64_t>::min() + 1000);
      check_reduce_sum(pool, k_umax - 1000, k_umax);
    }
  }

  TEST_CASE("a non-commutative reduce gives the serial left fold, the same on every run" * doctest::timeout(60)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      for (const std::uint64_t n : {std::uint64_t{1}, std::uint64_t{5}, std::uint64_t{300}, std::uint64_t{20011}}) {
        CAPTURE(n);
        // String concatenation: the order of every character is visible.
        std::string serial;
        for (std::uint64_t i = 0; i < n; ++i) {
          serial += static_cast<char>('a' + i % 26);
        }
        mat2 serial_mat = k_mat_identity;
        for (std::uint64_t i = 0; i < n; ++i) {
          serial_mat = serial_mat * matrix_for(i);
        }
        for (int run = 0; run < 5; ++run) {
          const std::string s = parallel_reduce(
              pool, std::uint64_t{0}, n, std::string{},
              [](std::uint64_t i) { return std::string(1, static_cast<char>('a' + i % 26)); },
              [](std::string a, const std::string& b) { return a + b; });
          CHECK(s == serial);
          const mat2 m = parallel_reduce(pool, std::uint64_t{0}, n, k_mat_identity, matrix_for,
                                         [](const mat2& x, const mat2& y) { return x * y; });
          CHECK(m == serial_mat);
        }
      }
    }
  }

  TEST_CASE("a floating-point sum is bit-identical on every run with the same pool size" * doctest::timeout(60)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      auto harmonic = [&pool] {
        return parallel_reduce(
            pool, 0, 200000, 0.0, [](int i) { return 1.0 / (1.0 + i); }, [](double a, double b) { return a + b; });
      };
      const double first = harmonic();
      for (int run = 0; run < 10; ++run) {
        CHECK(harmonic() == first);  // exact: fixed pieces, fixed order
      }
    }
  }

  TEST_CASE("parallel_reduce nests on a worker and inside another parallel_reduce" * doctest::timeout(60)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      auto nested = [&pool] {
        return parallel_reduce(
            pool, 0, 40, std::int64_t{0},
            [&pool](int i) {
              return parallel_reduce(
                  pool, 0, 50, std::int64_t{0}, [i](int j) { return std::int64_t{i} * 50 + j; },
                  [](std::int64_t a, std::int64_t b) { return a + b; });
            },
            [](std::int64_t a, std::int64_t b) { return a + b; });
      };
      constexpr std::int64_t k_expected = 1999LL * 2000LL / 2;
      CHECK(pool.submit(nested).get() == k_expected);  // from a worker
      CHECK(nested() == k_expected);                   // from outside the pool
    }
  }

  TEST_CASE("a throwing map skips the pieces not yet started and the first exception is rethrown" *
            doctest::timeout(30)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      std::atomic<int> calls{0};
      // Every index throws: each started piece makes one call, and there are 32 per worker.
      CHECK_THROWS_AS((void)parallel_reduce(
                          pool, 0, 1000000, 0,
                          [&calls](int i) -> int {
                            calls.fetch_add(1);
                            throw i;
                          },
                          [](int a, int b) { return a + b; }),
                      int);
      CHECK(calls.load() >= 1);
      CHECK(calls.load() <= static_cast<int>(32 * threads));
      CHECK_THROWS_WITH_AS((void)parallel_reduce(
                               pool, 0, 10000, 0,
                               [](int i) {
                                 if (i == 777) {
                                   throw std::runtime_error("index 777");
                                 }
                                 return i;
                               },
                               [](int a, int b) { return a + b; }),
                           "index 777", std::runtime_error);
      CHECK(parallel_reduce(
                pool, 0, 100, 0, [](int i) { return i; }, [](int a, int b) { return a + b; }) == 4950);
      CHECK(pool.wait_idle_for(std::chrono::seconds(10)));
    }
  }
}

TEST_SUITE("parallel_invoke") {
  TEST_CASE("every callable runs exactly once, from outside and on a worker, with 0 to 6 callables" *
            doctest::timeout(30)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      std::array<std::atomic<int>, 6> counts{};
      auto call = [&counts](std::size_t k) { return [&counts, k] { counts[k].fetch_add(1); }; };
      auto all = [&] {
        parallel_invoke(pool);
        parallel_invoke(pool, call(0));
        parallel_invoke(pool, call(1), call(2));
        const auto lvalue = call(3);
        parallel_invoke(
            pool, lvalue, call(4), [] { return 42; }, call(5));
      };
      all();                   // from outside the pool
      pool.submit(all).get();  // from a worker (nested)
      for (auto& c : counts) {
        CHECK(c.load() == 2);
      }
    }
  }

  TEST_CASE("with two or more workers the callables run at the same time" * doctest::timeout(30)) {
    for (const std::size_t threads : {std::size_t{2}, std::size_t{8}}) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      std::latch both(2);  // neither can pass until the other has started: they overlap
      parallel_invoke(
          pool, [&both] { both.arrive_and_wait(); }, [&both] { both.arrive_and_wait(); });
      CHECK(both.try_wait());
    }
  }

  TEST_CASE("parallel_invoke nests inside itself on one worker without deadlock" * doctest::timeout(30)) {
    thread_pool pool{pool_options{.threads = 1}};
    std::atomic<int> leaves{0};
    auto leaf = [&leaves] { leaves.fetch_add(1); };
    auto inner = [&] { parallel_invoke(pool, leaf, leaf, leaf); };
    pool.submit([&] { parallel_invoke(pool, inner, inner); }).get();
    CHECK(leaves.load() == 6);
  }

  TEST_CASE("after a throw the callables not yet started are skipped and the first exception is rethrown" *
            doctest::timeout(30)) {
    // One worker, called on it: the others wait on its own deque, so after the first callable
    // (run here) throws, none of them has started and all are skipped.
    thread_pool one{pool_options{.threads = 1}};
    std::atomic<int> calls{0};
    auto counted = [&calls] { calls.fetch_add(1); };
    std::future<std::string> caught = one.submit([&] {
      try {
        parallel_invoke(
            one, [] { throw std::runtime_error("first"); }, counted, counted, counted);
      } catch (const std::runtime_error& e) {
        return std::string(e.what());
      }
      return std::string("nothing thrown");
    });
    CHECK(caught.get() == "first");
    CHECK(calls.load() == 0);

    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      // Every callable throws: exactly one exception comes out.
      CHECK_THROWS_AS(parallel_invoke(
                          pool, [] { throw 1; }, [] { throw 2; }, [] { throw 3; }),
                      int);
      // A started callable has finished before the rethrow.
      std::atomic<bool> finished{false};
      std::latch started(1);
      CHECK_THROWS_AS(parallel_invoke(
                          pool, [] { throw std::logic_error("first callable"); },
                          [&] {
                            started.count_down();
                            finished.store(true);
                          }),
                      std::logic_error);
      CHECK((finished.load() || !started.try_wait()));
      std::atomic<int> after{0};
      parallel_invoke(
          pool, [&after] { after.fetch_add(1); }, [&after] { after.fetch_add(1); });
      CHECK(after.load() == 2);
    }
  }
}

TEST_SUITE("parallel algorithms memory ordering") {
  TEST_CASE("plain writes of the bodies, maps and callables are visible after the return" * doctest::timeout(60)) {
    for (const std::size_t threads : k_thread_counts) {
      CAPTURE(threads);
      thread_pool pool{pool_options{.threads = threads}};
      constexpr std::size_t k_size = std::size_t{1} << 20U;
      std::vector<std::uint8_t> blocked(k_size, 0);  // non-atomic: each index written by one piece
      std::vector<std::uint8_t> mapped(k_size, 0);   // non-atomic: each index mapped once
      std::array<int, 4> invoked{};                  // non-atomic: one element per callable
      auto check = [&] {
        parallel_for_blocked(pool, 0, k_size, [&blocked](std::size_t b, std::size_t e) {
          for (std::size_t i = b; i != e; ++i) {
            blocked[i] = static_cast<std::uint8_t>(blocked[i] + 1);
          }
        });
        const std::size_t n = parallel_reduce(
            pool, 0, k_size, std::size_t{0},
            [&mapped](std::size_t i) {
              mapped[i] = static_cast<std::uint8_t>(mapped[i] + 1);
              return std::size_t{1};
            },
            [](std::size_t a, std::size_t b) { return a + b; });
        CHECK(n == k_size);
        parallel_invoke(
            pool, [&invoked] { ++invoked[0]; }, [&invoked] { ++invoked[1]; }, [&invoked] { ++invoked[2]; },
            [&invoked] { ++invoked[3]; });
      };
      check();                   // from outside the pool
      pool.submit(check).get();  // from a worker
      std::size_t wrong = 0;
      for (std::size_t i = 0; i < k_size; ++i) {
        wrong += (blocked[i] != 2 ? 1 : 0) + (mapped[i] != 2 ? 1 : 0);
      }
      CHECK(wrong == 0);
      for (const int c : invoked) {
        CHECK(c == 2);
      }
    }
  }
}
