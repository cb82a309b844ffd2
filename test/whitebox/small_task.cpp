// Whitebox tests of detail::small_task: inline vs heap storage, move-only callables, and that
// every stored callable is destroyed exactly once.
#include <doctest/doctest.h>

#include <flowpool/detail/small_task.hpp>

#include <array>
#include <memory>
#include <stdexcept>
#include <utility>

namespace {

using flowpool::detail::is_small_task_inline_v;
using flowpool::detail::small_task;

struct counted {
  static inline int alive = 0;
  static inline int calls = 0;
  counted() { ++alive; }
  counted(const counted&) { ++alive; }
  counted(counted&&) noexcept { ++alive; }
  counted& operator=(const counted&) = delete;
  counted& operator=(counted&&) = delete;
  ~counted() { --alive; }
  void operator()() const { ++calls; }
};

struct big {
  std::array<char, 64> bytes{};
  void operator()() const {}
};

struct throwing_move {
  throwing_move() = default;
  throwing_move(throwing_move&&) noexcept(false) {}
  void operator()() const {}
};

struct exactly_48 {
  std::array<char, 48> bytes{};
  void operator()() const {}
};

static_assert(is_small_task_inline_v<exactly_48>, "48 bytes are stored inline");
static_assert(!is_small_task_inline_v<big>, "more than 48 bytes go to the heap");
static_assert(!is_small_task_inline_v<throwing_move>, "a throwing move goes to the heap");
static_assert(sizeof(small_task) <= 64, "one cache line");

TEST_SUITE("small_task") {
  TEST_CASE("small callables are inline, large ones on the heap, both run") {
    int hits = 0;
    small_task a([&hits] { ++hits; });
    CHECK(a.is_inline());
    a();
    small_task b(big{});
    CHECK_FALSE(b.is_inline());
    b();
    small_task c(exactly_48{});
    CHECK(c.is_inline());
    CHECK(hits == 1);
  }

  TEST_CASE("move-only callables are accepted and moved between tasks") {
    auto owned = std::make_unique<int>(41);
    int result = 0;
    small_task a([p = std::move(owned), &result] { result = *p + 1; });
    small_task b(std::move(a));
    CHECK_FALSE(static_cast<bool>(a));  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
    small_task c;
    c = std::move(b);
    c.run_once();
    CHECK(result == 42);
    CHECK_FALSE(static_cast<bool>(c));
  }

  TEST_CASE("every stored callable is destroyed exactly once, inline or heap, run or not") {
    counted::alive = 0;
    counted::calls = 0;
    {
      small_task a{counted{}};
      small_task b(std::move(a));
      small_task c;
      c = std::move(b);
      c.run_once();
      CHECK(counted::calls == 1);
      CHECK(counted::alive == 0);  // run_once destroys
      small_task d{counted{}};
      (void)d;
    }
    CHECK(counted::alive == 0);
    {
      struct big_counted {
        counted inner;
        std::array<char, 64> pad{};
        void operator()() const { inner(); }
      };
      small_task e{big_counted{}};
      CHECK_FALSE(e.is_inline());
      small_task f(std::move(e));
      f();
    }
    CHECK(counted::alive == 0);
  }

  TEST_CASE("run_once destroys the callable even when it throws") {
    counted::alive = 0;
    small_task t([c = counted{}] {
      (void)c;
      throw std::runtime_error("boom");
    });
    CHECK(counted::alive == 1);
    CHECK_THROWS_AS(t.run_once(), std::runtime_error);
    CHECK(counted::alive == 0);
    CHECK_FALSE(static_cast<bool>(t));
  }
}

}  // namespace
